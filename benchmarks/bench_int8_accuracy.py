"""What int8 quantisation costs a trained model: val mIoU of the Keras model, its fp32
TFLite export and its full-integer int8 TFLite export (calibrated on training images),
each scored against the ground truth, plus the share of pixels where int8 and fp32 give
the same class.

    python benchmarks/bench_int8_accuracy.py runs/camvid-lraspp --data camvid \
        --data-dir ../shared/data/camvid --out bench/int8_accuracy.json
    python benchmarks/bench_int8_accuracy.py demo/run --data synthetic --data-dir demo/data

The exports keep any-size input, so every val image is scored whole, as `kseg evaluate`
scores it. Not a test: it needs a trained run.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reports import check_out, write_report  # noqa: E402


def score(predict, pairs, spec):
    """(confusion matrix summed over `pairs`, class maps) of `predict(image) -> logits`."""
    import numpy as np

    from kseg.metrics import confusion_matrix

    total, maps = None, []
    for image_path, mask_path in pairs:
        image, mask = spec.read_pair(image_path, mask_path)
        classes = np.asarray(predict(image)).argmax(-1)
        counts = confusion_matrix(mask, classes, spec.num_classes, spec.ignore_index)
        total = counts if total is None else total + counts
        maps.append(classes)
    return total, maps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="trained run directory or .keras file")
    parser.add_argument("--data", required=True, help="dataset name (camvid, synthetic, ...)")
    parser.add_argument("--data-dir", required=True, help="dataset root")
    parser.add_argument("--split", default="val", help="split scored (default: val)")
    parser.add_argument("--calibration-images", type=int, default=100,
                        help="training images for int8 calibration (default: 100)")
    parser.add_argument("--images", type=int, default=0, help="most val images scored (0: all)")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads (default: 2)")
    parser.add_argument("--out", default=None, help="JSON file for the figures")
    args = parser.parse_args(argv)


    from kseg.data.registry import get_dataset_spec
    from kseg.exporting import ExportedModel, ExportTarget, load_images, tflite_bytes
    from kseg.inference import predict_logits
    from kseg.metrics import segmentation_scores
    from kseg.models.inference import inference_model
    from kseg.models.saving import load_model
    from kseg.runs import resolve_model_path

    path, run_dir = resolve_model_path(args.model)
    if args.out:
        check_out(args.out, "bench_int8_accuracy", [path, run_dir, args.data_dir])
    model = inference_model(load_model(path), "fp32")
    spec = get_dataset_spec(args.data, args.data_dir)
    pairs = spec.pairs(args.split)[: args.images or None]
    calibration = load_images(args.data, args.data_dir, limit=args.calibration_images)

    results = {"model": path, "data": args.data, "split": args.split, "images": len(pairs),
               "calibration_images": len(calibration), "variants": {}}  # fmt: skip
    maps = {}
    start = time.perf_counter()
    confusion, maps["keras"] = score(lambda image: predict_logits(model, image), pairs, spec)
    results["variants"]["keras_fp32"] = {"seconds": time.perf_counter() - start,
                                         **_scores(segmentation_scores(confusion))}
    with tempfile.TemporaryDirectory() as folder:
        for quantize in ("none", "int8"):
            file = os.path.join(folder, f"model-{quantize}.tflite")
            with open(file, "wb") as handle:
                # the any-size file: each image is scored at its own size
                target = ExportTarget(quantize=quantize, calibration=calibration, mediapipe=False)
                handle.write(tflite_bytes(model, target, folder))
            exported = ExportedModel(file, "tflite", threads=args.threads)
            start = time.perf_counter()
            confusion, maps[quantize] = score(exported, pairs, spec)
            name = "tflite_fp32" if quantize == "none" else "tflite_int8"
            results["variants"][name] = {"seconds": time.perf_counter() - start,
                                         "mib": os.path.getsize(file) / 2**20,
                                         **_scores(segmentation_scores(confusion))}  # fmt: skip
    same = sum(int((a == b).sum()) for a, b in zip(maps["none"], maps["int8"]))
    pixels = sum(a.size for a in maps["none"])
    results["int8_same_class_as_fp32"] = same / pixels
    fp32, int8 = results["variants"]["tflite_fp32"], results["variants"]["tflite_int8"]
    results["int8_miou_points_lost"] = 100 * (fp32["mean_iou"] - int8["mean_iou"])

    print(f"{path} on {args.data}/{args.split}: {len(pairs)} images, int8 calibrated on "
          f"{len(calibration)} training images")
    for name, row in results["variants"].items():
        size = f", {row['mib']:.1f} MiB" if "mib" in row else ""
        print(f"  {name:<12} mIoU {100 * row['mean_iou']:.2f}  pixel acc {100 * row['pixel_accuracy']:.2f}"
              f"  ({row['seconds']:.1f} s{size})")
    print(f"  int8 loses {results['int8_miou_points_lost']:.2f} mIoU points against fp32 TFLite; same class "
          f"on {100 * results['int8_same_class_as_fp32']:.2f}% of pixels")
    if args.out:
        write_report(args.out, "bench_int8_accuracy", results)
    return results


def _scores(scores):
    keys = ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou", "class_iou")
    return {key: scores[key] for key in keys}


if __name__ == "__main__":
    from kseg.errors import KsegError

    try:
        main()
    except KsegError as error:
        sys.exit(f"error: {error}")
