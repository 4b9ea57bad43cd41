"""CamVid from random weights, one recipe for every model, the same CPU time each.

    python benchmarks/camvid_table.py --data-dir ../shared/data/camvid --out-dir runs/camvid-table

Every model trains with the same options (Adam 2e-3 with the poly schedule, batch 4,
360x480 crops, square-root median-frequency class weights, seed 0, each model's own
defaults otherwise); only the number of epochs differs. It is chosen so that each model's
training steps take about `--budget-minutes` on this machine: a probe first trains the
model for 2 short epochs of --probe-steps steps (kept in OUT_DIR/probe/MODEL), and its
second epoch's images/s gives the minutes per epoch (--epochs overrides the probe). Each
run's last checkpoint (nothing chosen on val) and its best one (the epoch of highest val
mIoU, an optimistic figure) are then scored on val with `kseg evaluate`, and
`bench_int8_accuracy.py` measures what the best one's full-integer int8 export loses.
A model whose single epoch takes more than MAX_OVERRUN (1.5) budgets is not trained:
its row gives its parameters and speed. The table printed at the end gives parameters,
epochs, training minutes, images/s and both val mIoUs; table.json adds the machine.
`--table-only` trains nothing and makes the table from the runs already in OUT_DIR (models
trained by separate invocations). Not a test: each model trains for about the budget (25
minutes by default).
"""

import argparse
import csv
import math
import os
import subprocess
import sys
import time

from reports import check_out, machine, write_report

from kseg.errors import KsegError
from kseg.files import lies_in, load_json
from kseg.runs import LAST, checkpoint_path

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA_DIR = os.environ.get("CAMVID_DIR", os.path.join(HERE, "..", "..", "shared", "data", "camvid"))
RECIPE = ("--data", "camvid", "--weights", "none", "--batch-size", "4", "--crop", "360x480",
          "--optimizer", "adam", "--lr", "2e-3", "--class-weights", "sqrt-median-frequency",
          "--seed", "0", "--quiet")  # fmt: skip
BATCH_SIZE = int(RECIPE[RECIPE.index("--batch-size") + 1])
CAMVID_TRAIN_IMAGES = 367  # the SegNet layout's train split
MODELS = {
    "fcn8s_vgg16bn": {"options": ("--width", "0.125")},
    "lraspp_mobilenetv3large": {"options": ()},
    "deeplabv3_resnet50": {"options": ()},
    "unet_bn": {"options": ("--width", "0.125")},
    "segnet": {"options": ("--width", "0.125")},
    "deeplabv3plus_mobilenetv3large": {"options": ()},
}
DEFAULT_MODELS = tuple(MODELS)


# A model whose one epoch takes more than this many budgets is not trained: its row gives
# its speed (the budget buys it no epoch).
MAX_OVERRUN = 1.5


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="CamVid root (SegNet layout)")
    parser.add_argument("--out-dir", default="runs/camvid-table", help="one run folder per model goes here")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--budget-minutes", type=float, default=25.0,
                        help="training-step time aimed at per model (validation not counted)")
    parser.add_argument("--epochs", type=int, default=0, help="epochs for every model (0: from the budget)")
    parser.add_argument("--probe-steps", type=int, default=8, help="steps of each of the probe's 2 epochs")
    parser.add_argument("--kseg", default=os.path.join(".venv", "bin", "kseg"), help="the kseg command")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing: make table.json from the runs and reports already in --out-dir "
                             "(e.g. after the models were trained by separate invocations)")
    args = parser.parse_args(argv)
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in models if name not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")

    table = os.path.join(args.out_dir, "table.json")
    try:
        if args.table_only:
            check_out(table, "camvid_table", [args.data_dir], option="table")
        else:
            check_outputs(args.out_dir, args.data_dir, models, table)
    except KsegError as error:
        sys.exit(f"error: {error}")
    if args.table_only:
        rows = [finished_row(name, args.out_dir, args.budget_minutes) for name in models]
    else:
        train_images = None if args.epochs else count_train_images(args.data_dir)
        rows = [train_and_score(name, args, train_images) for name in models]
    print_table(rows)
    write_report(table, "camvid_table", {"machine": machine(), "recipe": RECIPE,
                                         "budget_minutes": args.budget_minutes, "models": rows})


def train_and_score(name, args, train_images):
    """Trains `name` for the epochs that fit the budget, scores its best and last
    checkpoints on val and measures its int8 export; returns its table row."""
    run_dir = os.path.join(args.out_dir, name)
    train = [args.kseg, "train", "--model", name, *RECIPE, *MODELS[name]["options"], "--data-dir", args.data_dir]
    epochs, epoch_minutes = args.epochs, None
    if not epochs:
        epoch_minutes = probe_epoch_minutes(train, os.path.join(args.out_dir, "probe", name), args.probe_steps,
                                            train_images)  # fmt: skip
        if epoch_minutes > MAX_OVERRUN * args.budget_minutes:
            print(f"{name}: {epoch_minutes:.1f} minutes per epoch (probe), more than {MAX_OVERRUN} budgets: "
                  "not trained", flush=True)
            return untrained_row(name, epoch_minutes)
        epochs = max(1, math.floor(args.budget_minutes / epoch_minutes + 0.5))
        print(f"{name}: {epoch_minutes:.2f} minutes per epoch (probe), so {epochs} epochs", flush=True)
    start = time.perf_counter()
    subprocess.run([*train, "--epochs", str(epochs), "--run-dir", run_dir], check=True)
    wall_minutes = (time.perf_counter() - start) / 60
    metrics, last_metrics, int8 = report_paths(args.out_dir, name)
    for model, out in ((run_dir, metrics), (checkpoint_path(run_dir, LAST), last_metrics)):
        subprocess.run([args.kseg, "evaluate", model, "--data", "camvid", "--data-dir", args.data_dir,
                        "--split", "val", "--out", out], check=True)  # fmt: skip
    subprocess.run([sys.executable, os.path.join(HERE, "bench_int8_accuracy.py"), run_dir, "--data", "camvid",
                    "--data-dir", args.data_dir, "--out", int8], check=True)  # fmt: skip
    return {**summarise(name, run_dir, metrics, last_metrics, int8), "wall_minutes": wall_minutes,
            "probe_epoch_minutes": epoch_minutes}


def finished_row(name, out_dir, budget_minutes):
    """The row of a model trained and scored earlier in `out_dir`, or of one whose probe
    found an epoch longer than MAX_OVERRUN budgets."""
    run_dir = os.path.join(out_dir, name)
    reports = report_paths(out_dir, name)
    epoch_minutes = probe_minutes(os.path.join(out_dir, "probe", name))
    if all(os.path.isfile(path) for path in reports):
        return {**summarise(name, run_dir, *reports), "wall_minutes": None, "probe_epoch_minutes": epoch_minutes}
    if epoch_minutes is not None and epoch_minutes > MAX_OVERRUN * budget_minutes:
        return untrained_row(name, epoch_minutes)
    sys.exit(f"error: {run_dir}: no finished run with its val and int8 reports, and no probe that rules it out")


def untrained_row(name, epoch_minutes):
    """The row of a model the budget buys no epoch of: its parameters and speed."""
    return {"model": name, "parameters": _parameters(name), "probe_epoch_minutes": epoch_minutes,
            "not_trained": f"one epoch takes {epoch_minutes:.1f} minutes, more than {MAX_OVERRUN} budgets"}


def report_paths(out_dir, name):
    """Where the val metrics of the best and last checkpoints and the int8 report go."""
    return tuple(os.path.join(out_dir, f"{name}-{kind}.json") for kind in ("val", "val-last", "int8"))


def print_table(rows):
    print("| model | parameters | epochs | minutes (training only) | images/s | val mIoU, last epoch "
          "| best epoch's val mIoU (chosen on val) | its int8 val mIoU |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "not_trained" in row:
            cells = (f"`{row['model']}`", f"{row['parameters'] / 1e6:.1f}M", "-", row["not_trained"], "", "", "", "")
        else:
            wall = "?" if row["wall_minutes"] is None else f"{row['wall_minutes']:.0f}"
            cells = (f"`{row['model']}`", f"{row['parameters'] / 1e6:.1f}M", row["epochs"],
                     f"{wall} ({row['minutes']:.0f})", f"{row['images_per_second']:.2f}",
                     f"{100 * row['last_mean_iou']:.1f}", f"{100 * row['mean_iou']:.1f}",
                     f"{100 * row['int8_mean_iou']:.1f}")  # fmt: skip
        print("| " + " | ".join(map(str, cells)) + " |")


def count_train_images(data_dir):
    from kseg.data import get_dataset_spec

    return len(get_dataset_spec("camvid", data_dir).pairs("train"))


def probe_epoch_minutes(train, probe_dir, steps, train_images):
    """Minutes of training steps per CamVid epoch of `train_images`, from the second of two
    short epochs of `train` (the first one includes tracing and compiling)."""
    subprocess.run([*train, "--epochs", "2", "--steps-per-epoch", str(steps), "--val-split", "none",
                    "--run-dir", probe_dir], check=True)  # fmt: skip
    return probe_minutes(probe_dir, train_images)


def probe_minutes(probe_dir, train_images=CAMVID_TRAIN_IMAGES):
    """The minutes per epoch a finished probe measured, or None when there is none."""
    log = os.path.join(probe_dir, "log.csv")
    if not os.path.isfile(log):
        return None
    with open(log) as handle:
        images_per_second = float(list(csv.DictReader(handle))[-1]["images_per_second"])
    return math.ceil(train_images / BATCH_SIZE) * BATCH_SIZE / images_per_second / 60


def check_outputs(out_dir, data_dir, models, table):
    """Refuses, before any training, outputs that would land in the dataset or replace
    anything: a model's run and probe folders and its val and int8 reports must not exist
    yet (a finished run is never replaced), and table.json may only be an earlier table."""
    if lies_in(os.path.realpath(out_dir), os.path.realpath(data_dir)):
        raise KsegError(f"--out-dir {out_dir}: is or lies in the dataset {data_dir}; choose another folder")
    for name in models:
        reports = [os.path.join(out_dir, f"{name}-{kind}.json") for kind in ("val", "val-last", "int8")]
        for path in (os.path.join(out_dir, name), os.path.join(out_dir, "probe", name), *reports):
            if os.path.lexists(path):
                raise KsegError(f"{path} exists; choose another --out-dir (a finished run is never replaced)")
    check_out(table, "camvid_table", [data_dir], option="table")


def summarise(name, run_dir, metrics_path, last_metrics_path, int8_path):
    """One table row from a finished run's log.csv, the val metrics of its best and last
    checkpoints and the int8 report of the best one."""
    with open(os.path.join(run_dir, "log.csv")) as handle:
        log = list(csv.DictReader(handle))
    metrics, last_metrics, int8 = (load_json(path) for path in (metrics_path, last_metrics_path, int8_path))
    steady = sorted(float(row["images_per_second"]) for row in log[1:] or log)
    return {
        "model": name, "parameters": _parameters(name), "epochs": len(log),
        "minutes": sum(float(row["seconds"]) for row in log) / 60,
        "images_per_second": steady[len(steady) // 2], "mean_iou": metrics["mean_iou"],
        "last_mean_iou": last_metrics["mean_iou"],
        "int8_mean_iou": int8["variants"]["tflite_int8"]["mean_iou"],
        "int8_points_lost": int8["int8_miou_points_lost"],
    }  # fmt: skip


def _parameters(name):
    """The parameters of `name` with the table's options, for CamVid's 11 classes."""
    from kseg.models.registry import parameter_count

    options = MODELS[name]["options"]
    kwargs = {"width": float(options[1])} if options[:1] == ("--width",) else {}
    return parameter_count(name, num_classes=11, **kwargs)


if __name__ == "__main__":
    main()
