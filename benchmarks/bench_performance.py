"""FCN-8s speed and memory on this machine, each figure beside a reference from the same run.

    .venv/bin/python benchmarks/bench_performance.py --out bench/performance.json
    make bench                                    # the same, every section

Sections (--sections, comma-separated; all by default):

  inference   fp32 FCN-8s (VGG16, 19 classes, random weights) on 512x1024 and 500x500:
              achieved GFLOP/s (FLOPs counted by kseg.models.flops) against tf.matmul's
              fp32 GFLOP/s, measured interleaved in the same process. Also shown: fc6 as
              keras' Conv2D (the layer kseg replaced) and the whole model under XLA.
  bf16        kseg's bf16 inference (`--precision bf16`) against fp32 on 512x1024, and,
              with --agreement-model RUN --camvid DIR, the share of CamVid val pixels
              whose class is the same in bf16 as in fp32.
  train       one training step (FCN-8s, 11 classes, batch 4, 360x480 crops, SGD with
              momentum, kseg's masked cross-entropy) in float32 and mixed_bfloat16:
              images/s and achieved GFLOP/s (backward counted as 2x forward) against
              tf.matmul in the matching precision.
  memory      peak resident memory of `kseg predict` on a 2048x1024 image, whole and
              with --tile 512x512, each in a fresh process.
  tflite      LiteRT (XNNPACK, --threads threads) latency and file size of the 512x1024
              export in fp32, fp16, dynamic and int8, against Keras fp32 in this process.

The machine is shared and noisy: every timed function runs --repeats times, round-robin
with its reference, and the table shows medians (the JSON has every run). --profile adds
a per-layer table for fp32 and bf16 at 512x1024.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from reports import check_out, machine, machine_line, write_report

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SECTIONS = ("inference", "bf16", "train", "memory", "tflite")
DEFAULT_CAMVID = os.environ.get(
    "CAMVID_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "camvid")
)
MATMUL_SIZE = 4096


# -- timing -------------------------------------------------------------------------------


def interleaved(functions, repeats, warmup=1, reference=None):
    """Times each of `functions` (name -> callable): `warmup` untimed calls each, then
    `repeats` rounds round-robin. Returns name -> list of seconds per call.

    With `reference` (a name among `functions`), the reference also runs before every
    other function and once more at the end of each round; the result then has, under
    "<name>/reference", each call's time divided by the mean of the reference calls just
    before and after it: a ratio that the machine's shifting load mostly cancels out of.
    """
    for function in functions.values():
        for _ in range(warmup):
            function()

    def timed(function):
        start = time.perf_counter()
        function()
        return time.perf_counter() - start

    times = {name: [] for name in functions}
    ratios = {f"{name}/reference": [] for name in functions if name != reference}
    for _ in range(repeats):
        if reference:
            times[reference].append(timed(functions[reference]))
        for name, function in functions.items():
            if name == reference:
                continue
            times[name].append(timed(function))
            if reference:
                before = times[reference][-1]
                times[reference].append(timed(functions[reference]))
                ratios[f"{name}/reference"].append(times[name][-1] * 2 / (before + times[reference][-1]))
    return {**times, **ratios} if reference else times


def median(values):
    return statistics.median(values)


def matmul_function(dtype):
    """A callable running one MATMUL_SIZE^3 tf.matmul in `dtype`, and its FLOPs."""
    import tensorflow as tf

    a = tf.cast(tf.random.stateless_normal((MATMUL_SIZE, MATMUL_SIZE), (1, 2)), dtype)
    b = tf.cast(tf.random.stateless_normal((MATMUL_SIZE, MATMUL_SIZE), (3, 4)), dtype)
    compiled = tf.function(lambda: tf.matmul(a, b))
    return (lambda: compiled().numpy()), 2 * MATMUL_SIZE**3


def model_function(model, image, jit_compile=False):
    """A callable running `model` on `image` (1, H, W, 3) with a compiled tf.function."""
    import tensorflow as tf

    compiled = tf.function(lambda batch: model(batch, training=False), jit_compile=jit_compile)
    batch = tf.constant(image)
    return lambda: compiled(batch).numpy()


def random_image(height, width, seed=0):
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, (1, height, width, 3), dtype=np.uint8)


def build_fcn8s(num_classes=19):
    from kseg.models.fcn import build_fcn

    return build_fcn(8, num_classes, weights=None)


def with_conv2d_fc6(model):
    """The same model with fc6 as keras' own Conv2D (what kseg used before Im2ColConv2D);
    every other layer is shared, fc6's weights are copied."""
    import keras

    def clone(layer):
        if layer.name == "fc6":
            return keras.layers.Conv2D.from_config(layer.get_config())
        return layer

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.get_layer("fc6").set_weights(model.get_layer("fc6").get_weights())
    return copy


# -- sections -----------------------------------------------------------------------------


def bench_inference(args, context):
    from kseg.models.flops import count_flops

    model = context.setdefault("fcn8s", build_fcn8s())
    matmul, matmul_flops = matmul_function("float32")
    results = []
    for height, width in ((512, 1024), (500, 500)):
        image = random_image(height, width)
        functions = {"tf.matmul fp32": matmul, "kseg fp32": model_function(model, image)}
        if (height, width) == (512, 1024):
            functions["fc6 as keras Conv2D"] = model_function(with_conv2d_fc6(model), image)
            if not args.quick:
                functions["kseg fp32, XLA"] = model_function(model, image, jit_compile=True)
        times = interleaved(functions, args.repeats, reference="tf.matmul fp32")
        flops = count_flops(model, height, width)
        for name, values in times.items():
            if name.endswith("/reference") or name.startswith("tf.matmul"):
                continue
            relative = median(times[f"{name}/reference"])  # time / neighbouring matmul time
            results.append({
                "size": f"{height}x{width}", "variant": name, "seconds": median(values),
                "gflop": flops / 1e9, "gflops_per_s": flops / median(values) / 1e9,
                "matmul_gflops_per_s": matmul_flops / median(times["tf.matmul fp32"]) / 1e9,
                "fraction_of_matmul": flops / matmul_flops / relative, "runs": values,
            })  # fmt: skip
    return results


def bf16_agreement(args):
    """Share of CamVid val pixels with the same class in bf16 and fp32 (a trained model)."""
    from kseg.data.registry import get_dataset_spec
    from kseg.images import read_image
    from kseg.inference import predict_logits
    from kseg.models.inference import inference_model
    from kseg.models.saving import load_model
    from kseg.runs import resolve_model_path

    path, _ = resolve_model_path(args.agreement_model)
    fp32 = inference_model(load_model(path), "fp32")
    bf16 = inference_model(fp32, "bf16")
    spec = get_dataset_spec("camvid", args.camvid)
    pairs = spec.pairs("val")[: args.agreement_images or None]
    same = total = 0
    worst = 1.0
    for image_path, _ in pairs:
        image = read_image(image_path)
        a = predict_logits(fp32, image).argmax(-1)
        b = predict_logits(bf16, image).argmax(-1)
        same += int((a == b).sum())
        total += a.size
        worst = min(worst, float((a == b).mean()))
    return {"model": path, "images": len(pairs), "pixels": total, "agreement": same / total,
            "worst_image_agreement": worst}


def bench_bf16(args, context):
    from kseg.cpu import cpu_has_bf16
    from kseg.models.inference import inference_model

    model = context.setdefault("fcn8s", build_fcn8s())
    image = random_image(512, 1024)
    fp32_matmul, matmul_flops = matmul_function("float32")
    bf16_matmul, _ = matmul_function("bfloat16")
    times = interleaved({
        "kseg fp32": model_function(model, image),
        "kseg bf16": model_function(inference_model(model, "bf16"), image),
        "tf.matmul fp32": fp32_matmul, "tf.matmul bf16": bf16_matmul,
    }, args.repeats, reference="kseg fp32")  # fmt: skip
    result = {
        "cpu_has_bf16": cpu_has_bf16(),
        "seconds": {name: median(values) for name, values in times.items() if "/" not in name},
        "runs": times,
        "speedup": 1 / median(times["kseg bf16/reference"]),
        "matmul_speedup": median(times["tf.matmul fp32/reference"]) / median(times["tf.matmul bf16/reference"]),
    }
    if args.agreement_model:
        result["agreement"] = bf16_agreement(args)
    return result


def bench_train(args, context):
    import keras
    import numpy as np

    from kseg.losses import MaskedSparseCrossEntropy
    from kseg.models.flops import count_flops
    from kseg.training.distribution import dtype_policy

    batch, height, width, classes = 4, 360, 480, 11
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    labels = rng.integers(0, classes, (batch, height, width), dtype=np.uint8)
    labels[:, :8] = 255  # some ignored pixels, as in real masks
    steps = {}
    for precision, policy in (("fp32", "float32"), ("bf16", "mixed_bfloat16")):
        with dtype_policy(policy):
            model = build_fcn8s(classes)
        model.compile(
            optimizer=keras.optimizers.SGD(1e-4, momentum=0.9),
            loss=MaskedSparseCrossEntropy(classes, 255),
        )
        steps[precision] = (lambda model=model: model.train_on_batch(images, labels))
    functions = {
        "tf.matmul fp32": matmul_function("float32")[0], "tf.matmul bf16": matmul_function("bfloat16")[0],
        **{f"train step {precision}": step for precision, step in steps.items()},
    }  # fmt: skip
    times = interleaved(functions, args.train_repeats, reference="tf.matmul fp32")
    step_flops = 3 * count_flops(model, height, width, batch)  # backward = 2x forward
    matmul_flops = 2 * MATMUL_SIZE**3
    results = []
    for precision in steps:
        seconds = median(times[f"train step {precision}"])
        # time relative to the fp32 matmul, then to this precision's matmul
        relative = median(times[f"train step {precision}/reference"])
        if precision == "bf16":
            relative /= median(times["tf.matmul bf16/reference"])
        results.append({
            "precision": precision, "batch": batch, "crop": f"{height}x{width}",
            "seconds_per_step": seconds, "images_per_s": batch / seconds,
            "gflop_per_step": step_flops / 1e9, "gflops_per_s": step_flops / seconds / 1e9,
            "fraction_of_matmul": step_flops / matmul_flops / relative,
            "runs": times[f"train step {precision}"],
        })  # fmt: skip
    return results


def peak_rss_mib(command):
    """Runs `command` in a fresh process and returns its peak resident memory in MiB."""
    probe = (
        "import resource, subprocess, sys; "
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    return int(done.stdout.split()[-1]) / 1024


def bench_memory(args, context):
    from kseg.images import write_png

    model = context.setdefault("fcn8s", build_fcn8s())
    with tempfile.TemporaryDirectory(prefix="kseg-bench-") as folder:
        model_path = os.path.join(folder, "fcn8s.keras")
        model.save(model_path)
        image_path = os.path.join(folder, "street.png")
        write_png(image_path, random_image(1024, 2048)[0])
        kseg = [sys.executable, "-m", "kseg.cli", "predict", image_path, "--model", model_path,
                "--format", "labels"]
        results = []
        for label, extra in (("whole image", []), ("--tile 512x512", ["--tile", "512x512"])):
            out = os.path.join(folder, label.replace(" ", "_"))
            results.append({"mode": label, "image": "2048x1024",
                            "peak_rss_mib": peak_rss_mib([*kseg, *extra, "--out", out])})
    return results


def bench_tflite(args, context):
    from kseg.exporting import ExportedModel, ExportTarget, tflite_bytes

    model = context.setdefault("fcn8s", build_fcn8s())
    height, width = 512, 1024
    image = random_image(height, width)
    calibration = [random_image(height, width, seed)[0] for seed in range(args.calibration_images)]
    functions = {"keras fp32": model_function(model, image)}
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="kseg-bench-") as folder:
        for quantize in ("none", "fp16", "dynamic", "int8"):
            name = f"tflite {'fp32' if quantize == 'none' else quantize}"
            path = os.path.join(folder, f"fcn8s-{quantize}.tflite")
            start = time.perf_counter()
            with open(path, "wb") as file:
                file.write(tflite_bytes(model, ExportTarget("tflite", quantize, (height, width), calibration)))
            print(f"  converted {name} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            sizes[name] = os.path.getsize(path)
            exported = ExportedModel(path, "tflite", threads=args.threads)
            functions[name] = (lambda exported=exported: exported(image[0]))
        times = interleaved(functions, args.repeats, reference="tflite fp32")
    results = []
    for name, values in times.items():
        if "/" in name:
            continue
        relative = 1.0 if name == "tflite fp32" else median(times[f"{name}/reference"])
        results.append({
            "variant": name, "seconds": median(values), "file_mib": sizes[name] / 2**20 if name in sizes else None,
            "speedup_vs_tflite_fp32": 1 / relative, "runs": values,
        })  # fmt: skip
    return results


def profile_layers(args, context):
    """Per-layer time at 512x1024, each layer run alone on its real input, fp32 and bf16."""
    import keras
    import tensorflow as tf

    from kseg.models.flops import layer_costs
    from kseg.models.inference import inference_model

    model = context.setdefault("fcn8s", build_fcn8s())
    image = random_image(512, 1024)
    costs = {cost.name: cost for cost in layer_costs(model, 512, 1024)}
    rows = []
    for precision in ("fp32", "bf16"):
        network = inference_model(model, precision)
        layers = network.layers[1:]
        values = keras.Model(network.inputs, [layer.output for layer in layers]).predict_on_batch(image)
        tensors = {"images": tf.constant(image)}
        tensors.update({layer.name: tf.constant(value) for layer, value in zip(layers, values)})
        for layer in layers:
            inputs = layer.input if isinstance(layer.input, list) else [layer.input]
            arguments = [tensors[tensor._keras_history.operation.name] for tensor in inputs]
            compiled = tf.function(lambda *a, layer=layer: layer(list(a) if len(a) > 1 else a[0]))
            run = (lambda compiled=compiled, arguments=arguments: compiled(*arguments).numpy())
            seconds = median(interleaved({"layer": run}, 3)["layer"])
            flops = costs[layer.name].flops
            rows.append({"precision": precision, "layer": layer.name, "seconds": seconds,
                         "gflop": flops / 1e9, "gflops_per_s": flops / seconds / 1e9})
    return rows


# -- report -------------------------------------------------------------------------------


def print_report(report):
    def line(*cells, widths=(24, 12, 10, 10, 18, 18)):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)))

    if "inference" in report:
        print("\n== inference, fp32 (FCN-8s, 19 classes) ==")
        line("variant", "size", "s/image", "GFLOP/s", "tf.matmul GFLOP/s", "model/matmul rate")
        for row in report["inference"]:
            line(row["variant"], row["size"], f"{row['seconds']:.3f}", f"{row['gflops_per_s']:.0f}",
                 f"{row['matmul_gflops_per_s']:.0f}", f"{100 * row['fraction_of_matmul']:.0f}%")
    if "bf16" in report:
        result = report["bf16"]
        print("\n== bf16 inference, 512x1024 ==")
        for name, seconds in result["seconds"].items():
            line(name, "", f"{seconds:.3f}")
        print(f"bf16 speed-up over fp32: {result['speedup']:.2f}x (tf.matmul: {result['matmul_speedup']:.2f}x); "
              f"CPU has bf16 instructions: {result['cpu_has_bf16']}")
        if "agreement" in result:
            agreement = result["agreement"]
            print(f"same class as fp32: {100 * agreement['agreement']:.3f}% of {agreement['pixels']} pixels "
                  f"({agreement['images']} CamVid val images; worst image "
                  f"{100 * agreement['worst_image_agreement']:.2f}%), model {agreement['model']}")
    if "train" in report:
        print("\n== training step (FCN-8s, batch 4, 360x480) ==")
        line("precision", "s/step", "images/s", "GFLOP/s", "of tf.matmul")
        for row in report["train"]:
            line(row["precision"], f"{row['seconds_per_step']:.2f}", f"{row['images_per_s']:.2f}",
                 f"{row['gflops_per_s']:.0f}", f"{100 * row['fraction_of_matmul']:.0f}%")
    if "memory" in report:
        print("\n== peak memory, kseg predict on a 2048x1024 image ==")
        for row in report["memory"]:
            line(row["mode"], f"{row['peak_rss_mib']:.0f} MiB")
    if "tflite" in report:
        print("\n== TFLite (LiteRT, XNNPACK) vs Keras, 512x1024 ==")
        line("variant", "s/image", "file MiB", "vs TFLite fp32")
        for row in report["tflite"]:
            size = f"{row['file_mib']:.0f}" if row["file_mib"] else "-"
            line(row["variant"], f"{row['seconds']:.3f}", size, f"{row['speedup_vs_tflite_fp32']:.2f}x")
    if "profile" in report:
        print("\n== per layer, 512x1024 (each layer alone) ==")
        line("layer", "precision", "ms", "GFLOP", "GFLOP/s")
        for row in report["profile"]:
            line(row["layer"], row["precision"], f"{1e3 * row['seconds']:.1f}", f"{row['gflop']:.2f}",
                 f"{row['gflops_per_s']:.0f}" if row["gflop"] else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per function (median shown)")
    parser.add_argument("--train-repeats", type=int, default=3, help="timed rounds of the training step")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads")
    parser.add_argument("--calibration-images", type=int, default=4, help="int8 calibration images")
    parser.add_argument("--agreement-model", default=None, metavar="RUN",
                        help="trained CamVid run (or .keras) for the bf16 agreement check")
    parser.add_argument("--camvid", default=DEFAULT_CAMVID, help="CamVid root for the agreement check")
    parser.add_argument("--agreement-images", type=int, default=0, help="limit val images (0: all)")
    parser.add_argument("--profile", action="store_true", help="add the per-layer table")
    parser.add_argument("--quick", action="store_true", help="skip the XLA variant")
    parser.add_argument("--out", default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.out:
        check_out(args.out, "bench_performance", [args.agreement_model, args.camvid if args.agreement_model else None])

    from kseg.cli.main import import_tensorflow_quietly

    import_tensorflow_quietly()
    report = {"machine": machine()}
    print(machine_line(report["machine"]), flush=True)
    context = {}
    functions = {"inference": bench_inference, "bf16": bench_bf16, "train": bench_train,
                 "memory": bench_memory, "tflite": bench_tflite}
    for name in sections:
        start = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        report[name] = functions[name](args, context)
        print(f"  {name} took {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    if args.profile:
        report["profile"] = profile_layers(args, context)
    report["machine"]["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print_report(report)
    if args.out:
        write_report(args.out, "bench_performance", report)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    from kseg.errors import KsegError

    try:
        main()
    except KsegError as error:
        sys.exit(f"error: {error}")
