"""`kseg predict`: segment image files, folders or glob patterns of any image size.

For each image it writes into --out (names keep an input folder's subfolders):

    <stem>.png          label map: one channel, pixel value = class index (train id)
                        (with --format cityscapes-ids: Cityscapes label ids instead)
    <stem>_color.png    the label map in the dataset's colours (classes.json, else the
                        Pascal VOC palette)
    <stem>_overlay.png  those colours blended over the image
    legend.png          with color or overlay: each class's colour, index and name
"""

import click
from kseg.cli.params import Number, Size

from kseg.choices import BLENDS, FITS, PRECISIONS


def _tta_callback(ctx, param, value):
    from kseg.errors import KsegError
    from kseg.inference import parse_tta

    try:
        return parse_tta(value)
    except KsegError as error:
        raise click.BadParameter(str(error)) from None


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", "model_path", default=None, metavar="RUN_DIR|MODEL.keras|EXPORT",
              help="Run directory or .keras file, or an export: a .tflite or .onnx file or a "
                   "SavedModel folder. Default: the latest run under ./runs, else the CamVid "
                   "model kseg ships (it says which it uses).")
@click.option("--out", "out_dir", default="predictions", show_default=True,
              type=click.Path(), help="Folder the outputs are written to (not an input "
                                      "folder; files kseg did not write there are kept).")
@click.option("--format", "formats", default="labels,color,overlay", show_default=True,
              help="Comma-separated outputs: labels, color, overlay, cityscapes-ids "
                   "(label maps in Cityscapes label ids, for the official evaluation script).")
@click.option("--tile", default=None, type=Size(square=True),
              help="Sliding-window inference with tiles of this size (bounded memory).")
@click.option("--overlap", default=64, show_default=True,
              type=Number(0, integer=True),
              help="Pixels shared by neighbouring tiles.")
@click.option("--blend", default="center", show_default=True,
              type=click.Choice(BLENDS),
              help="Tile overlap: use each tile's centre, or average all tiles.")
@click.option("--tta", multiple=True, metavar="SPEC", callback=_tta_callback,
              help="Test-time augmentation: flip, scales=0.75,1,1.25, or both "
                   "(repeat the option or join with '+'; scales in (0, 8]). Logits are averaged.")
@click.option("--fit", default="resize", show_default=True, type=click.Choice(FITS),
              help="An export with a fixed input size, on an image of another size: resize the "
                   "image to it and the logits back (as MediaPipe does), or tile the image at "
                   "that size (smaller tiles padded).")
@click.option("--alpha", default=0.5, show_default=True, type=Number(0, 1),
              help="Opacity of the colours in the overlay.")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(PRECISIONS),
              help="Compute precision. bf16 is about 1.8x faster on CPUs with bfloat16 "
                   "instructions (AVX512-BF16, AMX) and predicts the same class as fp32 for "
                   "over 99.5% of pixels (docs/performance.md).")
@click.option("--unsafe", is_flag=True,
              help="Allow models containing code (Lambda layers); trusted files only.")
def predict(inputs, model_path, out_dir, formats, **options):
    """Segment INPUTS (image files, folders, glob patterns) with a trained model.

    A folder is searched through its subfolders; hidden files and folders (a name
    starting with ".", such as the temporaries of an interrupted write) are left out.

    \b
    Outputs per image, in --out:
      <stem>.png          label map (pixel value = class index)
      <stem>_color.png    label map in the dataset's colours
      <stem>_overlay.png  colours over the image
      legend.png          the colour, index and name of every class (with color/overlay)
    A file that cannot be read is reported and skipped; the exit code is then 1.
    Outputs never replace an input or a file kseg did not write (listed in
    --out/.kseg-outputs.json).

    An export (`kseg export` output: .tflite, .onnx, SavedModel folder) is run by its own
    runtime (LiteRT, onnxruntime, TensorFlow) with the same outputs; its class names and
    colours come from the file itself, else a classes.json beside it (or in the run
    directory holding its export/ folder), else "class N". A fixed-size export (a
    MediaPipe-ready TFLite file, or --input-size at export) takes other sizes as --fit
    says; docs/exported-files.md has the details.
    """
    import kseg
    from kseg.errors import KsegError
    from kseg.prediction import PredictOptions, parse_formats

    counts = kseg.predict(inputs, model_path, out_dir, PredictOptions(parse_formats(formats), **options))
    if counts.failed:
        raise KsegError(f"{counts.failed} input(s) failed (see the messages above)")
