"""Training images/s of the CamVid recipe in float32 and mixed_bfloat16, and where the time goes.

    .venv/bin/python benchmarks/bench_training_speed.py --data-dir ../shared/data/camvid --out speed.json

The recipe is benchmarks/camvid_from_scratch.sh's: fcn8s_vgg16bn at width 0.125, batch 4,
360x480 crops, Adam with the poly schedule, square-root median-frequency class weights.
For each precision, medians of `--repeats` rounds, interleaved:

  model step   `train_on_batch` on one fixed batch: the model, loss and optimizer alone
  input        batches/s of the training pipeline alone (read, scale, crop, flip, jitter)
  kseg train   `kseg.training.train` for `--steps` steps (pipeline and model together),
               the images/s it logs (its first step, with tracing, is not timed)

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


def model_step(config, spec, policy, steps):
    import keras

    from kseg.losses import MaskedSparseCrossEntropy
    from kseg.training.build import build_model, build_optimizer
    from kseg.training.distribution import dtype_policy
    import kseg.data

    dataset = kseg.data.make_dataset(spec, "train", training=True, batch_size=4, crop=[360, 480], seed=0)
    images, masks = next(iter(dataset.take(1).as_numpy_iterator()))
    with dtype_policy(policy):
        model = build_model(config, spec.num_classes)
        model.compile(optimizer=build_optimizer(config, 1000),
                      loss=MaskedSparseCrossEntropy(spec.num_classes, spec.ignore_index))
        for _ in range(2):
            model.train_on_batch(images, masks)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            model.train_on_batch(images, masks)
            times.append(time.perf_counter() - start)
    keras.backend.clear_session()
    return len(images) / statistics.median(times)


def input_rate(config, spec, steps):
    import kseg.data

    dataset = kseg.data.make_dataset(spec, "train", training=True, batch_size=4, crop=[360, 480], seed=1)
    iterator = iter(dataset)
    next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps * 4 / (time.perf_counter() - start)


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
    parser.add_argument("--out", help="JSON report to write")
    args = parser.parse_args()
    check_out(args.out, "training_speed", inputs=[args.data_dir])
    from kseg.data import get_dataset_spec

    spec = get_dataset_spec("camvid", args.data_dir)
    report = {"machine": machine(), "steps": args.steps, "rounds": []}
    print(f"CPU: {report['machine']['cpu']} ({', '.join(report['machine']['cpu_flags'])})", flush=True)
    scratch = tempfile.mkdtemp(prefix="kseg-speed-")
    for round_index in range(args.repeats):
        row = {"input": input_rate(recipe(args.data_dir, "float32", args.steps, ""), spec, args.steps)}
        for policy in POLICIES:
            config = recipe(args.data_dir, policy, args.steps, os.path.join(scratch, f"{policy}-{round_index}"))
            row[f"model step {policy}"] = model_step(config, spec, policy, args.steps)
            row[f"kseg train {policy}"] = kseg_train(config)
        report["rounds"].append(row)
        print(f"round {round_index + 1}: " + ", ".join(f"{key} {value:.1f}" for key, value in row.items()), flush=True)
    report["median"] = {key: statistics.median(row[key] for row in report["rounds"]) for key in report["rounds"][0]}
    print("\n| images/s (median) | float32 | mixed_bfloat16 | bf16 / float32 |\n|---|---|---|---|")
    for what in ("model step", "kseg train"):
        ours, theirs = report["median"][f"{what} mixed_bfloat16"], report["median"][f"{what} float32"]
        print(f"| {what} | {theirs:.1f} | {ours:.1f} | {ours / theirs:.2f} |")
    print(f"| input pipeline alone | {report['median']['input']:.1f} | | |")
    if args.out:
        write_report(args.out, "training_speed", report)
        print(f"report: {args.out}")


if __name__ == "__main__":
    main()
