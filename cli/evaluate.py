"""`kseg evaluate`: the FCN-paper metrics of a model, or of label-map PNGs, on a split."""

import click

from kseg.cli.params import Number
from kseg.errors import KsegError

from kseg.data.registry import DATASET_NAMES as DATASETS  # no TensorFlow import


@click.command()
@click.argument("model", required=False)
@click.option("--predictions", "predictions_dir", type=click.Path(file_okay=False),
              help="Score the label-map PNGs in this folder (matched by file stem) instead of a model.")
@click.option("--data", required=True, type=click.Choice(DATASETS), help="Dataset holding the ground truth.")
@click.option("--data-dir", help="Dataset root folder.")
@click.option("--classes", "classes_file", help="Classes file of a folder/synthetic dataset.")
@click.option("--split", default="val", show_default=True, help="Split to score.")
@click.option("--batch-size", default=1, show_default=True, type=Number(1, 1024, integer=True),
              help="Images per forward pass.")
@click.option("--max-images", type=Number(1, 2**31 - 1, integer=True),
              help="Score only the first N images.")
@click.option("--label-format", type=click.Choice(["auto", "train-ids", "label-ids"]), default="auto",
              show_default=True, help="With --predictions on Cityscapes: train ids or official label ids. auto: "
                                      "what the files say (kseg predict writes it into every label map).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write the metrics as JSON here. [default: RUN_DIR/metrics-SPLIT.json for a run]")
@click.option("--confusion-png", type=click.Path(dir_okay=False),
              help="Write the confusion matrix image here. [default: beside --out]")
@click.option("--sheet", "sheet_png", type=click.Path(dir_okay=False),
              help="Write a contact sheet PNG here: image | ground truth | prediction for the "
                   "first --sheet-images images, with the legend of their classes.")
@click.option("--sheet-images", default=6, show_default=True, type=Number(1, 64, integer=True),
              help="Images on the contact sheet.")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(["fp32", "bf16"]),
              help="Compute precision of the model, whatever policy it was trained under "
                   "(as in `kseg predict`).")
@click.option("--unsafe", is_flag=True, help="Allow models containing code (trusted files only).")
def evaluate(model, predictions_dir, data, data_dir, classes_file, split, batch_size, max_images,
             label_format, out, confusion_png, sheet_png, sheet_images, precision, unsafe):  # fmt: skip
    """Score MODEL (a run directory or .keras file) or --predictions DIR on a dataset split.

    Without either, the latest run under ./runs is scored, else the CamVid model kseg ships.

    Reports pixel accuracy, mean class accuracy, mean IoU and frequency-weighted IoU (FCN
    paper, section 5) over one confusion matrix of the whole split, void pixels excluded,
    with a per-class IoU table.

    \b
    Examples:
      kseg evaluate runs/fcn8s-camvid-... --data camvid --data-dir data/camvid --split test
      kseg evaluate --predictions out/labels --data cityscapes --data-dir data/cityscapes
    """
    from kseg import runs
    from kseg.data import get_dataset_spec
    from kseg.evaluation import (
        check_evaluate_outputs,
        default_output_paths,
        evaluate_model,
        evaluate_predictions,
        write_reports,
    )

    if predictions_dir and model:
        raise KsegError("give either MODEL or --predictions DIR, not both")
    spec = get_dataset_spec(data, data_dir, classes_file)
    run_dir = model_path = chosen = None
    if not predictions_dir:
        chosen = runs.choose_model(model, option="MODEL or --predictions DIR")
        model_path, run_dir = chosen.path, chosen.run_dir
        if chosen.note:
            click.echo(chosen.note, err=True)
    # the shipped model's folder is kseg's own: its metrics are written only with --out
    out, confusion_png = default_output_paths(split, chosen and chosen.output_dir, out, confusion_png)
    if sheet_png and predictions_dir:
        raise KsegError("--sheet needs a MODEL: it shows the model's predictions beside the images")
    checked = check_evaluate_outputs(out, confusion_png, spec, split, model_path, run_dir,
                                     classes_file, predictions_dir, sheet_png)
    if predictions_dir:
        result = evaluate_predictions(predictions_dir, spec, split, label_format=label_format)
    else:
        from kseg.models.inference import slow_precision_warning

        click.echo(f"model: {model_path} (computed in {precision})", err=True)
        warning = slow_precision_warning(precision)
        if warning:
            click.echo(f"warning: {warning}", err=True)
        result = evaluate_model(
            model_path, spec, split, batch_size=batch_size, max_images=max_images, unsafe=unsafe,
            examples=sheet_images if sheet_png else 0, precision=precision,
        )
    for line in result.report_lines():
        click.echo(line)
    for what, path in write_reports(result, out, confusion_png, sheet_png, checked):
        click.echo(f"{what}: {path}")
