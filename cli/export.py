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
              help="Fix the input shape (mobile runtimes); default: any size.")
@click.option("--check", is_flag=True,
              help="Reload the export and compare it with the Keras model; a failed check "
                   "writes nothing.")
@click.option("--check-images", default=None, type=click.Path(exists=True, file_okay=False),
              help="Folder of images for --check (implies it); default: generated images.")
@click.option("--unsafe", is_flag=True,
              help="Allow models containing code (Lambda layers); trusted files only.")
def export(model_path, export_format, out, force, quantize, calibration_data, data_dir,
           calibration_images, input_size, check, check_images, unsafe):
    """Export a trained model (a run directory or a .keras file).

    Without one, the latest run under ./runs is exported, else the CamVid model kseg
    ships (written into the current folder, e.g. ./camvid-fcn8s.tflite).

    \b
    Inputs: uint8 RGB images [batch, height, width, 3] (any size unless --input-size).
    Outputs: "logits" (float32, [batch, height, width, classes]) and
             "classes" (int32 class map, [batch, height, width]).
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
    from kseg.export import (
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
    from kseg.runs import SHIPPED_MODEL, choose_model

    if quantize != "none" and export_format != "tflite":
        raise KsegError(f"--quantize {quantize} applies to --format tflite only")
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
    model = float32_model(load_segmentation_model(path, unsafe=unsafe)[0])

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
        export_model(model, out, export_format, quantize, input_size, calibration, verify=verify)
    click.echo(f"wrote {export_format}{'' if quantize == 'none' else ' ' + quantize}: {out}")
