"""`kseg data`: describe your own data, import annotation exports, verify a dataset, show its
statistics, write the synthetic dataset."""

import shlex

import click
from kseg.cli.params import Number, Size

from kseg.choices import CROWD, IMPORT_FORMATS, UNLABELLED
from kseg.data import get_dataset_spec  # no TensorFlow import
from kseg.data.registry import DATASET_NAMES as DATASETS
from kseg.data.synthetic import MAX_SCENES, MAX_SIDE, MIN_SIDE, write_synthetic_dataset
from kseg.errors import KsegError
from kseg.images import quiet_decoder_warnings
from kseg.outputs import check, write_json

MAX_SEED = 10**9


DATASET_OPTIONS = (
    click.option("--data", "name", required=True, type=click.Choice(DATASETS),
                 help="Dataset type: its folder layout and mask encoding."),
    click.option("--data-dir", type=click.Path(file_okay=False),
                 help="Dataset root folder. Default: $CITYSCAPES_DATASET for cityscapes, "
                      "./data/synthetic for synthetic (generated there if missing); required for the others."),
    click.option("--split", "splits", multiple=True,
                 help="Split to check, e.g. train or val; repeat for several. Default: train, val and test "
                      "where found (a folder dataset without split folders is one pool, named 'all')."),
    click.option("--classes", "classes_file", type=click.Path(dir_okay=False),
                 help="Class list (YAML) of a folder/synthetic dataset. Default: DATA_DIR/classes.yaml."),
)  # fmt: skip


def dataset_options(function):
    """The options that pick a dataset, shared by verify and stats, in this order."""
    for option in reversed(DATASET_OPTIONS):
        function = option(function)
    return function


def _check_and_train(folder):
    """Echoes the commands that check a folder dataset and train on it."""
    click.echo(f"  kseg data verify --data folder --data-dir {shlex.quote(folder)}")
    click.echo(f"  kseg train --recipe folder-scratch --data-dir {shlex.quote(folder)}")


def _splits(spec, splits):
    if splits:
        return list(dict.fromkeys(splits))
    found = [split for split in spec.splits() if split in ("train", "val", "test")] or list(spec.splits())
    return found or ["train"]


@click.group()
def data():
    """Describe your own data, verify datasets, show statistics, make the synthetic set.

    \b
    Layouts (DATA_DIR is the root given with --data-dir):
      cityscapes  leftImg8bit/SPLIT/CITY/*_leftImg8bit.png, gtFine/SPLIT/CITY/*_gtFine_labelIds.png
      voc         JPEGImages/*.jpg, SegmentationClass/*.png, ImageSets/Segmentation/SPLIT.txt
      camvid      SPLIT/*.png, SPLITannot/*.png (SegNet layout; value 11 = void)
      folder      images/[SPLIT/]*, masks/[SPLIT/]* matched by stem, classes.yaml
      synthetic   a folder dataset written by `kseg data synth`

    \b
    Your own data in minutes (folder layout):
      kseg data init DATA_DIR              write DATA_DIR/classes.yaml from the masks
      kseg data verify --data folder --data-dir DATA_DIR
      kseg train --recipe folder-scratch --data-dir DATA_DIR
      kseg data import FORMAT SOURCE DATA_DIR   from LabelMe, COCO, CVAT, Kaggle CamVid
                                           or pix2pix Cityscapes (docs/importing.md)

    \b
    classes.yaml (full description: docs/datasets.md):
      classes:                             the classes in train-id order
        - background                       a name: index masks store its index (0 here)
        - {name: road, color: [128, 64, 128]}   colour masks store this colour for it
      or, for index masks that store other values than the class indices:
      classes:
        - {name: background, value: 0}     every class gives its value(s): 0, 255, [7, 8]
        - {name: object, value: 255}
      ignore_values: [254]                 index-mask values to ignore (255 is, unless a value)
      ignore_colors: [[0, 0, 0]]           colours to ignore
      splits: {val_fraction: 0.1, seed: 0} the validation share without split folders

    Masks become train ids 0..N-1 with 255 ignored. Binary masks saved as 0/255 need
    `value: 255` for the object class (`kseg data init` writes it), else the object is
    ignored. A folder dataset without SPLIT subfolders is one pool: split 'val' is a
    seeded 10% of it (at least one image), 'train' the rest, 'all' every image. Images
    without a mask, masks without an image and names shared by two files are left out
    and reported.
    """


@data.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--no-progress", is_flag=True, help="Do not show the progress bar.")
def init(folder, no_progress):
    """Write FOLDER/classes.yaml from the masks in FOLDER/masks.

    FOLDER holds images/ and masks/ (optionally with split folders such as train/ and
    val/ in both); images and masks pair by file stem. Every paired mask is read: index
    PNGs give their values, colour PNGs their colours, each with its pixel count. The
    file lists one class per value or colour under a placeholder name for you to rename
    (`{name: class_3, value: 3}`, `{name: class_1, color: [r, g, b]}`); masks of two
    values, 0 and 255, become background and object. Values that look like void are
    commented suggestions: 255 (kseg's ignore value) in index masks, black in colour
    masks (`ignore_colors`). Without split folders, the file's `splits:` says how many
    images validation holds out. An existing classes.yaml is never replaced.
    """
    from kseg.data.init import init_classes_file, scan_summary

    quiet_decoder_warnings()
    path, scan = init_classes_file(folder, progress=not no_progress)
    click.echo("\n".join(scan_summary(scan)))
    click.echo(f"wrote {path}: rename the classes there, then check and train:")
    _check_and_train(folder)


@data.command()
@dataset_options
@click.option("--max-problems", default=20, show_default=True, type=Number(0, 10**9, integer=True),
              help="How many individual problems to print per split (all are counted).")
@click.option("--no-progress", is_flag=True, help="Do not show the progress bar.")
def verify(name, data_dir, splits, classes_file, max_problems, no_progress):
    """Check every image/mask pair; exit 0 when clean, 1 when problems were found.

    Reports unreadable or truncated files, paths that are not regular files (FIFOs,
    devices, folders named like images), headers claiming more pixels than kseg decodes,
    16-bit/RGBA/grayscale images, colour masks where index masks are expected, lossy
    (JPEG, lossy WebP, JPEG 2000) masks, masks of another size than their image
    (including a mask drawn on the stored pixels of an image kseg turns by its EXIF
    orientation), mask values outside the classes and ignore values (with pixel counts
    and example files), duplicate images, empty splits, splits where no pixel is
    labelled or all of one class (binary 0/255 masks without `value: 255`), and files
    that cannot be paired (an image without a mask, a mask without an image, two images or
    masks with one name, an entry listed twice: training leaves them out). Mirrored or
    180-degree EXIF orientations are listed as warnings.
    """
    from kseg.data.verify import verify_dataset

    quiet_decoder_warnings()
    spec = get_dataset_spec(name, data_dir=data_dir, classes_file=classes_file)
    clean = True
    for split in _splits(spec, splits):
        report = verify_dataset(spec, split, progress=not no_progress)
        click.echo(report.summary(max_problems=max_problems))
        clean = clean and report.ok
    if not clean:
        raise SystemExit(1)


@data.command()
@dataset_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the statistics to this JSON file.")
@click.option("--no-progress", is_flag=True, help="Do not show the progress bar.")
def stats(name, data_dir, splits, classes_file, json_path, no_progress):
    """Per-class pixel frequencies, suggested class weights and image sizes.

    Class weights use median frequency balancing (Eigen & Fergus 2015): weight(c) =
    median frequency / frequency(c), where frequency(c) is c's pixels over the pixels of
    the images that contain c. Only masks are read; run `verify` to check the images.
    A mask that cannot be read is named, left out, and makes the exit code 1.
    """

    from kseg.data.stats import compute_stats

    quiet_decoder_warnings()
    spec = get_dataset_spec(name, data_dir=data_dir, classes_file=classes_file)
    checked = check(json_path, "dataset statistics", [spec.root, classes_file], option="--json") if (
        json_path) else None  # before minutes of reading: never over the dataset or a user's file
    payload = {}
    skipped = 0
    unlabelled = []
    for split in _splits(spec, splits):
        result = compute_stats(spec, split, progress=not no_progress)
        click.echo(f"{spec.name} / {split}: " + result.summary())
        for path, message in result.skipped:  # each bad mask on a line of its own
            click.echo(f"error: {message if message.startswith(path) else f'{path}: {message}'}", err=True)
        skipped += len(result.skipped)
        if result.num_images and not result.labelled_pixels:
            unlabelled.append(split)
        payload[split] = result.as_dict()
    if json_path:
        with checked:
            write_json(json_path, payload)
        click.echo(f"wrote {json_path}")
    if unlabelled:
        also = f"; {skipped} mask(s) could not be read (see above)" if skipped else ""
        raise KsegError(
            f"{spec.name}: split {', '.join(repr(split) for split in unlabelled)} has no labelled pixel "
            f"(every mask value is ignore/void){also}; check the masks and the --data type "
            "(`kseg data verify` lists the files)"
        )
    if skipped:
        raise KsegError(
            f"{skipped} mask(s) could not be read and are left out of the statistics "
            "(see the messages above; `kseg data verify` checks the whole dataset)"
        )


@data.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--num-train", default=300, show_default=True, type=Number(1, MAX_SCENES, integer=True),
              help=f"Number of training scenes (1 to {MAX_SCENES:,}).")
@click.option("--num-val", default=60, show_default=True, type=Number(1, MAX_SCENES, integer=True),
              help=f"Number of validation scenes (1 to {MAX_SCENES:,}).")
@click.option("--size", default="96x128", show_default=True, type=Size(MIN_SIDE, MAX_SIDE),
              help=f"Scene size as HEIGHTxWIDTH in pixels (each side {MIN_SIDE} to {MAX_SIDE}).")
@click.option("--seed", default=0, show_default=True, type=Number(0, MAX_SEED, integer=True),
              help="Random seed (0 or more); the same seed gives the same dataset.")
@click.option("--force", is_flag=True,
              help="Replace OUT if it is a synthetic dataset kseg wrote, with nothing added since "
                   "(any other folder is refused).")
def synth(out, num_train, num_val, size, seed, force):
    """Write the synthetic shapes dataset to OUT (folder layout with classes.yaml).

    Classes: background, circle, rectangle, triangle, ring, cross. Shapes and backgrounds
    take colours from one shared range, so the class is told by shape, not colour. Read
    it back with `--data synthetic --data-dir OUT` (or `--data folder`).
    """
    from kseg.progress import progress

    check(out, "synthetic dataset", force=force, option="OUT", folder=True)  # a refusal before the bar
    with progress(num_train + num_val, "synth", "scene") as bar:
        write_synthetic_dataset(out, num_train=num_train, num_val=num_val, size=size, seed=seed,
                                progress=bar.update, replace=force)
    click.echo(f"wrote {num_train} train + {num_val} val scenes of {size[0]}x{size[1]} to {out}")


FORMAT_OPTIONS = {"images": ("coco",), "labels": ("labelme",), "unlabelled": ("labelme", "coco"),
                  "crowd": ("coco",), "tolerance": ("pix2pix-cityscapes",)}  # fmt: skip


@data.command("import")
@click.argument("format", type=click.Choice(IMPORT_FORMATS))
@click.argument("source", type=click.Path())
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--images", type=click.Path(file_okay=False),
              help="coco: the folder the images' file_name entries are relative to. Default: the JSON's folder.")
@click.option("--labels", type=click.Path(dir_okay=False),
              help="labelme: a labels.txt (one class a line) fixing the classes and their order; a label "
                   "not in it is ignored and reported. Default: every label found, sorted.")
@click.option("--unlabelled", type=click.Choice(UNLABELLED), default="background",
              show_default=True,
              help="labelme, coco: pixels no annotation covers are class 0 'background', or ignored.")
@click.option("--crowd", type=click.Choice(CROWD), default="ignore", show_default=True,
              help="coco: iscrowd regions are ignored (objects drawn singly stay on top), or drawn as "
                   "their category.")
@click.option("--ignore-class", "ignore", multiple=True, metavar="NAME",
              help="A class whose pixels are ignored (255) instead of learned, e.g. Void; repeat for several.")
@click.option("--tolerance", type=Number(0, 442), default=40.0, show_default=True,
              help="pix2pix-cityscapes: the largest RGB distance from a label pixel to the nearest Cityscapes "
                   "colour; farther pixels are ignored and counted as uncertain.")
@click.option("--strict", is_flag=True, help="Write nothing if any annotation or image has a problem.")
@click.option("--max-problems", default=20, show_default=True, type=Number(0, 10**9, integer=True),
              help="How many problems to print (all are in OUT_DIR/import-report.txt).")
@click.option("--no-progress", is_flag=True, help="Do not show the progress bar.")
@click.pass_context
def import_(ctx, format, source, out_dir, max_problems, no_progress, **options):
    """Import FORMAT annotations from SOURCE into a new folder dataset OUT_DIR.

    \b
    FORMAT and SOURCE:
      labelme             a folder of LabelMe .json files (or one file); images by
                          imagePath, or the embedded imageData
      coco                an instances .json (polygons, RLE, iscrowd); --images DIR;
                          or a folder of train/, valid/, test/ with one .json each
      cvat                a CVAT "Segmentation mask 1.1" export folder (labelmap.txt,
                          SegmentationClass/, JPEGImages/, ImageSets/Segmentation/)
      camvid-kaggle       Kaggle CamVid: train/, train_labels/*_L.png, val/, test/,
                          class_dict.csv
      pix2pix-cityscapes  Kaggle cityscapes-image-pairs: train/, val/ JPEGs of photo |
                          colour label

    OUT_DIR gets images/ and masks/ (split folders where the source has splits: a
    LabelMe or COCO folder's train/, val/ or valid/, test/ folders too), index
    PNG masks (class k stored as k, 255 ignored), classes.yaml and import-report.txt.
    Shapes drawn later lie on top of earlier ones. Every problem is named with its file:
    a label or colour not in the class list (its pixels ignored), an annotation that
    cannot be drawn (left out), an image missing, unreadable or of another size than its
    annotation (left out). OUT_DIR must not exist; it appears only when complete.
    docs/importing.md describes each format.
    """
    from kseg.data.importers import ImportOptions, import_dataset
    from kseg.progress import write

    for name, formats in FORMAT_OPTIONS.items():
        given = ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        if given and format not in formats:
            raise KsegError(f"--{name} applies to {' and '.join(formats)} only, not to {format}")
    quiet_decoder_warnings()
    shown = []

    def on_problem(problem):
        shown.append(problem)
        if len(shown) <= max_problems:
            write(f"warning: {problem}")

    result = import_dataset(format, source, out_dir, ImportOptions(**options), progress=not no_progress,
                            on_problem=on_problem)  # fmt: skip
    if len(result.problems) > max_problems:
        click.echo(f"... and {len(result.problems) - max_problems} more problem(s): all are in "
                   f"{out_dir}/import-report.txt", err=True)
    click.echo("\n".join(result.summary()))
    click.echo(f"wrote {out_dir}; check it and train:")
    _check_and_train(out_dir)
