"""`kseg weights`: the released FCN weights (list, download, convert to a .keras model).

    kseg weights list
    kseg weights download voc-fcn8s
    kseg weights convert fcn8s-heavy-pascal.caffemodel --out fcn8s-voc.keras --model fcn8s_caffe

A converted model is a normal `.keras` file; the class names and colours (VOC's 21 by
default) are written as classes.json beside it, where predict, evaluate and export find them.
"""

import click
from kseg.cli.main import import_tensorflow_quietly

from kseg.choices import CAFFE_MODELS


@click.group()
def weights():
    """The authors' released FCN weights: list, download, convert."""


@weights.command("list")
def list_weights():
    """Name, source, address, hash, licence and reported mIU of the known weights."""
    from kseg.models.manifest import MANIFEST_PATH, load_entries, read_manifest

    entries = read_manifest(MANIFEST_PATH)  # checks every entry has name, file and url
    details = {entry["name"]: entry for entry in load_entries(MANIFEST_PATH)}
    for name, entry in entries.items():
        extra = details.get(name, {})
        miu = extra.get("reported_miu")
        click.echo(f"{name}")
        click.echo(f"  source:  {extra.get('source', '-')}")
        click.echo(f"  url:     {entry.url}")
        click.echo(f"  hash:    {entry.file_hash or 'unknown (not checked)'}")
        click.echo(f"  licence: {extra.get('licence', '-')}")
        click.echo(f"  reported mIU: {miu if miu is not None else '-'}")
        if extra.get("model"):
            click.echo(f"  convert: kseg weights convert {entry.file} --out {name}.keras "
                       f"--model {extra['model']}")


@weights.command()
@click.argument("name")
def download(name):
    """Download weights NAME (see `kseg weights list`) into keras' cache; print the path.

    \b
    A download that receives nothing for 20 s, or lasts over 30 minutes, stops with an
    error; set KSEG_DOWNLOAD_STALL_TIMEOUT and KSEG_DOWNLOAD_TIMEOUT (seconds) to allow more.
    """
    import_tensorflow_quietly()

    from kseg.download import get_file, keras_models_folder, shown_folder
    from kseg.models.manifest import manifest_entry

    entry = manifest_entry(name)
    way_out = f"put {entry.file} in {shown_folder(keras_models_folder())}"
    if entry.name != "vgg16_imagenet":  # the released FCNs; VGG16 is no Caffe model
        way_out += f", or convert a local copy with `kseg weights convert {entry.file} --out MODEL.keras`"
    click.echo(get_file(entry.file, entry.url, entry.file_hash, f"the weights {name}", way_out))


@weights.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The .keras model file to write (classes.json is written beside it).")
@click.option("--model", "model_name", default="fcn8s_caffe", show_default=True,
              type=click.Choice(CAFFE_MODELS),
              help="The Caffe-exact FCN the weights belong to.")
@click.option("--classes", "classes_spec", default="voc", show_default=True,
              help="'voc' (VOC's 21 classes), a classes.json, or a text file of one name a line.")
@click.option("--force", is_flag=True, help="Replace a model (and classes.json) kseg converted there before.")
def convert(source, out, model_name, classes_spec, force):
    """Convert a released .caffemodel (or pytorch-fcn .pth) into a kseg .keras model."""
    from kseg import conversion as converter
    from kseg.files import check_regular_file

    check_regular_file(source, "weights file", limit=converter.WEIGHTS_FILE_LIMIT)

    classes = converter.read_class_names(classes_spec)
    checked = converter.check_output(source, out, classes, force)
    import_tensorflow_quietly()
    model = converter.convert_released_weights(source, model_name, len(classes["class_names"]))
    classes_path = converter.save_converted(model, out, classes, checked)
    click.echo(f"wrote {out} ({model_name}, {len(classes['class_names'])} classes; "
               f"names and colours in {classes_path})")
