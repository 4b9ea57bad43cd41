"""Throughput of kseg's training input pipeline on CamVid, against OpenCV decoding alone.

    .venv/bin/python benchmarks/bench_pipeline.py --data-dir /path/to/camvid --out bench.json

Measured, each `--repeats` times (the table shows medians, the JSON every run):

  decode (1 thread)    cv2.imdecode of image + mask, one after another
  decode (N threads)   the same with N reader threads: the most any reader can deliver
  train 360x480        make_dataset(training=True): shuffle, read, random scale 0.5-2,
                       pad/crop to 360x480, flip, colour jitter, batch
  train 512x1024       the same at Cityscapes-like 512x1024 crops, CamVid frames scaled
                       up by 1.5-3 (more pixels to resize, jitter and copy)
  eval whole images    make_dataset(training=False): read and batch, no augmentation

FCN-8s training consumes roughly 1-2 images/s at 360x480 on 2 CPU cores, so the
pipeline should deliver at least 10x that (>= 20 images/s) to never make the model wait.
"""

import argparse
import concurrent.futures
import os
import platform
import statistics
import sys
import time

from reports import check_out, write_report

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_DATA_DIR = os.environ.get(
    "CAMVID_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "camvid")
)
MODEL_CONSUMPTION = 2.0  # images/s, FCN-8s training at 360x480 on 2 cores (upper estimate)


def decode_rate(pairs, threads):
    """Images/s of decoding image + mask with OpenCV and `threads` threads."""
    import cv2
    import numpy as np

    def decode(pair):
        image = cv2.imdecode(np.fromfile(pair[0], np.uint8), cv2.IMREAD_UNCHANGED)
        mask = cv2.imdecode(np.fromfile(pair[1], np.uint8), cv2.IMREAD_UNCHANGED)
        return image.shape, mask.shape

    start = time.perf_counter()
    if threads == 1:
        for pair in pairs:
            decode(pair)
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(decode, pairs))
    return len(pairs) / (time.perf_counter() - start)


def pipeline_rates(dataset, repeats):
    """Images/s of full passes over `dataset` (one epoch each), after one warm-up batch."""
    iterator = iter(dataset)
    next(iterator)  # builds the pipeline and starts the reader threads
    del iterator
    rates = []
    for _ in range(repeats):
        count = 0
        start = time.perf_counter()
        for images, _ in dataset:
            count += int(images.shape[0])
        rates.append(count / (time.perf_counter() - start))
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help=f"CamVid root (SegNet layout). Default: $CAMVID_DIR or {DEFAULT_DATA_DIR}.",
    )
    parser.add_argument("--split", default="train", help="Split to read. Default: train.")
    parser.add_argument("--batch-size", type=int, default=8, help="Batch size of the pipelines. Default: 8.")
    parser.add_argument(
        "--repeats", type=int, default=3, help="Passes per measurement; medians are shown. Default: 3."
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="Threads for the parallel decode reference. Default: CPU cores.",
    )
    parser.add_argument("--out", default="bench_pipeline.json", help="JSON file for the results.")
    args = parser.parse_args(argv)
    check_out(args.out, "bench_pipeline", [args.data_dir])

    import tensorflow as tf

    from kseg.data import DatasetOptions, get_dataset_spec, make_dataset

    load_before = os.getloadavg()
    spec = get_dataset_spec("camvid", data_dir=args.data_dir)
    pairs = spec.pairs(args.split)
    results = {}

    results["decode (1 thread)"] = [decode_rate(pairs, 1) for _ in range(args.repeats)]
    results[f"decode ({args.threads} threads)"] = [
        decode_rate(pairs, args.threads) for _ in range(args.repeats)
    ]
    cases = (
        ("train 360x480", True, DatasetOptions(crop=(360, 480))),
        ("train 512x1024", True, DatasetOptions(crop=(512, 1024), scale_range=(1.5, 3.0))),
        ("eval whole images", False, DatasetOptions()),
    )
    for name, training, options in cases:
        dataset = make_dataset(spec, args.split, training=training, batch_size=args.batch_size, options=options)
        results[name] = pipeline_rates(dataset, args.repeats)

    load_after = os.getloadavg()
    medians = {name: statistics.median(rates) for name, rates in results.items()}
    print(
        f"{len(pairs)} CamVid {args.split} pairs, batch {args.batch_size}, {os.cpu_count()} CPU cores, "
        f"{args.repeats} passes each (median)"
    )
    print(
        f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after: other work on the "
        "machine lowers every figure"
    )
    print(f"{'measurement':<22} {'images/s':>10} {'model needs':>12} {'margin':>8}")
    needs = {}
    for name, value in medians.items():
        # The model's need falls with the pixels per image: 512x1024 has 3x those of 360x480.
        needs[name] = (
            MODEL_CONSUMPTION * (360 * 480) / (512 * 1024) if "512x1024" in name else MODEL_CONSUMPTION
        )
        print(f"{name:<22} {value:>10.1f} {needs[name]:>12.2f} {value / needs[name]:>7.1f}x")
    print(
        f"(FCN-8s training needs about {MODEL_CONSUMPTION:g} images/s at 360x480, proportionally fewer at "
        "512x1024; goal: margin >= 10x)"
    )

    payload = {
        "data_dir": args.data_dir,
        "split": args.split,
        "num_pairs": len(pairs),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "model_consumption_images_per_s": needs,
        "images_per_s": {name: {"median": medians[name], "runs": rates} for name, rates in results.items()},
    }
    write_report(args.out, "bench_pipeline", payload)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    from kseg.errors import KsegError

    try:
        main()
    except KsegError as error:
        sys.exit(f"error: {error}")
