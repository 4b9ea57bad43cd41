"""`kseg export`: a trained model as a SavedModel, a TFLite file or an ONNX file."""

import click

# An unquantized export is a conversion, not an approximation: logits may differ only by
# float rounding. Differences above this (relative to the largest logit) fail --check.
FLOAT_TOLERANCE = 1e-3


@click.command()
@click.argument("model_path", metavar="RUN_DIR|MODEL.keras")
@click.option("--format", "export_format", required=True,
              type=click.Choice(["savedmodel", "tflite", "onnx"]), help="What to write.")
@click.option("--out", default=None, type=click.Path(),
              help="Destination (a folder for savedmodel). Default: RUN_DIR/export/"
                   "best_<format> or beside the model file.")
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
              type=click.IntRange(min=1), help="Most calibration images used.")
@click.option("--input-size", default=None, metavar="HxW",
              help="Fix the input shape (mobile runtimes); default: any size.")
@click.option("--check", is_flag=True,
              help="Reload the export and compare it with the Keras model.")
@click.option("--check-images", default=None, type=click.Path(exists=True, file_okay=False),
              help="Folder of images for --check (implies it); default: generated images.")
@click.option("--unsafe", is_flag=True,
              help="Allow models containing code (Lambda layers); trusted files only.")
def export(model_path, export_format, out, quantize, calibration_data, data_dir,
           calibration_images, input_size, check, check_images, unsafe):
    """Export a trained model (a run directory or a .keras file).

    \b
    Inputs: uint8 RGB images [batch, height, width, 3] (any size unless --input-size).
    Outputs: "logits" (float32, [batch, height, width, classes]) and
             "classes" (int32 class map, [batch, height, width]).
    \b
    Examples:
      kseg export runs/voc_fcn8s --format savedmodel --check
      kseg export runs/voc_fcn8s --format tflite --quantize int8 \\
          --calibration-data data/voc_images --input-size 512x512 --check
      kseg export model.keras --format onnx --out model.onnx --check
    """
    from kseg.errors import KsegError
    from kseg.export import (
        ExportedModel,
        check_export,
        default_output_path,
        export_model,
        load_images,
        sample_images,
    )
    from kseg.predict import parse_size
    from kseg.runs import load_model, resolve_model_path

    if quantize != "none" and export_format != "tflite":
        raise KsegError(f"--quantize {quantize} applies to --format tflite only")
    if calibration_data and quantize != "int8":
        raise KsegError("--calibration-data is used by --quantize int8 only")
    if quantize == "int8" and not calibration_data:
        raise KsegError(
            "--quantize int8 needs --calibration-data: a folder of representative images "
            "or a dataset name"
        )
    size = parse_size(input_size, "--input-size") if input_size else None
    path, run_dir = resolve_model_path(model_path)
    model = load_model(path, unsafe=unsafe)
    out = out or default_output_path(path, run_dir, export_format, quantize)

    calibration = None
    if quantize == "int8":
        calibration = load_images(calibration_data, data_dir, limit=calibration_images)
        click.echo(f"calibrating int8 on {len(calibration)} image(s) from {calibration_data}",
                   err=True)
    export_model(model, out, export_format, quantize, size, calibration)
    click.echo(f"wrote {export_format}{'' if quantize == 'none' else ' ' + quantize}: {out}")

    if check or check_images:
        images = load_images(check_images) if check_images else sample_images()
        parity = check_export(model, ExportedModel(out, export_format), images)
        click.echo(f"check: {parity}")
        scale = max(1.0, parity.max_logit)
        if quantize == "none" and parity.max_logit_diff > FLOAT_TOLERANCE * scale:
            raise KsegError(
                f"{out}: the export differs from the Keras model (max logit difference "
                f"{parity.max_logit_diff:.3g})"
            )
