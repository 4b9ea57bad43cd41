"""Is mixed_bfloat16 training right on this CPU? Layer by layer, then the demo's reproduction.

    .venv/bin/python benchmarks/bf16_gradients.py [--out report.json]
    ONEDNN_VERBOSE=1 .venv/bin/python benchmarks/bf16_gradients.py ...   # the oneDNN kernels used

Three parts, on the demo's shapes (fcn8s_vgg16bn at width 0.0625, 6 classes, 96x128, batch 8):

1. Bias gradients. A 1x1 Conv2D's bias gradient in mixed_bfloat16 against float32 and the
   exact sum, at 1,536 to 691,200 pixels, as keras reads the bias (in bfloat16, the broken
   path) and as kseg trains (`read_biases_in_float32`, the fix).
2. Every layer with weights, given the input the float32 model gives it: the largest
   relative error of its output and gradients in mixed_bfloat16 (the precision check's
   `layer_errors`), with kseg's fix. A wrong kernel shows as an error of order 1.
3. The 20-second reproduction: `kseg data synth D --num-train 64 --num-val 8`, then
   `kseg train --model fcn8s_vgg16bn --width 0.0625 --batch-size 8 --scale 1,1 --epochs 2`
   (the other options at their defaults) in float32, in mixed_bfloat16 as keras builds it,
   and with kseg's fix; the mean training loss of each epoch and the validation mIoU.

The figures name the CPU (reports.machine()). Prints a table; --out writes the JSON.
"""

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from reports import check_out, machine, write_report  # noqa: E402

SIZES = ((8, 12, 16), (8, 96, 128), (4, 360, 480))


def bias_gradients():
    import keras

    from kseg.models.keras_internals import read_biases_in_float32
    from kseg.training.distribution import dtype_policy
    from kseg.training.precision_check import _output_and_gradients, _relative_error

    rng = np.random.default_rng(0)
    rows = []
    for size in SIZES:
        inputs = np.abs(rng.standard_normal((*size, 16))).astype("float32")
        projection = rng.standard_normal((*size, 6)).astype("float32")
        exact = projection.astype(np.float64).sum(axis=(0, 1, 2))
        gradients = {}
        for name, policy, fixed in (("float32", "float32", False), ("bf16", "mixed_bfloat16", False),
                                    ("bf16, kseg", "mixed_bfloat16", True)):  # fmt: skip
            with dtype_policy(policy):
                layer = keras.layers.Conv2D(6, 1)
                layer.build(inputs.shape)
            layer.set_weights([np.full((1, 1, 16, 6), 0.1, "float32"), np.zeros(6, "float32")])
            if fixed:
                read_biases_in_float32(layer)
            gradients[name] = _output_and_gradients(layer, inputs, projection)[3]
        errors = {name: _relative_error(value, exact) for name, value in gradients.items()}
        rows.append({"pixels": int(np.prod(size)), **errors})
    return rows


@contextlib.contextmanager
def biases(fixed):
    """kseg's float32 biases (`fixed`), or keras' own reading of them (bf16) within."""
    from kseg.models import keras_internals

    saved = keras_internals.read_biases_in_float32
    if not fixed:
        keras_internals.read_biases_in_float32 = lambda model: 0
    try:
        yield
    finally:
        keras_internals.read_biases_in_float32 = saved


def layer_table(fixed):
    import keras

    from kseg.models import create_model
    from kseg.training import precision_check

    keras.utils.set_random_seed(0)
    model = create_model("fcn8s_vgg16bn", num_classes=6, weights=None, width=0.0625, dropout=0.0)
    images = np.random.default_rng(0).integers(0, 256, (8, 96, 128, 3)).astype("uint8")
    with biases(fixed):
        return precision_check.layer_errors(model, images, "mixed_bfloat16")


def reproduction(data_dir, policy, fixed, run_dir):
    from kseg.config import TrainConfig
    from kseg.training import read_checkpoint_state, train

    config = TrainConfig(model="fcn8s_vgg16bn", data="synthetic", data_dir=data_dir, weights="none", width=0.0625,
                         batch_size=8, scale=[1, 1], epochs=2,
                         mixed_precision={"float32": "off", "mixed_bfloat16": "bf16"}[policy],
                         precision_check=False, run_dir=run_dir)  # fmt: skip
    start = time.perf_counter()
    with biases(fixed):
        run_dir = train(config, verbose=0)
    history = read_checkpoint_state(os.path.join(run_dir, "checkpoints", "last.keras"))["history"]
    return {"losses": [row["loss"] for row in history], "val_miou": history[-1]["mean_iou"],
            "seconds": time.perf_counter() - start}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="JSON report to write")
    args = parser.parse_args()
    if args.out:
        check_out(args.out, "bf16_gradients")
    report = {"machine": machine()}
    print(f"CPU: {report['machine']['cpu']} ({', '.join(report['machine']['cpu_flags'])})")

    report["bias_gradients"] = bias_gradients()
    print("\n1. bias gradient of a 1x1 Conv2D, relative error against the exact sum")
    print("| pixels | float32 | bf16 (keras) | bf16 (kseg) |\n|---|---|---|---|")
    for row in report["bias_gradients"]:
        print(f"| {row['pixels']:,} | {row['float32']:.1e} | {row['bf16']:.3f} | {row['bf16, kseg']:.4f} |")

    report["layers"] = {"keras": layer_table(False), "kseg": layer_table(True)}
    print("\n2. per layer, largest relative error of output and gradients, bf16 against float32")
    print("| layer | keras | kseg |\n|---|---|---|")
    for name, error in report["layers"]["keras"].items():
        print(f"| {name} | {error:.4f} | {report['layers']['kseg'][name]:.4f} |")

    from kseg.data.synthetic import write_synthetic_dataset

    with tempfile.TemporaryDirectory(prefix="kseg-bf16-") as scratch:  # data and runs, gone afterwards
        data_dir = write_synthetic_dataset(os.path.join(scratch, "data"), num_train=64, num_val=8, seed=0)
        cases = (("float32", "float32", True), ("bf16 (keras)", "mixed_bfloat16", False),
                 ("bf16 (kseg)", "mixed_bfloat16", True))  # fmt: skip
        report["reproduction"] = {
            name: reproduction(data_dir, policy, fixed, os.path.join(scratch, f"run{index}"))
            for index, (name, policy, fixed) in enumerate(cases)
        }
    print("\n3. 64 synthetic scenes, 2 epochs: mean training loss per epoch, val mIoU")
    print("| precision | epoch 1 | epoch 2 | val mIoU | seconds |\n|---|---|---|---|---|")
    for name, row in report["reproduction"].items():
        losses = " | ".join(f"{loss:.3f}" for loss in row["losses"])
        miou = row["val_miou"] if row["val_miou"] is not None and math.isfinite(row["val_miou"]) else float("nan")
        print(f"| {name} | {losses} | {miou:.3f} | {row['seconds']:.1f} |")
    if args.out:
        write_report(args.out, "bf16_gradients", report)
        print(f"report: {args.out}")


if __name__ == "__main__":
    main()
