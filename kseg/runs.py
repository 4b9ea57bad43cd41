"""Run directories: where `kseg train` writes, and how other verbs find a model in one.

This module knows the layout only; models are loaded by `kseg.models.saving`. A run
directory (`RunDir`) holds:

    config.yaml            the resolved training configuration
    classes.json           {"dataset", "class_names", "palette", "ignore_index"}
    checkpoints/best.keras the model with the best validation mIoU
    checkpoints/last.keras the model (with optimizer state) after the latest epoch
    log.csv                one row per epoch
    training_curves.png    loss and validation scores per epoch
    tensorboard/           TensorBoard scalars (train/, validation/)

`resolve_model_path` accepts a run directory or a `.keras` file. `choose_model`, what
predict, evaluate and export call, takes with neither given the run under ./runs with the
newest checkpoint, else the model kseg ships (`SHIPPED_MODEL`, an entry of
weights/manifest.yaml), and says which it chose.
"""

import dataclasses
import os

from kseg.errors import KsegError
from kseg.files import brief, load_json
from kseg.labels import IGNORE_INDEX, class_name_problem, is_byte
from kseg.outputs import write_json

DEFAULT_RUNS_ROOT = "runs"
CLASSES_FILE = "classes.json"
CHECKPOINTS = "checkpoints"
BEST = "best.keras"
LAST = "last.keras"
CONFIG_FILE = "config.yaml"
LOG_FILE = "log.csv"
CURVES_FILE = "training_curves.png"
TENSORBOARD_DIR = "tensorboard"

# The manifest entry (kind: model) of the model used when none is given and no run exists,
# and the recipe that trains one like it.
SHIPPED_MODEL = "camvid-fcn8s"
SHIPPED_RECIPE = "camvid-scratch"
# Where a ModelChoice came from.
GIVEN, LATEST_RUN, SHIPPED = "given", "latest run", "shipped"


def _member(*parts):
    """A RunDir property: the path of `parts` inside the run directory."""
    return property(lambda self: os.path.join(self.path, *parts))


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The files of one run directory, by role.

    Args:
        path: str. The run directory.
    """

    path: str

    config = _member(CONFIG_FILE)
    classes = _member(CLASSES_FILE)
    checkpoints = _member(CHECKPOINTS)
    best = _member(CHECKPOINTS, BEST)
    last = _member(CHECKPOINTS, LAST)
    log = _member(LOG_FILE)
    curves = _member(CURVES_FILE)
    tensorboard = _member(TENSORBOARD_DIR)

    def __post_init__(self):
        object.__setattr__(self, "path", os.fspath(self.path))

    def __str__(self):
        return self.path


def checkpoint_path(run_dir, which=BEST):
    return os.path.join(run_dir, CHECKPOINTS, which)


def _checkpoints(run_dir):
    """The checkpoint files of a run directory, best first."""
    return [path for path in (checkpoint_path(run_dir, BEST), checkpoint_path(run_dir, LAST)) if os.path.isfile(path)]


def is_run_dir(path):
    """Whether `path` is a folder holding a checkpoint (best or last)."""
    return os.path.isdir(path) and bool(_checkpoints(path))


def latest_run():
    """Returns the run directory under `DEFAULT_RUNS_ROOT` with the newest checkpoint, or None."""
    if not os.path.isdir(DEFAULT_RUNS_ROOT):
        return None
    runs = [os.path.join(DEFAULT_RUNS_ROOT, name) for name in os.listdir(DEFAULT_RUNS_ROOT)]
    return max((path for path in runs if is_run_dir(path)), default=None,
               key=lambda run_dir: max(map(os.path.getmtime, _checkpoints(run_dir))))


def resolve_model_path(path):
    """Returns (model file, run directory or None) for a run directory or a model file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if found := _checkpoints(path):
            return found[0], path
        raise KsegError(f"{path}: not a run directory (no {CHECKPOINTS}/{BEST} or {LAST})")
    if not os.path.isfile(path):
        raise KsegError(f"{path}: no such model file or run directory")
    if not path.endswith(".keras"):
        raise KsegError(f"{path}: expected a .keras model file or a run directory")
    # RUN/checkpoints/best.keras takes RUN/classes.json; a bare model file (a converted
    # release, `kseg weights convert`) the classes.json beside it.
    folder = os.path.dirname(os.path.abspath(path))
    for run_dir in (os.path.dirname(folder), folder):
        if os.path.lexists(os.path.join(run_dir, CLASSES_FILE)):  # not a file: refused when read
            return path, run_dir
    return path, None


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """The model a verb uses, and why.

    Args:
        path: str. The `.keras` file.
        run_dir: str or None. The folder of its classes.json: the run directory, the
            folder of a bare model file, or the shipped model's folder.
        origin: str. GIVEN (the user named it), LATEST_RUN or SHIPPED.
        note: str or None. One line telling the user which model kseg chose (None when
            the user named it).
    """

    path: str
    run_dir: str = None
    origin: str = GIVEN
    note: str = None

    @property
    def shipped(self):
        return self.origin == SHIPPED

    @property
    def output_dir(self):
        """Where a verb's default outputs go: the run directory, or None for the shipped
        model (never into kseg's own weights folder; the verb uses the current folder)."""
        return None if self.shipped else self.run_dir


def choose_model(path=None, option="--model RUN_DIR|MODEL.keras"):
    """The model of predict, evaluate and export: `path` when given, else the latest run
    under `DEFAULT_RUNS_ROOT`, else the model kseg ships (checked against its SHA-256).

    Args:
        path: str or None. A run directory or `.keras` file the user gave.
        option: str. How the verb takes a model, for the message when there is none.

    Returns:
        ModelChoice.

    Raises:
        KsegError: a bad `path`, or no run and no usable shipped model (one line saying
            why and how to train one).
    """
    if path is not None:
        return ModelChoice(*resolve_model_path(path))
    run_dir = latest_run()
    if run_dir is not None:
        model_path, run_dir = resolve_model_path(run_dir)
        return ModelChoice(model_path, run_dir, LATEST_RUN, f"using the latest run: {run_dir} ({model_path})")
    # Imported here: the layout module stays free of model code (and of keras).
    from kseg.models.manifest import shipped_model

    train = f"train one with `kseg train --recipe {SHIPPED_RECIPE} --data-dir CAMVID_DIR`"
    way_out = f"{train} (`kseg recipes` lists others), or pass {option}"
    no_model = f"no trained model found under ./{DEFAULT_RUNS_ROOT}, and kseg's shipped model"
    try:
        entry = shipped_model(SHIPPED_MODEL)
    except KsegError as error:
        raise KsegError(f"{no_model} cannot be used ({error}); {way_out}") from None
    try:
        entry.check(way_out)
    except KsegError as error:
        if error.kind != "missing":
            raise
        raise KsegError(f"{no_model} {entry.path} is not installed; {way_out}") from None
    return ModelChoice(entry.path, entry.folder, SHIPPED, shipped_model_note(entry))


def shipped_model_note(entry):
    """The line that tells the user kseg is using its shipped model: which file, what it
    was trained on, its val mIoU and how to train one's own."""
    what = f"{entry.model} " if entry.model else ""
    recipe = entry.recipe or SHIPPED_RECIPE
    trained = f"{what}trained on {entry.dataset or 'an unnamed dataset'} by recipe {recipe}"
    score = f"val mIoU {entry.val_miou:.3f}" if entry.val_miou is not None else "val mIoU not measured yet"
    return (f"no run under ./{DEFAULT_RUNS_ROOT}: using kseg's shipped model {entry.path} ({trained}, {score}); "
            f"train your own with `kseg train --recipe {recipe} --data-dir DATA`")


def write_classes(run_dir, dataset, class_names, palette, ignore_index=IGNORE_INDEX):
    """Writes classes.json, which predict/evaluate/export use to name and colour classes."""
    write_json(os.path.join(run_dir, CLASSES_FILE), {
        "dataset": dataset,
        "class_names": list(class_names),
        "palette": [list(map(int, colour)) for colour in palette],
        "ignore_index": int(ignore_index),
    })


def read_classes(run_dir, num_classes=None, model_path=None):
    """Returns the classes.json of a run directory as a checked dict, or None when absent.

    The file is read with `kseg.files.load_json` (regular file, bounded size) and its
    structure checked (`check_classes`), so a damaged file is one error naming it, never
    an AttributeError later.

    Args:
        run_dir: str or None. The run directory.
        num_classes: int or None. Classes the model predicts; the file must list as many.
        model_path: str or None. The model, for the message about a class-count mismatch.
    """
    if run_dir is None:
        return None
    path = os.path.join(run_dir, CLASSES_FILE)
    if not os.path.lexists(path):
        return None
    return check_classes(load_json(path, "class description"), path, num_classes, model_path)


def check_classes(classes, path=CLASSES_FILE, num_classes=None, model_path=None):
    """Checks the structure of a classes.json payload; returns it.

    Expected: {"dataset": str, "class_names": [str, ...], "palette": [[r, g, b], ...]
    (one colour per class, or empty), "ignore_index": int 0..255}; every key optional.
    Class names follow classes.yaml's rule (`kseg.labels.class_name_problem`).

    Raises:
        KsegError: one line naming `path`, what is wrong, and the way out.
    """
    way_out = "fix or delete it (kseg then uses default names and colours)"

    def refuse(problem):
        raise KsegError(f"{path}: {problem}; {way_out}")

    if not isinstance(classes, dict):
        refuse(f"expected a JSON object with class_names and palette, found {type(classes).__name__}")
    names = classes.get("class_names")
    problem = names is not None and _names_problem(names)
    if problem:
        refuse(problem)
    palette = classes.get("palette")
    if palette is not None:
        if not isinstance(palette, list):
            refuse(f"'palette' must be a list of [R, G, B] colours, found {brief(palette)}")
        for index, colour in enumerate(palette):
            if not (isinstance(colour, list) and len(colour) == 3 and all(map(is_byte, colour))):
                refuse(f"palette entry {index} is {brief(colour)}, expected [R, G, B] with whole "
                       "numbers 0..255")
        if names is not None and palette and len(palette) != len(names):
            refuse(f"'palette' has {len(palette)} colours for {len(names)} class names")
    ignore = classes.get("ignore_index")
    if ignore is not None and not is_byte(ignore):
        refuse(f"'ignore_index' must be a whole number 0..255, found {brief(ignore)}")
    dataset = classes.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        refuse(f"'dataset' must be a name, found {brief(dataset)}")
    if num_classes is not None:
        listed = len(names) if names is not None else len(palette or [])
        if listed and listed != num_classes:
            model = f"{model_path} predicts" if model_path else "the model predicts"
            raise KsegError(
                f"{path}: lists {listed} classes but {model} {num_classes}; the model and "
                "classes.json do not belong together (pass the model file of this run, or fix "
                "classes.json)"
            )
    return classes


def _names_problem(names):
    """What is wrong with a classes.json's class_names, or None."""
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return f"'class_names' must be a list of strings, found {brief(names)}"
    if not names:
        return "'class_names' is empty"
    # the rule of classes.yaml: a name is one line a labels file can hold
    return next(filter(None, map(class_name_problem, names)), None)
