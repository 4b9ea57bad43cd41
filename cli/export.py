"""`kseg export`: a trained model as a SavedModel, a TFLite file or an ONNX file."""

import os

import click
from kseg.cli.params import Number, Size


@click.command()
@click.argument("model_path", metavar="[RUN_DIR|MODEL.keras]", required=False)
@click.option("--format", "export_format", required=True,
              type=click.Choice(["savedmodel", "tflite", "onnx"]), help="What to write.")
@click.option("--out", default=None, type=click.Path(),
              help="Destination (a folder for savedmodel). Default: RUN_DIR/export/"
                   "best_<format>, beside a model file, or for the shipped model in the "
                   "current folder.")
@click.option("--force", is_flag=True,
              help="Replace an existing export of the same format that kseg wrote "
                   "(never anything else).")
@click.option("--quantize", default="none", show_default=True,
              type=click.Choice(["none", "fp16", "dynamic", "int8"]),
              help="TFLite only: float16 weights, int8 weights (dynamic), or full-integer "
                   "int8 calibrated on --calibration-data.")
@click.option("--calibration-data", default=None, metavar="FOLDER|DATASET",
              help="Images for int8 calibration: a folder, or a dataset name "
                   "(cityscapes, voc, camvid, ...; with --data-dir).")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False),
              help="Dataset root for --calibration-data DATASET.")
@click.option("--calibration-images", default=100, show_default=True,
              type=Number(1, 100000, integer=True), help="Most calibration images used.")
@click.option("--input-size", default=None, type=Size(square=True),
              help="Fix the input shape HxW (mobile runtimes). Default: any size; a "
                   "MediaPipe-ready TFLite file 512x512.")
@click.option("--mediapipe/--no-mediapipe", default=None,
              help="TFLite only. --mediapipe (the default): the file MediaPipe's "
                   "ImageSegmenter runs (fixed input size, one output \"logits\", labels "
                   "in its metadata). --no-mediapipe: a plain LiteRT file, any size unless "
                   "--input-size, outputs \"classes\" and \"logits\".")
@click.option("--check", is_flag=True,
              help="Reload the export and compare it with the Keras model; a failed check "
                   "writes nothing. Unquantized: logits within 1e-3 of the largest logit, "
                   "or at 99% of the pixels with the classes agreeing on 99.9%; quantized: "
                   "no NaN or inf.")
@click.option("--check-images", default=None, type=click.Path(exists=True, file_okay=False),
              help="Folder of images for --check (implies it); default: generated images.")
@click.option("--unsafe", is_flag=True,
              help="Allow models containing code (Lambda layers); trusted files only.")
def export(model_path, export_format, out, force, quantize, calibration_data, data_dir,
           calibration_images, input_size, mediapipe, check, check_images, unsafe):
    """Export a trained model (a run directory or a .keras file).

    Without one, the latest run under ./runs is exported, else the CamVid model kseg
    ships (written into the current folder, e.g. ./camvid-fcn8s.tflite).

    \b
    Input:   "images", uint8 RGB [batch, height, width, 3], 0..255, not normalized
             (any size unless --input-size).
    Outputs: "logits" (float32, [batch, height, width, classes]) and
             "classes" (int32 class map, [batch, height, width]).
    TFLite:  MediaPipe-ready by default: batch 1, a fixed size (--input-size, default
             512x512) and the one output "logits"; --no-mediapipe for both outputs
             at any size.
    Every export carries the class names (and colours, from the run's classes.json);
    docs/deploying.md shows how to run each format and read them.
    An existing --out is replaced only with --force, and only when kseg wrote it as an
    export (listed in its folder's .kseg-outputs.json).
    \b
    Examples:
      kseg export runs/voc_fcn8s --format savedmodel --check
      kseg export runs/voc_fcn8s --format tflite --quantize int8 \\
          --calibration-data data/voc_images --input-size 512x512 --check
      kseg export model.keras --format onnx --out model.onnx --check
    """
    from kseg.errors import KsegError
    from kseg.exporting import (
        DEFAULT_TFLITE_SIZE,
        ExportedModel,
        check_destination,
        check_export,
        default_output_path,
        export_model,
        float32_model,
        load_images,
        parity_problem,
        sample_images,
    )
    from kseg.models.saving import load_segmentation_model
    from kseg.runs import SHIPPED_MODEL, choose_model, read_classes

    if quantize != "none" and export_format != "tflite":
        raise KsegError(f"--quantize {quantize} applies to --format tflite only")
    if mediapipe is not None and export_format != "tflite":
        raise KsegError(f"--{'' if mediapipe else 'no-'}mediapipe applies to --format tflite only")
    mediapipe = mediapipe is not False
    if calibration_data and quantize != "int8":
        raise KsegError("--calibration-data is used by --quantize int8 only")
    if quantize == "int8" and not calibration_data:
        raise KsegError(
            "--quantize int8 needs --calibration-data: a folder of representative images "
            "or a dataset name"
        )
    chosen = choose_model(model_path, option="RUN_DIR|MODEL.keras")
    path, run_dir = chosen.path, chosen.run_dir
    if chosen.note:
        click.echo(chosen.note, err=True)
    if out is None and chosen.shipped:  # never into kseg's weights folder: the current one
        out = os.path.basename(default_output_path(SHIPPED_MODEL + ".keras", None, export_format, quantize))
    out = out or default_output_path(path, run_dir, export_format, quantize)
    checked = check_destination(out, export_format, path, run_dir,
                                [calibration_data, data_dir, check_images], force)
    # A run trained under a mixed policy is exported, and checked, in float32.
    loaded, num_classes = load_segmentation_model(path, unsafe=unsafe)
    model = float32_model(loaded)
    classes = read_classes(run_dir, num_classes, path)
    if classes is None:
        click.echo(f"warning: {path}: no classes.json beside it, so the export names its "
                   f"{num_classes} classes class 0 .. class {num_classes - 1}, without colours",
                   err=True)
    if export_format == "tflite" and mediapipe and not input_size:
        height, width = DEFAULT_TFLITE_SIZE
        click.echo(f"MediaPipe-ready TFLite: fixed input {height}x{width} (MediaPipe resizes "
                   "each image to it); choose another with --input-size", err=True)

    calibration = None
    if quantize == "int8":
        calibration = load_images(calibration_data, data_dir, limit=calibration_images)
        click.echo(f"calibrating int8 on {len(calibration)} image(s) from {calibration_data}",
                   err=True)
    verify = None
    if check or check_images:
        images = load_images(check_images, option="--check-images") if check_images else (
            sample_images())

        def verify(temporary):
            parity = check_export(model, ExportedModel(temporary, export_format, name=out), images)
            click.echo(f"check: {parity}")
            problem = parity_problem(parity, out, quantize, path)
            if problem:
                raise KsegError(f"{problem}; nothing was written")

    with checked:  # lists it among kseg's outputs; a failed export leaves no trace
        export_model(model, out, export_format, quantize, input_size, calibration, verify=verify,
                     classes=classes, mediapipe=mediapipe)
    click.echo(f"wrote {export_format}{'' if quantize == 'none' else ' ' + quantize}: {out}")
