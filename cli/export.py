"""`kseg export`: a trained model as a SavedModel, a TFLite file or an ONNX file."""


import click
from kseg.cli.params import Number, Size

from kseg.choices import EXPORT_FORMATS, QUANTIZATIONS


@click.command()
@click.argument("model_path", metavar="[RUN_DIR|MODEL.keras]", required=False)
@click.option("--format", "export_format", required=True,
              type=click.Choice(EXPORT_FORMATS), help="What to write.")
@click.option("--out", default=None, type=click.Path(),
              help="Destination (a folder for savedmodel). Default: RUN_DIR/export/"
                   "best_<format>, beside a model file, or for the shipped model in the "
                   "current folder.")
@click.option("--force", is_flag=True,
              help="Replace an existing export of the same format that kseg wrote "
                   "(never anything else).")
@click.option("--quantize", default="none", show_default=True,
              type=click.Choice(QUANTIZATIONS),
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
def export(model_path, export_format, out, **options):
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
    import kseg
    from kseg.exporting import ExportOptions

    out = kseg.export(model_path, export_format, out, ExportOptions(**options))  # each option is a field
    quantize = options["quantize"]
    click.echo(f"wrote {export_format}{'' if quantize == 'none' else ' ' + quantize}: {out}")
