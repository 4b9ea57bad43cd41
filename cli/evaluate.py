"""`kseg evaluate`: the FCN-paper metrics of a model, or of label-map PNGs, on a split."""

import click
from kseg.cli.params import Number

from kseg.choices import FITS, LABEL_FORMATS, PRECISIONS
from kseg.data.registry import DATASET_NAMES as DATASETS  # no TensorFlow import


@click.command()
@click.argument("model", required=False)
@click.option("--predictions", type=click.Path(file_okay=False),
              help="Score the label-map PNGs in this folder (matched by file stem) instead of a model.")
@click.option("--data", required=True, type=click.Choice(DATASETS), help="Dataset holding the ground truth.")
@click.option("--data-dir", help="Dataset root folder.")
@click.option("--classes", "classes_file", help="Classes file of a folder/synthetic dataset.")
@click.option("--split", default="val", show_default=True, help="Split to score.")
@click.option("--batch-size", default=1, show_default=True, type=Number(1, 1024, integer=True),
              help="Images per forward pass.")
@click.option("--max-images", type=Number(1, 2**31 - 1, integer=True),
              help="Score only the first N images.")
@click.option("--label-format", type=click.Choice(LABEL_FORMATS), default="auto",
              show_default=True, help="With --predictions on Cityscapes: train ids or official label ids. auto: "
                                      "what the files say (kseg predict writes it into every label map).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write the metrics as JSON here. [default: RUN_DIR/metrics-SPLIT.json for a run]")
@click.option("--confusion-png", type=click.Path(dir_okay=False),
              help="Write the confusion matrix image here. [default: beside --out]")
@click.option("--sheet", type=click.Path(dir_okay=False),
              help="Write a contact sheet PNG here: image | ground truth | prediction for the "
                   "first --sheet-images images, with the legend of their classes.")
@click.option("--sheet-images", default=6, show_default=True, type=Number(1, 64, integer=True),
              help="Images on the contact sheet.")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(PRECISIONS),
              help="Compute precision of a Keras model, whatever policy it was trained under "
                   "(as in `kseg predict`). An exported file computes as it was exported.")
@click.option("--fit", default="resize", show_default=True, type=click.Choice(FITS),
              help="An export with a fixed input size, on images of another size: resize each "
                   "image to it and the logits back (as MediaPipe does: what a phone client "
                   "scores), or tile the image at that size, smaller tiles padded (each pixel "
                   "at its own scale, as the Keras model sees it).")
@click.option("--unsafe", is_flag=True, help="Allow models containing code (trusted files only).")
def evaluate(model, data, data_dir, split, **options):
    """Score MODEL or --predictions DIR on a dataset split.

    MODEL is a run directory or .keras file, or a file `kseg export` wrote: a .tflite or
    .onnx file, or a SavedModel folder (the format comes from the suffix; a folder holding
    saved_model.pb is a SavedModel). Without MODEL or --predictions, the latest run under
    ./runs is scored, else the CamVid model kseg ships.

    Reports pixel accuracy, mean class accuracy, mean IoU and frequency-weighted IoU (FCN
    paper, section 5) over one confusion matrix of the whole split, void pixels excluded,
    with a per-class IoU table.

    An exported file is scored with the same metrics and table as the Keras model, so
    scoring the .keras and its int8 .tflite gives the cost of quantization. Its class
    count must equal the dataset's; its class names come from the file, else a
    classes.json beside it, else the dataset. An export with a fixed input size (a
    MediaPipe-ready TFLite file, or --input-size at export) takes other sizes as --fit
    says. Its metrics are written only with --out (a run's metrics-SPLIT.json is its
    .keras model's). See docs/exported-files.md.

    \b
    Examples:
      kseg evaluate runs/fcn8s-camvid-... --data camvid --data-dir data/camvid --split test
      kseg evaluate runs/fcn8s-camvid-.../export/best_int8.tflite --data camvid --data-dir data/camvid
      kseg evaluate --predictions out/labels --data cityscapes --data-dir data/cityscapes
    """
    import kseg
    from kseg.evaluation import EvaluateOptions

    result = kseg.evaluate(model, data=data, data_dir=data_dir, split=split, options=EvaluateOptions(**options))
    click.echo("\n".join(result.report_lines()))
    for what, path in result.written:
        click.echo(f"{what}: {path}")
