"""Training images/s of the CamVid recipe in float32 and mixed_bfloat16, and where the time goes.

    .venv/bin/python benchmarks/bench_training_speed.py --data-dir ../shared/data/camvid --out speed.json

The recipe is benchmarks/camvid_from_scratch.sh's: fcn8s_vgg16bn at width 0.125, batch 4,
360x480 crops, Adam with the poly schedule, square-root median-frequency class weights.
For each precision, medians of `--repeats` rounds, interleaved:

  model step   `train_on_batch` on one fixed batch: the model, loss and optimizer alone
  input        batches/s of the training pipeline alone (read, scale, crop, flip, jitter)
  kseg train   `kseg.training.train` for `--steps` steps (pipeline and model together),
               the images/s it logs (its first step, with tracing, is not timed)

With --profile, each precision's model step also runs once more in a child process under
ONEDNN_VERBOSE=profile_exec, and the time of oneDNN's primitives is summed by kind
(convolutions, matmuls, pooling, reorders); the rest of a step is TensorFlow's own ops.

The figures name the CPU (reports.machine()).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from reports import check_out, machine, write_report  # noqa: E402

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "camvid")
POLICIES = {"float32": "off", "mixed_bfloat16": "bf16"}


def recipe(data_dir, policy, steps, run_dir):
    from kseg.config import TrainConfig

    return TrainConfig(model="fcn8s_vgg16bn", data="camvid", data_dir=data_dir, weights="none", width=0.125,
                       batch_size=4, crop=[360, 480], optimizer="adam", lr=2e-3, schedule="poly",
                       class_weights="sqrt-median-frequency", seed=0, epochs=1, steps_per_epoch=steps,
                       val_split="none", mixed_precision=POLICIES[policy], precision_check=False,
                       run_dir=run_dir)  # fmt: skip


def model_step(config, spec, policy, steps, before_timing=None):
    import keras

    import kseg.data
    from kseg.losses import MaskedSparseCrossEntropy
    from kseg.training.build import build_model, build_optimizer
    from kseg.training.distribution import dtype_policy

    dataset = kseg.data.make_dataset(
        spec, "train", training=True, batch_size=4, options=kseg.data.DatasetOptions(crop=(360, 480), seed=0)
    )
    images, masks = next(iter(dataset.take(1).as_numpy_iterator()))
    with dtype_policy(policy):
        model = build_model(config, spec.num_classes)
        model.compile(optimizer=build_optimizer(config, 1000),
                      loss=MaskedSparseCrossEntropy(spec.num_classes, spec.ignore_index))
        for _ in range(3):
            model.train_on_batch(images, masks)
        if before_timing is not None:  # the profile's child: mean seconds of 5 steps
            before_timing()
            start = time.perf_counter()
            for _ in range(5):
                model.train_on_batch(images, masks)
            print((time.perf_counter() - start) / 5, flush=True)
            return None
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            model.train_on_batch(images, masks)
            times.append(time.perf_counter() - start)
    keras.backend.clear_session()
    return len(images) / statistics.median(times)


def input_rate(config, spec, steps):
    import kseg.data

    dataset = kseg.data.make_dataset(
        spec, "train", training=True, batch_size=4, options=kseg.data.DatasetOptions(crop=(360, 480), seed=1)
    )
    iterator = iter(dataset)
    next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * 4 / (time.perf_counter() - start)


PROFILE_MARK = "kseg-step-seconds"


def onednn_profile(data_dir, policy, steps):
    """{primitive kind: ms per step} of oneDNN, and the step's ms, from a child process."""
    import collections
    import subprocess

    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--data-dir", data_dir, "--profile-step", policy,
         "--steps", str(steps)],
        env={**os.environ, "ONEDNN_VERBOSE": "profile_exec"}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    start = lines.index(PROFILE_MARK)
    times = collections.Counter()
    for line in lines[start:]:
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in fields:
            at = fields.index("exec")
            try:
                times[fields[at + 2]] += float(fields[-1]) / steps
            except ValueError:
                continue
    step = float(lines[-1]) * 1000
    return {"step_ms": step, "onednn_ms": dict(times), "other_ms": step - sum(times.values())}


def profile_step(data_dir, policy, steps):
    """The child of `onednn_profile`: warm up, print the mark, time `steps` steps."""
    from kseg.data import get_dataset_spec

    config = recipe(data_dir, policy, steps, "")
    spec = get_dataset_spec("camvid", data_dir)
    model_step(config, spec, policy, 0, before_timing=lambda: print(PROFILE_MARK, flush=True))


def kseg_train(config):
    from kseg.training import read_checkpoint_state, train

    run_dir = train(config, verbose=0)
    history = read_checkpoint_state(os.path.join(run_dir, "checkpoints", "last.keras"))["history"]
    return history[-1]["images_per_second"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("CAMVID_DIR", DEFAULT_DATA_DIR))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement [20]")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds [2]")
    parser.add_argument("--profile", action="store_true", help="also sum oneDNN's kernel times per step")
    parser.add_argument("--profile-step", help=argparse.SUPPRESS)
    parser.add_argument("--out", help="JSON report to write")
    args = parser.parse_args()
    if args.profile_step:
        return profile_step(args.data_dir, args.profile_step, args.steps)
    if args.out:
        check_out(args.out, "training_speed", inputs=[args.data_dir])
    from kseg.data import get_dataset_spec

    spec = get_dataset_spec("camvid", args.data_dir)
    report = {"machine": machine(), "steps": args.steps, "rounds": []}
    print(f"CPU: {report['machine']['cpu']} ({', '.join(report['machine']['cpu_flags'])})", flush=True)
    with tempfile.TemporaryDirectory(prefix="kseg-speed-") as scratch:  # the runs, gone afterwards
        for round_index in range(args.repeats):
            row = {"input": input_rate(recipe(args.data_dir, "float32", args.steps, ""), spec, args.steps)}
            for policy in POLICIES:
                config = recipe(args.data_dir, policy, args.steps, os.path.join(scratch, f"{policy}-{round_index}"))
                row[f"model step {policy}"] = model_step(config, spec, policy, args.steps)
                row[f"kseg train {policy}"] = kseg_train(config)
            report["rounds"].append(row)
            print(f"round {round_index + 1}: " + ", ".join(f"{key} {value:.1f}" for key, value in row.items()),
                  flush=True)  # fmt: skip
    report["median"] = {key: statistics.median(row[key] for row in report["rounds"]) for key in report["rounds"][0]}
    print("\n| images/s (median) | float32 | mixed_bfloat16 | bf16 / float32 |\n|---|---|---|---|")
    for what in ("model step", "kseg train"):
        ours, theirs = report["median"][f"{what} mixed_bfloat16"], report["median"][f"{what} float32"]
        print(f"| {what} | {theirs:.1f} | {ours:.1f} | {ours / theirs:.2f} |")
    print(f"| input pipeline alone | {report['median']['input']:.1f} | | |")
    if args.profile:
        report["profile"] = {policy: onednn_profile(args.data_dir, policy, 5) for policy in POLICIES}
        print("\n| ms per model step | " + " | ".join(POLICIES) + " |\n|---|---|---|")
        kinds = sorted({kind for row in report["profile"].values() for kind in row["onednn_ms"]})
        for kind in ["step_ms", *kinds, "other_ms"]:
            cells = []
            for row in report["profile"].values():
                value = row["onednn_ms"].get(kind, 0.0) if kind in kinds else row[kind]
                cells.append(f"{value:.1f}")
            label = {"step_ms": "one step", "other_ms": "not oneDNN (TensorFlow ops)"}.get(kind, f"oneDNN {kind}")
            print(f"| {label} | " + " | ".join(cells) + " |")
    if args.out:
        write_report(args.out, "training_speed", report)
        print(f"report: {args.out}")


if __name__ == "__main__":
    main()
