"""`kseg heatmap`: where in an image the ImageNet VGG16 classifier sees a class."""

import os

import click
from kseg.cli.params import Number


@click.command()
@click.argument("image_path", metavar="IMG", type=click.Path(dir_okay=False, readable=False))
@click.option("--class", "class_spec", required=True, metavar="NAME|INDEX",
              help="ImageNet class: index 0-999, or a name / WordNet id when a class index "
                   "file is available (--class-index or keras' cache).")
@click.option("--weights", default="imagenet", show_default=True, metavar="imagenet|PATH",
              help="VGG16 classifier weights: keras' ImageNet file or a local .h5 file.")
@click.option("--class-index", "class_index", default=None,
              type=click.Path(exists=True, dir_okay=False),
              help="keras' imagenet_class_index.json, for class names.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="PNG to write. Default: <image stem>_heatmap_<class index>.png here.")
@click.option("--alpha", default=0.5, show_default=True, type=Number(0, 1),
              help="Opacity of the heatmap over the image.")
@click.option("--absolute", is_flag=True,
              help="Colour probability 0 blue and 1 red (default: the image's own range).")
@click.option("--force", is_flag=True, help="Replace --out if it is a heatmap kseg wrote.")
def heatmap(image_path, class_spec, weights, class_index, out, alpha, absolute, force):
    """Save an ImageNet class heatmap of IMG (any size) as a PNG overlay.

    \b
    Example:
      kseg heatmap cat.jpg --class 281 --out cat_tabby.png
      kseg heatmap cat.jpg --class tabby --class-index imagenet_class_index.json
    """
    from kseg.heatmap import class_scores, peak, render_heatmap, resolve_class
    from kseg.images import read_image, write_png
    from kseg.models import imagenet_heatmap_model
    from kseg.models.saving import check_finite_weights
    from kseg.outputs import check

    index, name = resolve_class(class_spec, class_index)
    if out is None:
        stem = os.path.splitext(os.path.basename(image_path))[0]
        out = f"{stem}_heatmap_{index}.png"
    local = None if weights == "imagenet" else weights  # a local .h5 file
    checked = check(out, "heatmap", [image_path, class_index, local], force)
    image = read_image(image_path)
    if local is not None:
        from kseg.models.pretrained import VGG16WeightsFile

        with VGG16WeightsFile(local):  # a missing or damaged file fails before the big model is built
            pass
    model = imagenet_heatmap_model(weights)
    source = "the ImageNet VGG16 weights" if local is None else local
    check_finite_weights(model, source)  # one line before any image is scored
    scores, grid = class_scores(model, image, index, source)
    with checked:
        write_png(out, render_heatmap(image, scores, alpha, absolute))
    probability, row, column = peak(grid, image.shape)
    label = f"{index} ({name})" if name else str(index)
    click.echo(
        f"class {label}: highest probability {probability:.4f} near pixel ({row}, {column}) "
        f"(row, column); wrote {out}"
    )
