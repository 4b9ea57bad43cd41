"""Training configuration: four written-out sections, checked when a config is made, read
from and written to YAML.

    ModelSettings         model, weights, width, dropout, learn_upsampling, init_from
    DataSettings          data, data_dir, classes_file, train_split, val_split, batch_size,
                          val_batch_size, crop, scale, skip_bad
    OptimizationSettings  epochs, optimizer, lr, momentum, weight_decay, schedule, loss,
                          class_weights
    RuntimeSettings       mixed_precision, precision_check, strategy, seed, steps_per_epoch,
                          val_steps, run_dir, worker_timeout

`TrainConfig` is all four in one dataclass (`config.lr`), as config.yaml holds them. Each
field's metadata says how it is checked (`check_value`) and gives the `kseg train` option's
help; `SETTINGS` lists them, and cli/train.py builds its options from it. Numbers are
checked against `NUMBER_RANGES` (kseg.validation.check_number); the loss is written in the
small grammar of `parse_loss` (the losses are kseg.losses).

`resolve` owns the precedence, lowest first: the defaults, a YAML file (`--config
FILE.yaml`, or a named recipe, `--recipe NAME`: kseg.recipes) or, on `--resume`, the run's
config.yaml, then the options given. The resolved configuration (the values actually used,
e.g. computed class weights) is written as `config.yaml` into each run directory.

    config = resolve({"epochs": 5}, file="fcn8s-camvid.yaml")
    config.to_yaml("runs/x/config.yaml")
"""

import dataclasses
import decimal
import os
import re

import yaml

from kseg import runs
from kseg.errors import KsegError
from kseg.files import brief, load_yaml
from kseg.outputs import write_bytes
from kseg.validation import check_number, describe_range, number_problem, parse_size

MODEL_WEIGHT_CHOICES = ("imagenet", "none")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("poly", "cosine", "constant")
MIXED_PRECISION_MODES = ("auto", "off", "fp16", "bf16")
STRATEGIES = ("auto", "none", "mirrored", "multiworker")
CLASS_WEIGHT_MODES = ("none", "median-frequency", "sqrt-median-frequency")
# The losses `--loss` names (kseg.losses.LOSSES builds them): cross-entropy, soft Dice,
# Focal (Lin et al. 2017) and Lovasz-softmax (Berman et al. 2018).
LOSS_NAMES = ("ce", "dice", "focal", "lovasz")

# Whole Cityscapes images (1024x2048) do not fit a useful batch; other sets train on whole
# images unless --crop says otherwise.
DEFAULT_CROPS = {"cityscapes": (512, 1024)}
WHOLE_IMAGES = "none"  # crop value asking for whole images whatever the dataset's default

# The one table of numeric limits: TrainConfig checks every value against it (from YAML,
# Python or the command line), and `kseg train`'s options use it at parse time.
MAX_CROP_SIDE = 16384
MAX_SCALE = 8.0  # largest random scale factor of training images
MAX_SEED = 2**32 - 1  # numpy's and keras' seeds are unsigned 32-bit integers
NUMBER_RANGES = {
    "epochs": dict(low=1, high=100_000, integer=True),
    "batch_size": dict(low=1, high=4096, integer=True),
    "val_batch_size": dict(low=1, high=4096, integer=True),
    "steps_per_epoch": dict(low=1, high=10**9, integer=True),
    "val_steps": dict(low=1, high=10**9, integer=True),
    "lr": dict(low=0, high=10, min_open=True),
    "momentum": dict(low=0, high=1, max_open=True),
    "weight_decay": dict(low=0, high=1),
    "width": dict(low=0, high=1, min_open=True),
    "dropout": dict(low=0, high=1, max_open=True),
    "seed": dict(low=0, high=MAX_SEED, integer=True),
    "class_weight": dict(low=0, high=1e6),
    "worker_timeout": dict(low=0, high=86400, min_open=True),
}
# The section of a recipe file (kseg/recipes/*.yaml) that describes it; not a setting.
RECIPE_SECTION = "recipe"
MAX_STRING_LENGTH = 4096  # paths and names; PATH_MAX on Linux
MAX_CLASS_WEIGHTS = 4096
LOSS_WEIGHT_RANGE = dict(low=0, high=1000, min_open=True)  # of each term of a weighted sum of losses


@dataclasses.dataclass(frozen=True)
class Setting:
    """How one training setting is checked and offered as a `kseg train` option.

    Args:
        default: the value when none is given.
        kind: str. How values are checked: "text", "flag", "number" (NUMBER_RANGES),
            "choice" (one of `choices`), "crop", "scale" (`parse_scale`), "loss"
            (`parse_loss`) or "class_weights".
        help: str. The `kseg train` option's help.
        optional: bool. Whether None is a value (meaning: not set).
        choices: tuple of str. For kind "choice".
        option: str or None. The option's declaration where it is not --NAME-WITH-DASHES.
    """

    default: object
    kind: str
    help: str
    optional: bool = False
    choices: tuple = ()
    option: str = None


def _field(default, kind, help, choices=(), option=None):
    """A config field: its default, and in its metadata how it is checked and offered."""
    return dataclasses.field(default=default, metadata=dict(kind=kind, help=help, choices=choices, option=option))


class _DatasetCrop:
    """The default of `crop`: the dataset's own (DEFAULT_CROPS), decided when a config is made."""

    def __repr__(self):
        return "the dataset's crop"


DATASET_CROP = _DatasetCrop()


@dataclasses.dataclass
class ModelSettings:
    """What is trained: the model and its first weights."""

    model: str = _field("fcn8s", "text", "Model to train: a name from `kseg models` (fcn32s, fcn16s, fcn8s, ...). "
                        "[default: fcn8s]")
    weights: str = _field("imagenet", "text",
                          "imagenet, none, or a path to VGG16 classifier weights. [default: imagenet]")
    width: float = _field(1.0, "number",
                          "VGG16 channel multiplier, for small demo models (needs --weights none). [default: 1]")
    dropout: float = _field(0.5, "number", "Dropout after fc6/fc7. [default: 0.5]")
    learn_upsampling: bool = _field(False, "flag", "Train the final bilinear upsampling layer. [default: fixed]",
                                    option="--learn-upsampling/--fixed-upsampling")
    init_from: str | None = _field(None, "text",
                                   "Run directory or .keras file to initialise from (32s -> 16s -> 8s).")


@dataclasses.dataclass
class DataSettings:
    """What it is trained on: the dataset, its splits, batches, crop and scales."""

    data: str = _field("cityscapes", "text", "Dataset. [default: cityscapes]")
    data_dir: str | None = _field(None, "text", "Dataset root folder.")
    classes_file: str | None = _field(None, "text", "Classes file of a folder/synthetic dataset.",
                                      option="--classes")
    train_split: str = _field("train", "text", "Split trained on. [default: train]")
    val_split: str = _field("val", "text", "Split validated on after each epoch (none: no validation). "
                            "[default: val]")
    batch_size: int = _field(8, "number", "Global batch size. [default: 8]")
    val_batch_size: int | None = _field(None, "number", "Validation batch size. [default: --batch-size]")
    crop: tuple[int, int] | None = _field(DATASET_CROP, "crop", "Training crop HxW, or none for whole images. "
                                          "[default: 512x1024 for cityscapes, none otherwise]")
    scale: tuple[float, float] = _field((0.5, 2.0), "scale", "Random scale range of training images, LOW,HIGH "
                                        "(1,1: no scaling). [default: 0.5,2]")
    skip_bad: bool = _field(False, "flag", "Train despite bad pairs, skipping them.",
                            option="--skip-bad/--no-skip-bad")


@dataclasses.dataclass
class OptimizationSettings:
    """How: epochs, optimizer, schedule, loss and class weights."""

    epochs: int = _field(50, "number", "Number of epochs. [default: 50]")
    optimizer: str = _field("sgd", "choice", "Optimizer. [default: sgd]", choices=OPTIMIZERS)
    lr: float = _field(1e-3, "number", "Base learning rate. [default: 0.001]")
    momentum: float = _field(0.9, "number", "SGD momentum. [default: 0.9]")
    weight_decay: float = _field(5e-4, "number", "Decoupled weight decay. [default: 0.0005]")
    schedule: str = _field("poly", "choice", "Learning rate schedule. [default: poly]", choices=SCHEDULES)
    loss: str = _field("ce", "loss", "ce (cross-entropy), dice, focal, lovasz, or a weighted sum such as ce+dice "
                       "or 0.5*ce+1.0*lovasz; every term ignores the void label and uses the class weights. "
                       "[default: ce]")
    class_weights: str | list[float] = _field(
        "none", "class_weights", "none, median-frequency, sqrt-median-frequency (its square roots: milder), or one "
        "weight per class: 1,2,0.5,... [default: none]")


@dataclasses.dataclass
class RuntimeSettings:
    """Where and how reproducibly: precision, distribution, seed, caps, run folder."""

    mixed_precision: str = _field(
        "auto", "choice", "fp16 (loss scaling), bf16, off (float32), or auto: fp16 on a CUDA GPU, bf16 on a CPU "
        "with native bfloat16 (AVX512-BF16/AMX), else off. [default: auto]", choices=MIXED_PRECISION_MODES)
    precision_check: bool = _field(
        True, "flag", "Before training under bf16 or fp16, check on this machine that a few steps on one batch give "
        "float32's loss (seconds); auto falls back to off when they do not, bf16/fp16 stop. [default: on]",
        option="--precision-check/--no-precision-check")
    strategy: str = _field(
        "auto", "choice", "Distribution: mirrored (all local devices; keras.distribution DataParallel under JAX) "
        "or multiworker (TF_CONFIG, TensorFlow only); auto mirrors over several GPUs. [default: auto]",
        choices=STRATEGIES)
    seed: int = _field(0, "number", "Random seed. [default: 0]")
    steps_per_epoch: int | None = _field(None, "number", "Cap on training steps per epoch.")
    val_steps: int | None = _field(None, "number", "Cap on validation steps.")
    run_dir: str | None = _field(None, "text", "Run directory: new or empty (a run's folder only with --resume). "
                                 "[default: runs/MODEL-DATA-TIME]")
    worker_timeout: float = _field(300.0, "number",
                                   "Seconds --strategy multiworker waits for the other TF_CONFIG workers. "
                                   "[default: 300]")


def check_setting(key, value, name=None):
    """Checks a numeric setting against `NUMBER_RANGES[key]`; returns it as int or float.

    Args:
        key: str. A key of NUMBER_RANGES.
        value: number or str.
        name: str or None. How the setting is named in the message (default: `key`).
    """
    limits = dict(NUMBER_RANGES[key])
    integer = limits.pop("integer", False)
    name = name or key
    try:
        return check_number(value, name, integer=integer, **limits)
    except KsegError as error:
        expected = (f"a whole number from {limits['low']} to {limits['high']}" if integer
                    else f"a number in {describe_range(**limits)}")
        problem = str(error).removeprefix(f"{name}: ")
        if " is not in " in problem:
            problem = problem.split(" is not in ")[0] + " is out of range"
        raise KsegError(f"{name}: {problem}; expected {expected}") from None


def parse_crop(text, key="crop"):
    """Parses "HxW" (or "H,W" / [H, W]) into a pair of positive ints, or None for "none".

    Args:
        text: str, list or None. The crop as written by a user.
        key: str. The option or key named in the error message.
    """
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", WHOLE_IMAGES)):
        return None
    return parse_size(text, key, 1, MAX_CROP_SIDE)


def parse_scale(value, key="scale"):
    """Parses a random scale range: "LOW,HIGH", one number (no range) or [low, high], with
    0 < low <= high <= MAX_SCALE; returns (low, high) as floats."""
    malformed = f"{key}: expected LOW,HIGH such as 0.5,2. Received: {key}={brief(value)}"
    parts = value
    if isinstance(value, str):
        parts = [part for part in value.replace(" ", "").split(",") if part]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        parts = [value]
    if not isinstance(parts, (list, tuple)) or len(parts) not in (1, 2):
        raise KsegError(malformed)
    numbers = []
    for part in parts:
        try:
            number = float(None if isinstance(part, bool) else part)
        except (TypeError, ValueError):
            raise KsegError(malformed) from None
        numbers.append(check_number(number, key, low=0, high=MAX_SCALE, min_open=True))
    low, high = numbers[0], numbers[-1]
    if low > high:
        raise KsegError(f"{key}: LOW must not exceed HIGH. Received: {key}={brief(value)}")
    return (low, high)


_LOSS_TERM = re.compile(r"\s*(?:(?P<weight>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*\*\s*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*")
LOSS_EXAMPLES = "ce, dice, focal, lovasz, or a weighted sum such as ce+dice or 0.5*ce+1.0*lovasz"


def loss_terms(text, key="loss"):
    """The terms of a loss written as `[WEIGHT*]NAME + [WEIGHT*]NAME ...`: a list of
    (weight, name) pairs in the order written, or a `KsegError` naming `key`.

    NAME is one of `LOSS_NAMES`, each at most once; WEIGHT a plain decimal number (no sign,
    no exponent) in (0, 1000], 1 when left out. Spaces around the symbols are allowed.

    Args:
        text: str. The loss as written, e.g. "ce+dice" or "0.5*ce + 1.0*lovasz".
        key: str. The option or key named in messages ("--loss", "loss").
    """
    if not isinstance(text, str):
        raise KsegError(f"{key}: expected {LOSS_EXAMPLES}. Received: {key}={brief(text)}")
    if not text.strip():
        raise KsegError(f"{key}: no loss given; expected {LOSS_EXAMPLES}")
    terms, names = [], set()
    for part in text.split("+"):
        match = _LOSS_TERM.fullmatch(part)
        if not part.strip():
            raise KsegError(f"{key}: a '+' with no term on one side; expected {LOSS_EXAMPLES}. "
                            f"Received: {key}={brief(text)}")  # fmt: skip
        if match is None:
            raise KsegError(f"{key}: {brief(part.strip(), 40)} is not a term [WEIGHT*]NAME; expected "
                            f"{LOSS_EXAMPLES}. Received: {key}={brief(text)}")  # fmt: skip
        name = match["name"]
        if name not in LOSS_NAMES:
            raise KsegError(f"{key}: unknown loss {brief(name, 40)}; the losses are {', '.join(LOSS_NAMES)}. "
                            f"Received: {key}={brief(text)}")  # fmt: skip
        if name in names:
            raise KsegError(f"{key}: {name} appears twice; give it once, with a weight such as 2*{name}. "
                            f"Received: {key}={brief(text)}")  # fmt: skip
        names.add(name)
        weight = 1.0 if match["weight"] is None else float(match["weight"])
        if number_problem(weight, **LOSS_WEIGHT_RANGE):
            raise KsegError(f"{key}: the weight of {name} must be in {describe_range(**LOSS_WEIGHT_RANGE)}. "
                            f"Received: {key}={brief(text)}")  # fmt: skip
        terms.append((weight, name))
    return terms


def format_loss(terms):
    """The canonical text of loss terms: "ce", "ce+dice", "0.5*ce+lovasz" (weight 1 left out)."""

    def term(weight, name):
        number = format(decimal.Decimal(repr(float(weight))), "f").removesuffix(".0")
        return name if weight == 1 else f"{number}*{name}"

    return "+".join(term(weight, name) for weight, name in terms)


def parse_loss(text, key="loss"):
    """Checks a loss written as in `loss_terms` and returns its canonical text (`format_loss`),
    the form config.yaml holds, so "1.0*ce + dice" and "ce+dice" are the same loss."""
    return format_loss(loss_terms(text, key))


def check_value(key, value):
    """Returns the value of setting `key` checked (and normalised), or raises a `KsegError`
    naming the key: the one check of every setting, from YAML, Python or the command line."""
    setting = SETTINGS[key]
    if value is None and setting.optional:
        return None
    if setting.kind == "number":
        if isinstance(value, str):
            raise KsegError(f"{key}: expected a number. Received: {key}={brief(value)}")
        return check_setting(key, value)
    if setting.kind == "flag":
        if not isinstance(value, bool):
            raise KsegError(f"{key}: expected true or false. Received: {key}={brief(value)}")
        return value
    if setting.kind == "crop":
        if not isinstance(value, (str, list, tuple)):
            raise KsegError(f"{key}: expected HxW such as 512x1024, or none. Received: {key}={brief(value)}")
        return parse_crop(value, key)
    if setting.kind == "scale":
        return parse_scale(value, key)
    if setting.kind == "class_weights":
        return _check_class_weights(key, value)
    if setting.kind == "loss":
        return parse_loss(value, key)
    value = _check_text(key, value)
    if setting.kind == "choice" and value not in setting.choices:
        raise KsegError(f"{key}: must be one of {', '.join(setting.choices)}. Received: {key}={brief(value)}")
    return value


def _check_text(key, value):
    if not isinstance(value, str):
        raise KsegError(f"{key}: expected a string. Received: {key}={brief(value)}")
    if len(value) > MAX_STRING_LENGTH:
        raise KsegError(f"{key}: a string of {len(value)} characters is too long (at most {MAX_STRING_LENGTH})")
    if "\0" in value:
        raise KsegError(f"{key}: a string with a NUL character is not a name or a path. Received: {brief(value)}")
    return value


def _check_class_weights(key, value):
    if isinstance(value, str):
        if value not in CLASS_WEIGHT_MODES:
            raise KsegError(f"{key}: must be none, median-frequency, sqrt-median-frequency or a list of "
                            f"numbers. Received: {key}={brief(value)}")  # fmt: skip
        return value
    if not isinstance(value, (list, tuple)):
        raise KsegError(f"{key}: expected none, median-frequency, sqrt-median-frequency or a list of numbers. "
                        f"Received: {key}={brief(value)}")
    if len(value) > MAX_CLASS_WEIGHTS:
        raise KsegError(f"{key}: a list of {len(value)} items is too long (at most {MAX_CLASS_WEIGHTS})")
    weights = []
    for index, weight in enumerate(value):
        if isinstance(weight, str):
            raise KsegError(f"{key}[{index}]: expected a number. Received: {key}[{index}]={brief(weight)}")
        weights.append(check_setting("class_weight", weight, f"{key}[{index}]"))
    if not any(weights):
        raise KsegError(f"{key}: expected one weight per class (at most {MAX_CLASS_WEIGHTS}), not all zero. "
                        f"Received: {key}={brief(weights)}")  # fmt: skip
    return weights


# Changing one of these on --resume would not continue the same training: the checkpoint's
# weights and optimizer state were made with them.
FIXED_ON_RESUME = ("model", "data", "classes_file", "width", "optimizer", "mixed_precision",
                   "learn_upsampling", "loss", "class_weights")  # fmt: skip


@dataclasses.dataclass
class TrainConfig(RuntimeSettings, OptimizationSettings, DataSettings, ModelSettings):
    """Everything `kseg train` needs, in four sections; checked when it is made.

    Made and read by the settings' names (see the sections for each one's meaning and
    default), e.g. `TrainConfig(model="fcn16s", data="camvid", epochs=3)`, `config.lr`.
    Every value is checked and normalised as it is set (`config.lr = 0.01` too); `crop`
    is then (H, W) or None (whole images): left out, it is the dataset's default
    (DEFAULT_CROPS), decided when the config is made; "none" asks for whole images too.
    """

    def __setattr__(self, key, value):
        if key in SETTINGS and value is not DATASET_CROP:
            value = check_value(key, value)
        super().__setattr__(key, value)

    def __post_init__(self):
        if self.crop is DATASET_CROP:
            self.crop = DEFAULT_CROPS.get(self.data)
        if self.weights.lower() in MODEL_WEIGHT_CHOICES:
            self.weights = self.weights.lower()
        if self.weights != "none" and self.width != 1:
            raise KsegError(
                f"weights: pretrained weights need width 1 (got width {self.width}); use weights none. "
                f"Received: weights={brief(self.weights)}"
            )

    @property
    def model_weights(self):
        """The `weights` argument for `create_model`: None, "imagenet" or a path."""
        return None if self.weights == "none" else self.weights

    @classmethod
    def from_dict(cls, values, source="config"):
        """Builds a config from a mapping; unknown keys are a `KsegError` naming them.

        Args:
            values: dict. Keys are setting names (dashes are accepted for underscores);
                a `crop` of None (YAML null) means whole images, as "none" does.
            source: str. Where the values came from, for error messages (e.g. a file name).
        """
        settings = _setting_values(values, source)  # names `source` in its own messages
        try:
            return cls(**settings)
        except KsegError as error:
            raise KsegError(f"{source}: {error}") from None

    @classmethod
    def from_yaml(cls, path, overrides=None):
        """Reads a YAML file (safe loader); `overrides` win (None values are ignored).

        Args:
            path: str. A YAML mapping of setting names to values. A `recipe:` section
                (a training recipe's name, version, description and results, see
                `kseg.recipes`) is skipped, so a recipe file is a config file too.
            overrides: dict or None. Values that win over the file, e.g. from CLI options.
                The file is checked whole first: a bad value there is refused even when
                an override replaces it. The crop is decided after the overrides (a
                changed `data` brings its own default crop).
        """
        source = os.fspath(path)
        settings = load_yaml(source, "config file")
        if isinstance(settings, dict):  # a recipe's description is not a setting
            settings.pop(RECIPE_SECTION, None)
            _one_spelling(settings, source)
        settings = _setting_values(settings, source)
        config = cls.from_dict(settings, source)
        overrides = _given(overrides)
        return cls.from_dict(dict(settings, **overrides), source) if overrides else config

    def replace(self, **overrides):
        """Returns a copy with the given settings changed (and checked); None values leave
        one as it is."""
        changes = _given(overrides)
        for key in changes:
            if key not in SETTINGS:
                raise KsegError(f"unknown config key {brief(key, 60)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """Every setting by its name, in config.yaml's order, as YAML holds it (lists, not
        tuples)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}  # fmt: skip

    def to_yaml(self, path=None):
        """Returns the config as YAML text and, with `path`, writes it there atomically."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            write_bytes(path, text.encode("utf8"))
        return text


# Every setting, in config.yaml's (and `kseg train --help`'s) order: section by section.
SETTINGS = {
    field.name: Setting(field.default, optional=field.default is None or field.default is DATASET_CROP,
                        **field.metadata)
    for field in dataclasses.fields(TrainConfig)
}  # fmt: skip

def resolve(options=None, file=None, resume_dir=None, recipe=None):
    """The config of a `kseg train`: defaults < a recipe or a YAML file < the options.

    On resume, the run's config.yaml takes the place of the file: it holds the values the
    run used, so the options may change only what does not alter the training already
    done (epochs, caps, ...; not `FIXED_ON_RESUME`, unless to the value it has).

    Args:
        options: dict or None. Settings given by name (None values: not given).
        file: str or None. A YAML config file.
        resume_dir: str or None. A run folder to continue.
        recipe: kseg.recipes.Recipe or None. A training recipe.
    """
    options = _given(options)
    if resume_dir is not None and (recipe is not None or file is not None):
        given = "--recipe" if recipe is not None else "--config"
        raise KsegError(f"--resume reads RUN_DIR/config.yaml; {given} cannot be given with it")
    if recipe is not None and file is not None:
        raise KsegError("--recipe and --config both give the settings; use one (a recipe file, "
                        "`kseg recipes NAME`, also works as --config FILE)")
    if recipe is not None:
        return TrainConfig.from_dict(dict(recipe.settings, **options), source=recipe.path)
    if file is not None:
        return TrainConfig.from_yaml(file, options)
    if resume_dir is None:
        return TrainConfig.from_dict(options, source="options")
    path = runs.RunDir(os.fspath(resume_dir)).config
    if not os.path.isfile(path):
        raise KsegError(f"{resume_dir}: cannot resume, no config.yaml (not a kseg run directory)")
    saved = TrainConfig.from_yaml(path)
    for key in FIXED_ON_RESUME:
        if key in options and not same_setting(key, options[key], getattr(saved, key)):
            option = (SETTINGS[key].option or "--" + key.replace("_", "-")).split("/")[0]
            raise KsegError(
                f"{option}: cannot change on --resume (the run was trained with "
                f"{key}={getattr(saved, key)!r}); start a new run, e.g. with --init-from {resume_dir}"
            )
    # Options that cannot change were just found equal; the saved (resolved) values stay.
    changes = {key: value for key, value in options.items() if key not in FIXED_ON_RESUME}
    return saved.replace(**dict(changes, run_dir=os.fspath(resume_dir)))


def same_setting(key, requested, saved):
    """Whether a requested value equals the saved one, which config.yaml holds resolved:
    median-frequency as the computed weights, and `--mixed-precision auto` as the mode the
    run chose (auto asks for that choice again, on this machine or another)."""
    if key == "mixed_precision" and requested == "auto":
        return True
    if key == "class_weights" and requested in ("median-frequency", "sqrt-median-frequency"):
        return isinstance(saved, list)
    return check_value(key, requested) == saved


def _given(values):
    return {key: value for key, value in (values or {}).items() if value is not None}


def _one_spelling(values, source):
    """Refuses a file that gives one setting twice, as batch-size and as batch_size: only
    one of the two values would be used."""
    spellings = {}
    for key in values:
        name = key.replace("-", "_") if isinstance(key, str) else None
        if name in SETTINGS and spellings.setdefault(name, key) != key:
            raise KsegError(f"{source}: '{spellings[name]}' and '{key}' are the same setting; keep one")


def _setting_values(values, source):
    """A mapping of setting names (dashes accepted) -> values, unknown keys refused."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        kinds = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}
        found = kinds.get(type(values), type(values).__name__)
        raise KsegError(
            f"{source}: expected a mapping of option: value, found {found}; write one "
            "key: value per line, such as 'epochs: 10'"
        )
    cleaned = {}
    for key, value in values.items():
        name = str(key).replace("-", "_") if isinstance(key, str) else None
        if name not in SETTINGS:
            shown = f"'{key}'" if isinstance(key, str) and len(key) <= 60 else brief(key, 60)
            raise KsegError(f"{source}: unknown key {shown}; known keys: {', '.join(sorted(SETTINGS))}")
        cleaned[name] = value
    return cleaned
