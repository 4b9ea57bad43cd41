"""Mobile and DeepLab models beside VGG16 FCN-8s at 512x1024, measured in one run.

For each model (random weights: speed and size do not depend on them): parameters,
analytic GFLOP (2 per multiply-add: Conv2D, DepthwiseConv2D and Conv2DTranspose, counted
as `kseg.models.flops` counts them), Keras fp32 time, Keras bf16 time (the model of `kseg
predict --precision bf16`; only on a CPU with native bfloat16), and the TFLite fp32 / fp16 /
dynamic-range / int8 file size and LiteRT latency (XNNPACK, --threads threads). Times
are medians of --repeats runs after one untimed run.

The reference a user would pick instead: torchvision's `lraspp_mobilenet_v3_large` (19
classes, random weights) in PyTorch on the same threads, channels_last, fp32 and bf16
autocast, timed in a separate process before and after kseg's models (the median of both
sets is shown). It needs a Python with torch and torchvision: --torch-python PATH, by
default this one; without them the reference is left out with one line.

    python benchmarks/bench_mobile.py --models fcn8s,lraspp_mobilenetv3large --repeats 3 \
        --out docs/mobile.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from reports import check_out, machine, machine_line, write_report

DEFAULT_MODELS = (
    "fcn8s", "fcn8s_mobilenetv3large", "fcn8s_mobilenetv3small", "lraspp_mobilenetv3large",
    "lraspp_mobilenetv3small", "fcn8s_resnet50", "deeplabv3_resnet50", "deeplabv3_resnet50_os8",
)  # fmt: skip
QUANTIZATIONS = ("none", "fp16", "dynamic", "int8")
HEIGHT, WIDTH = 512, 1024


def gflop(model, height, width):
    import keras

    from kseg.models.flops import layer_costs

    total = 0
    costs = layer_costs(model, height, width)
    for layer, cost in zip([lay for lay in model.layers if not isinstance(lay, keras.layers.InputLayer)], costs):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            rows, columns, channels, multiplier = layer.kernel.shape
            total += 2 * cost.output_shape[1] * cost.output_shape[2] * rows * columns * channels * multiplier
        else:
            total += cost.flops
    return total / 1e9


def timed(function, repeats):
    function()  # untimed: tracing, allocation
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), seconds


def random_image(seed=0):
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, (1, HEIGHT, WIDTH, 3), dtype=np.uint8)


def bench_model(name, args):
    import tensorflow as tf

    from kseg.cpu import cpu_has_bf16
    from kseg.exporting import ExportedModel, ExportTarget, tflite_bytes
    from kseg.models import create_model
    from kseg.models.inference import inference_model

    model = create_model(name, num_classes=args.num_classes, weights=None)
    image = random_image()
    row = {"model": name, "parameters": model.count_params(), "gflop": gflop(model, HEIGHT, WIDTH)}
    serve = tf.function(lambda x: model(x, training=False))
    row["keras_fp32_s"], row["keras_fp32_runs"] = timed(lambda: serve(tf.constant(image)).numpy(), args.repeats)
    row["keras_bf16_s"] = row["keras_bf16_runs"] = None
    if cpu_has_bf16():
        bf16 = inference_model(model, "bf16")
        serve_bf16 = tf.function(lambda x: bf16(x, training=False))
        row["keras_bf16_s"], row["keras_bf16_runs"] = timed(lambda: serve_bf16(tf.constant(image)).numpy(),
                                                            args.repeats)  # fmt: skip
    calibration = [random_image(seed)[0] for seed in range(1, args.calibration_images + 1)]
    with tempfile.TemporaryDirectory(prefix="kseg-bench-mobile-") as folder:
        for quantize in QUANTIZATIONS:
            label = "fp32" if quantize == "none" else quantize
            path = os.path.join(folder, f"{name}-{quantize}.tflite")
            start = time.perf_counter()
            with open(path, "wb") as file:
                file.write(tflite_bytes(model, ExportTarget("tflite", quantize, (HEIGHT, WIDTH), calibration), folder))
            print(f"  {name}: converted {label} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
            row[f"tflite_{label}_mib"] = os.path.getsize(path) / 2**20
            exported = ExportedModel(path, "tflite", threads=args.threads)
            run = (lambda exported=exported: exported(image[0]))
            row[f"tflite_{label}_s"], row[f"tflite_{label}_runs"] = timed(run, args.repeats)
    return row


# Timed in its own process, so PyTorch's threads and allocator do not share one with
# TensorFlow's. Prints one JSON line: the seconds of each run, fp32 and bf16.
TORCH_REFERENCE = """
import json, sys, time
import torch, torchvision

height, width, classes, threads, repeats = (int(value) for value in sys.argv[1:6])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
    weights=None, weights_backbone=None, num_classes=classes).eval().to(memory_format=torch.channels_last)
image = torch.rand(1, 3, height, width).to(memory_format=torch.channels_last)
result = {"torch": torch.__version__, "torchvision": torchvision.__version__,
          "parameters": sum(p.numel() for p in model.parameters())}
for precision in ("fp32", "bf16"):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        model(image)["out"].float()
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(image)["out"].float()
            runs.append(time.perf_counter() - start)
    result[precision] = runs
print(json.dumps(result))
"""


def torch_reference(args):
    """torchvision's LR-ASPP timings from `args.torch_python` ({"fp32": [s, ...], ...}),
    or None, with one line on stderr, where that Python lacks torch or torchvision."""
    command = [args.torch_python, "-c", TORCH_REFERENCE, str(HEIGHT), str(WIDTH), str(args.num_classes),
               str(args.threads), str(args.repeats)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"torchvision reference left out ({args.torch_python}: {last}); give --torch-python, a Python "
              "with `pip install torch==2.14.1 torchvision==0.29.1`", file=sys.stderr)  # fmt: skip
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def merged_reference(first, second):
    """One row of the torchvision reference from its runs before and after kseg's."""
    if first is None or second is None:
        return None
    row = {key: first[key] for key in ("torch", "torchvision", "parameters")}
    for precision in ("fp32", "bf16"):
        row[f"{precision}_runs"] = first[precision] + second[precision]
        row[f"{precision}_s"] = statistics.median(row[f"{precision}_runs"])
    return row


def print_reference(rows, reference):
    """The torchvision rows, and each kseg model's fastest file against its fp32."""
    if reference is None:
        return
    print()
    print(f"torchvision lraspp_mobilenet_v3_large (torch {reference['torch']}, "
          f"{reference['parameters'] / 1e6:.2f} M parameters, channels_last): "
          f"fp32 {reference['fp32_s']:.3f} s, bf16 autocast {reference['bf16_s']:.3f} s")
    torch_best = min(reference["fp32_s"], reference["bf16_s"])
    for row in rows:
        label, seconds = min(((label, row[f"tflite_{label}_s"]) for label in ("fp32", "fp16", "dynamic", "int8")),
                             key=lambda pair: pair[1])  # fmt: skip
        print(f"  {row['model']}: fastest file {label} {seconds:.3f} s, {torch_best / seconds:.2f}x torchvision's "
              "fastest")


def print_table(rows):
    reference = next((row for row in rows if row["model"] == "fcn8s"), None)
    header = ("model", "params (M)", "GFLOP", "keras fp32 s", "keras bf16 s", "fp32 MiB", "fp32 s", "fp16 MiB",
              "fp16 s", "dyn MiB", "dyn s", "int8 MiB", "int8 s", "int8 vs fcn8s")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = [row["model"], f"{row['parameters'] / 1e6:.2f}", f"{row['gflop']:.1f}", f"{row['keras_fp32_s']:.3f}",
                 f"{row['keras_bf16_s']:.3f}" if row["keras_bf16_s"] is not None else "-"]
        for label in ("fp32", "fp16", "dynamic", "int8"):
            cells += [f"{row[f'tflite_{label}_mib']:.1f}", f"{row[f'tflite_{label}_s']:.3f}"]
        speedup = reference["tflite_int8_s"] / row["tflite_int8_s"] if reference else None
        cells.append(f"{speedup:.1f}x" if speedup else "-")
        print("| " + " | ".join(cells) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated preset names")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median shown)")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--calibration-images", type=int, default=4, help="int8 calibration images (random)")
    parser.add_argument("--torch-python", default=sys.executable,
                        help="a Python with torch and torchvision, for the torchvision LR-ASPP reference")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.out:
        check_out(args.out, "bench_mobile")

    from kseg.cli.main import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    print(machine_line(machine()), flush=True)
    before = torch_reference(args)
    rows = []
    for name in [name.strip() for name in args.models.split(",") if name.strip()]:
        start = time.perf_counter()
        rows.append(bench_model(name, args))
        print(f"{name} took {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        keras.backend.clear_session()
    reference = merged_reference(before, torch_reference(args) if before else None)
    print_table(rows)
    print_reference(rows, reference)
    if args.out:
        report = {
            "machine": machine(),
            "size": [HEIGHT, WIDTH], "repeats": args.repeats, "threads": args.threads,
            "num_classes": args.num_classes, "models": rows, "torchvision_lraspp": reference,
        }  # fmt: skip
        write_report(args.out, "bench_mobile", report)


if __name__ == "__main__":
    from kseg.errors import KsegError

    try:
        main()
    except KsegError as error:
        sys.exit(f"error: {error}")
