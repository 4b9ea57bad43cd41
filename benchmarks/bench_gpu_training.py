"""Training and inference speed of FCN-8s under the current keras backend.

Measures training steps per second of FCN-8s (VGG16) with `--classes` classes on random
`--crop` batches of `--batch-size` images in float32, mixed_float16 and mixed_bfloat16,
then inference on one `--infer-size` image, and prints a Markdown table.

    KERAS_BACKEND=jax python benchmarks/bench_gpu_training.py              # the GPU setting
    KERAS_BACKEND=jax python benchmarks/bench_gpu_training.py --width 0.0625 --crop 64x128 \\
        --steps 2 --infer-size 128x256                                      # a quick CPU check

The training step is the one `kseg train` runs (the model, masked cross-entropy loss and
optimizer of kseg, compiled by keras' fit), on numpy batches, so the data pipeline is not
measured. The first `--warmup` steps (compilation) are not timed. mixed_float16 trains with
keras' LossScaleOptimizer, as kseg does.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reports import check_out, write_report  # noqa: E402

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def parse_size(text):
    height, _, width = text.lower().partition("x")
    return int(height), int(width)


def make_model(policy, args):
    import keras

    from kseg.losses import MaskedSparseCrossEntropy
    from kseg.models import create_model

    keras.config.set_dtype_policy(policy)
    try:
        model = create_model("fcn8s", num_classes=args.classes, weights=None, width=args.width)
        model.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9),
                      loss=MaskedSparseCrossEntropy(args.classes), jit_compile=True)  # fmt: skip
    finally:
        keras.config.set_dtype_policy("float32")
    return model


def batches(args, steps):
    """A keras PyDataset giving the same random batch `steps` times (numpy arrays)."""
    import keras

    rng = np.random.default_rng(0)
    height, width = parse_size(args.crop)
    images = rng.integers(0, 256, (args.batch_size, height, width, 3), dtype=np.uint8)
    masks = rng.integers(0, args.classes, (args.batch_size, height, width), dtype=np.uint8)

    class Same(keras.utils.PyDataset):
        @property
        def num_batches(self):
            return steps

        def __getitem__(self, index):
            return images, masks

    return Same()


def time_training(policy, args):
    import keras

    model = make_model(policy, args)

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends = []

        def on_train_batch_end(self, batch, logs=None):
            float(np.asarray(logs["loss"]))  # waits for the step (JAX dispatches asynchronously)
            self.ends.append(time.perf_counter())

    timer = Timer()
    history = model.fit(batches(args, args.warmup + args.steps), epochs=1, shuffle=False, verbose=0,
                        callbacks=[timer])  # fmt: skip
    timed = timer.ends[max(args.warmup, 1) - 1:]  # from the end of the last untimed step
    seconds = timed[-1] - timed[0]
    loss = float(history.history["loss"][-1])
    return {"policy": policy, "steps_per_second": (len(timed) - 1) / seconds if seconds > 0 else float("nan"),
            "loss": loss}  # fmt: skip


def time_inference(args):
    model = make_model("float32", args)
    height, width = parse_size(args.infer_size)
    image = np.random.default_rng(1).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    np.asarray(model.predict_on_batch(image))  # compile
    start = time.perf_counter()
    for _ in range(args.infer_runs):
        np.asarray(model.predict_on_batch(image))
    return (time.perf_counter() - start) / args.infer_runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="timed training steps per policy (default 50)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (default 3)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", default="512x1024", help="training crop HxW (default 512x1024)")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--width", type=float, default=1.0, help="VGG16 channel multiplier (default 1)")
    parser.add_argument("--infer-size", default="1024x2048", help="inference image HxW (default 1024x2048)")
    parser.add_argument("--infer-runs", type=int, default=5)
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated dtype policies")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.json:
        check_out(args.json, "bench_gpu_training", option="--json")

    import keras

    from kseg.training.distribution import cuda_gpu_visible

    backend = keras.backend.backend()
    results = [time_training(policy, args) for policy in args.policies.split(",") if policy]
    inference = time_inference(args)
    print(f"backend {backend}, CUDA GPU visible: {cuda_gpu_visible()}; FCN-8s width {args.width:g}, "
          f"{args.classes} classes, batch {args.batch_size} x {args.crop}, {args.steps} timed steps")  # fmt: skip
    print("| policy | train steps/s | images/s | last loss |")
    print("| --- | --- | --- | --- |")
    for row in results:
        print(f"| {row['policy']} | {row['steps_per_second']:.3f} | "
              f"{row['steps_per_second'] * args.batch_size:.2f} | {row['loss']:.4f} |")  # fmt: skip
    print(f"inference at {args.infer_size} (float32): {inference * 1000:.1f} ms per image")
    if args.json:
        write_report(args.json, "bench_gpu_training", {"backend": backend, "args": vars(args),
                     "training": results, "inference_seconds": inference})  # fmt: skip


if __name__ == "__main__":
    from kseg.errors import KsegError

    try:
        main()
    except KsegError as error:
        sys.exit(f"error: {error}")
