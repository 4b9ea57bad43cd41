"""What each loss is worth: the demo's recipe trained once per `--loss`, on a reduced demo set.

    python benchmarks/loss_table.py --out-dir runs/loss-table --out docs/loss_table.json

The data is the demo's synthetic scenes (`kseg data synth`, seed 0, 96x128), fewer of them
(--num-train, --num-val), written to OUT_DIR/data. Every loss trains with `kseg train
--recipe demo` (FCN-8s on VGG16-BN at width 0.125 from random weights, batch 16, Adam 4e-3,
no random scaling, no dropout, the final upsampling learned, seed 0) for --epochs epochs,
only `--loss` differing; each run's best checkpoint (the epoch of highest val mIoU, chosen
on val) and its last one are scored on val with `kseg evaluate`. The report gives, per
loss, both val mIoUs, the per-class IoUs of the last checkpoint, the training minutes and
images/s, the precision trained in (auto's bf16, unless the precision check found that it
does not train like float32 with that loss and fell back to off), and the machine (CPU
model and flags, load average at the end). The minutes are only comparable between rows
when nothing else shared the machine. Not a test: each loss trains for a few minutes.
"""

import argparse
import csv
import os
import subprocess
import sys
import time

from reports import check_out, machine, write_report

from kseg.config import TrainConfig
from kseg.errors import KsegError
from kseg.files import lies_in, load_json
from kseg.runs import LAST, checkpoint_path

DEFAULT_LOSSES = ("ce", "dice", "focal", "lovasz", "ce+dice")
RECIPE = ("--recipe", "demo", "--seed", "0", "--quiet")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default="runs/loss-table", help="the data and one run folder per loss go here")
    parser.add_argument("--out", default=None, help="the JSON report (default: OUT_DIR/loss_table.json)")
    parser.add_argument("--losses", default=",".join(DEFAULT_LOSSES),
                        help="comma-separated --loss values (each a loss or a weighted sum)")  # fmt: skip
    parser.add_argument("--num-train", type=int, default=1200, help="training scenes")
    parser.add_argument("--num-val", type=int, default=200, help="validation scenes")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of every run")
    parser.add_argument("--kseg", default=os.path.join(".venv", "bin", "kseg"), help="the kseg command")
    args = parser.parse_args(argv)
    from kseg.config import parse_loss

    out = args.out or os.path.join(args.out_dir, "loss_table.json")
    try:
        losses = [parse_loss(text, "--losses") for text in args.losses.split(",")]
        check_outputs(args.out_dir, losses, out)
    except KsegError as error:
        sys.exit(f"error: {error}")
    data_dir = os.path.join(args.out_dir, "data")
    subprocess.run([args.kseg, "data", "synth", data_dir, "--num-train", str(args.num_train),
                    "--num-val", str(args.num_val), "--seed", "0"], check=True)  # fmt: skip
    rows = []
    for loss in losses:
        run_dir = os.path.join(args.out_dir, slug(loss))
        start = time.perf_counter()
        subprocess.run([args.kseg, "train", *RECIPE, "--data-dir", data_dir, "--epochs", str(args.epochs),
                        "--loss", loss, "--run-dir", run_dir], check=True)  # fmt: skip
        wall_minutes = (time.perf_counter() - start) / 60
        scores = {}
        for which, model in (("best", run_dir), ("last", checkpoint_path(run_dir, LAST))):
            path = os.path.join(args.out_dir, f"{slug(loss)}-val-{which}.json")
            subprocess.run([args.kseg, "evaluate", model, "--data", "synthetic", "--data-dir", data_dir,
                            "--split", "val", "--out", path], check=True)  # fmt: skip
            scores[which] = load_json(path)
        rows.append(summarise(loss, run_dir, scores, wall_minutes))
        print(f"{loss}: val mIoU {rows[-1]['best_mean_iou']:.4f} (best epoch), {rows[-1]['last_mean_iou']:.4f} "
              f"(last), {wall_minutes:.1f} minutes", flush=True)  # fmt: skip
    print("| --loss | val mIoU, best epoch (chosen on val) | val mIoU, last epoch | minutes (shared machine) |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| `{row['loss']}` | {row['best_mean_iou']:.3f} | {row['last_mean_iou']:.3f} | "
              f"{row['wall_minutes']:.1f} |")  # fmt: skip
    settings = {"recipe": list(RECIPE), "num_train": args.num_train, "num_val": args.num_val, "epochs": args.epochs,
                "data": f"kseg data synth --num-train {args.num_train} --num-val {args.num_val} --seed 0"}  # fmt: skip
    write_report(out, "loss_table", {"settings": settings, "machine": machine(), "losses": rows})
    print(f"report: {out}")


def slug(loss):
    """A folder name for a loss: "0.5*ce+lovasz" -> "0.5ce-lovasz"."""
    return loss.replace("*", "").replace("+", "-")


def check_outputs(out_dir, losses, out):
    """Refuses, before any work, to replace anything: the data, each loss's run folder and
    its val reports must not exist yet, and the report may only replace an earlier one."""
    data_dir = os.path.join(out_dir, "data")
    paths = [data_dir]
    for loss in losses:
        paths += [os.path.join(out_dir, slug(loss))]
        paths += [os.path.join(out_dir, f"{slug(loss)}-val-{which}.json") for which in ("best", "last")]
    for path in paths:
        if os.path.lexists(path):
            raise KsegError(f"{path} exists; choose another --out-dir (a finished run is never replaced)")
    if lies_in(os.path.realpath(out), os.path.realpath(data_dir)):
        raise KsegError(f"--out {out}: lies in the data folder {data_dir}; choose another path")
    check_out(out, "loss_table")


def summarise(loss, run_dir, scores, wall_minutes):
    """One row: the val scores of the best and last checkpoints and the run's log."""
    with open(os.path.join(run_dir, "log.csv")) as handle:
        log = list(csv.DictReader(handle))
    steady = sorted(float(row["images_per_second"]) for row in log[1:] or log)
    last = scores["last"]
    # The precision trained in: the precision check may have turned auto's bf16 to off.
    precision = TrainConfig.from_yaml(os.path.join(run_dir, "config.yaml")).mixed_precision
    return {
        "loss": loss, "epochs": len(log), "mixed_precision": precision,
        "best_mean_iou": scores["best"]["mean_iou"], "last_mean_iou": last["mean_iou"],
        "last_pixel_accuracy": last["pixel_accuracy"],
        "last_class_iou": {row["name"]: row["iou"] for row in last["classes"]},
        "val_mean_iou_per_epoch": [float(row["mean_iou"]) for row in log],
        "training_minutes": sum(float(row["seconds"]) for row in log) / 60, "wall_minutes": wall_minutes,
        "images_per_second": steady[len(steady) // 2],
    }  # fmt: skip


if __name__ == "__main__":
    main()
