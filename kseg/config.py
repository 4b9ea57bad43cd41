"""Training configuration in four sections, validated when it is made, read from and
written to YAML.

    model         model, weights, width, dropout, learn_upsampling, init_from
    data          data, data_dir, classes_file, train_split, val_split, batch_size,
                  val_batch_size, crop, skip_bad
    optimization  epochs, optimizer, lr, momentum, weight_decay, schedule, loss, class_weights
    runtime       mixed_precision, precision_check, strategy, seed, steps_per_epoch, val_steps, run_dir,
                  worker_timeout

`SETTINGS` is the one table of them: section, default, kind (how a value is checked, by
`check_value`) and the `kseg train` option's help, from which cli/train.py builds its
options. Numbers are checked against `NUMBER_RANGES` (kseg.validation.check_number); the
loss is written in the small grammar of `parse_loss` (the losses are kseg.losses).
`TrainConfig` holds one frozen dataclass per section (`config.model_settings`, ...) and
reads and writes every setting by its flat name (`config.lr`), as config.yaml holds them.

Precedence, lowest first: the defaults, a YAML file (`--config FILE.yaml`, or a named
recipe, `--recipe NAME`: kseg.recipes), then the options given on the command line. The
resolved configuration (every setting, with the values actually used, e.g. computed class
weights) is written as `config.yaml` into each run directory, and `kseg train --resume`
reads it back from there.

    config = TrainConfig.from_yaml("fcn8s-camvid.yaml", overrides={"epochs": 5})
    config.to_yaml("runs/x/config.yaml")
"""

import dataclasses
import decimal
import os
import re

import yaml

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
    """One training setting.

    Args:
        section: str. "model", "data", "optimization" or "runtime".
        default: the value when none is given.
        kind: str. How values are checked: "text", "flag", "number" (NUMBER_RANGES),
            "choice" (one of `choices`), "crop", "scale" (`parse_scale`), "loss"
            (`parse_loss`) or "class_weights".
        help: str. The `kseg train` option's help.
        optional: bool. Whether None is a value (meaning: not set).
        choices: tuple of str. For kind "choice".
        option: str or None. The option's declaration where it is not --NAME-WITH-DASHES.
    """

    section: str
    default: object
    kind: str
    help: str
    optional: bool = False
    choices: tuple = ()
    option: str = None


def _setting(section, default, kind, help, **details):
    return Setting(section, default, kind, help, **details)


SECTIONS = ("model", "data", "optimization", "runtime")
# In config.yaml's order (and `kseg train --help`'s).
SETTINGS = {
    "model": _setting("model", "fcn8s", "text",
                      "Model to train: a name from `kseg models` (fcn32s, fcn16s, fcn8s, ...). [default: fcn8s]"),
    "data": _setting("data", "cityscapes", "text", "Dataset. [default: cityscapes]"),
    "data_dir": _setting("data", None, "text", "Dataset root folder.", optional=True),
    "classes_file": _setting("data", None, "text", "Classes file of a folder/synthetic dataset.",
                             optional=True, option="--classes"),
    "train_split": _setting("data", "train", "text", "Split trained on. [default: train]"),
    "val_split": _setting("data", "val", "text",
                          "Split validated on after each epoch (none: no validation). [default: val]"),
    "epochs": _setting("optimization", 50, "number", "Number of epochs. [default: 50]"),
    "batch_size": _setting("data", 8, "number", "Global batch size. [default: 8]"),
    "val_batch_size": _setting("data", None, "number", "Validation batch size. [default: --batch-size]",
                               optional=True),
    "crop": _setting("data", None, "crop", "Training crop HxW, or none for whole images. "
                     "[default: 512x1024 for cityscapes, none otherwise]", optional=True),
    "scale": _setting("data", (0.5, 2.0), "scale", "Random scale range of training images, LOW,HIGH "
                      "(1,1: no scaling). [default: 0.5,2]"),
    "optimizer": _setting("optimization", "sgd", "choice", "Optimizer. [default: sgd]", choices=OPTIMIZERS),
    "lr": _setting("optimization", 1e-3, "number", "Base learning rate. [default: 0.001]"),
    "momentum": _setting("optimization", 0.9, "number", "SGD momentum. [default: 0.9]"),
    "weight_decay": _setting("optimization", 5e-4, "number", "Decoupled weight decay. [default: 0.0005]"),
    "schedule": _setting("optimization", "poly", "choice", "Learning rate schedule. [default: poly]",
                         choices=SCHEDULES),
    "weights": _setting("model", "imagenet", "text",
                        "imagenet, none, or a path to VGG16 classifier weights. [default: imagenet]"),
    "width": _setting("model", 1.0, "number",
                      "VGG16 channel multiplier, for small demo models (needs --weights none). [default: 1]"),
    "dropout": _setting("model", 0.5, "number", "Dropout after fc6/fc7. [default: 0.5]"),
    "learn_upsampling": _setting("model", False, "flag", "Train the final bilinear upsampling layer. "
                                 "[default: fixed]", option="--learn-upsampling/--fixed-upsampling"),
    "init_from": _setting("model", None, "text",
                          "Run directory or .keras file to initialise from (32s -> 16s -> 8s).", optional=True),
    "mixed_precision": _setting("runtime", "auto", "choice",
                                "fp16 (loss scaling), bf16, off (float32), or auto: fp16 on a CUDA GPU, bf16 "
                                "on a CPU with native bfloat16 (AVX512-BF16/AMX), else off. [default: auto]",
                                choices=MIXED_PRECISION_MODES),
    "precision_check": _setting("runtime", True, "flag",
                                "Before training under bf16 or fp16, check on this machine that a few steps on one "
                                "batch give float32's loss (seconds); auto falls back to off when they do not, "
                                "bf16/fp16 stop. [default: on]", option="--precision-check/--no-precision-check"),
    "strategy": _setting("runtime", "auto", "choice", "Distribution: mirrored (all local devices; "
                         "keras.distribution DataParallel under JAX) or multiworker (TF_CONFIG, TensorFlow "
                         "only); auto mirrors over several GPUs. [default: auto]", choices=STRATEGIES),
    "loss": _setting("optimization", "ce", "loss",
                     "ce (cross-entropy), dice, focal, lovasz, or a weighted sum such as ce+dice or "
                     "0.5*ce+1.0*lovasz; every term ignores the void label and uses the class weights. "
                     "[default: ce]"),
    "class_weights": _setting("optimization", "none", "class_weights",
                              "none, median-frequency, sqrt-median-frequency (its square roots: milder), or one "
                              "weight per class: 1,2,0.5,... [default: none]"),
    "seed": _setting("runtime", 0, "number", "Random seed. [default: 0]"),
    "skip_bad": _setting("data", False, "flag", "Train despite bad pairs, skipping them.",
                         option="--skip-bad/--no-skip-bad"),
    "steps_per_epoch": _setting("runtime", None, "number", "Cap on training steps per epoch.", optional=True),
    "val_steps": _setting("runtime", None, "number", "Cap on validation steps.", optional=True),
    "run_dir": _setting("runtime", None, "text", "Run directory: new or empty (a run's folder only with "
                        "--resume). [default: runs/MODEL-DATA-TIME]", optional=True),
    "worker_timeout": _setting("runtime", 300.0, "number",
                               "Seconds --strategy multiworker waits for the other TF_CONFIG workers. "
                               "[default: 300]"),
}  # fmt: skip


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
        if integer:
            expected = f"a whole number from {limits['low']} to {limits['high']}"
        else:
            expected = f"a number in {describe_range(**limits)}"
        problem = str(error).split(": ", 1)[-1]
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
    0 < low <= high <= MAX_SCALE; returns [low, high] as floats."""
    parts = value
    if isinstance(value, str):
        parts = [part for part in value.replace(" ", "").split(",") if part]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        parts = [value]
    if not isinstance(parts, (list, tuple)) or len(parts) not in (1, 2):
        raise KsegError(f"{key}: expected LOW,HIGH such as 0.5,2. Received: {key}={brief(value)}")
    numbers = []
    for part in parts:
        if isinstance(part, bool):
            part = None
        try:
            number = float(part)
        except (TypeError, ValueError):
            raise KsegError(f"{key}: expected LOW,HIGH such as 0.5,2. Received: {key}={brief(value)}") from None
        numbers.append(check_number(number, key, low=0, high=MAX_SCALE, min_open=True))
    low, high = numbers[0], numbers[-1]
    if low > high:
        raise KsegError(f"{key}: LOW must not exceed HIGH. Received: {key}={brief(value)}")
    return [low, high]


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
    parts = []
    for weight, name in terms:
        if weight == 1:
            parts.append(name)
            continue
        number = format(decimal.Decimal(repr(float(weight))), "f")
        parts.append(f"{number[:-2] if number.endswith('.0') else number}*{name}")
    return "+".join(parts)


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
        crop = parse_crop(value, key)
        return WHOLE_IMAGES if crop is None else list(crop)
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


def _check_section(section):
    """Checks every value of a section dataclass in place (they are frozen afterwards)."""
    for field in dataclasses.fields(section):
        object.__setattr__(section, field.name, check_value(field.name, getattr(section, field.name)))


def _section_class(name, doc, post_init=_check_section):
    fields = [
        (key, object, dataclasses.field(default=setting.default))
        for key, setting in SETTINGS.items() if setting.section == name
    ]  # fmt: skip
    namespace = {"__post_init__": post_init, "__doc__": doc}
    return dataclasses.make_dataclass(f"{name.capitalize()}Settings", fields, frozen=True, namespace=namespace)


def _check_model_section(section):
    _check_section(section)
    if section.weights.lower() in MODEL_WEIGHT_CHOICES:
        object.__setattr__(section, "weights", section.weights.lower())
    if section.weights != "none" and section.width != 1:
        raise KsegError(
            f"weights: pretrained weights need width 1 (got width {section.width}); use weights none. "
            f"Received: weights={brief(section.weights)}"
        )


ModelSettings = _section_class("model", "What is trained: the model and its first weights.",
                               _check_model_section)  # fmt: skip
DataSettings = _section_class("data", "What it is trained on: the dataset, its splits, batches and crop.")
OptimizationSettings = _section_class("optimization", "How: epochs, optimizer, schedule, class weights.")
RuntimeSettings = _section_class("runtime", "Where and how reproducibly: precision, distribution, seed, caps.")
SECTION_CLASSES = {"model": ModelSettings, "data": DataSettings, "optimization": OptimizationSettings,
                   "runtime": RuntimeSettings}  # fmt: skip


class TrainConfig:
    """Everything `kseg train` needs, in four sections; validated when it is made.

    Made from the settings by their flat names (see `SETTINGS` for each one's meaning,
    default and option), e.g. `TrainConfig(model="fcn16s", data="camvid", epochs=3)`; read
    them the same way (`config.lr`). `crop` is [H, W], "none" (whole images) or None (the
    dataset's default: `training_crop` resolves it). Setting one (`config.lr = 0.01`)
    checks it at once.

    Attributes:
        model_settings, data_settings, optimization_settings, runtime_settings: the
            sections, frozen dataclasses.
    """

    __slots__ = tuple(f"{name}_settings" for name in SECTIONS)

    def __init__(self, **values):
        unknown = [key for key in values if key not in SETTINGS]
        if unknown:
            raise KsegError(f"unknown config key {brief(unknown[0], 60)}; known keys: {', '.join(sorted(SETTINGS))}")
        for name, section_class in SECTION_CLASSES.items():
            fields = {key: value for key, value in values.items() if SETTINGS[key].section == name}
            object.__setattr__(self, f"{name}_settings", section_class(**fields))

    def __eq__(self, other):
        return isinstance(other, TrainConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"TrainConfig({', '.join(f'{key}={value!r}' for key, value in self.to_dict().items())})"

    @property
    def model_weights(self):
        """The `weights` argument for `create_model`: None, "imagenet" or a path."""
        return None if self.weights == "none" else self.weights

    @property
    def dataset_crop(self):
        """The crop of `data` when none is given: (H, W), or None for whole images."""
        return DEFAULT_CROPS.get(self.data)

    @property
    def training_crop(self):
        """The crop trained with: [H, W], or None for whole images."""
        if self.crop is None:
            return list(self.dataset_crop) if self.dataset_crop else None
        return None if self.crop == WHOLE_IMAGES else self.crop

    @classmethod
    def from_dict(cls, values, source="config"):
        """Builds a config from a mapping; unknown keys are a `KsegError` naming them.

        Args:
            values: dict. Keys are setting names (dashes are accepted for underscores).
            source: str. Where the values came from, for error messages (e.g. a file name).
        """
        try:
            return cls(**_setting_values(values, source))
        except KsegError as error:
            raise KsegError(f"{source}: {error}") from None

    @classmethod
    def from_yaml(cls, path, overrides=None):
        """Reads a YAML file (safe loader) and applies `overrides` (None values are ignored).

        Args:
            path: str. A YAML mapping of setting names to values. A `recipe:` section
                (a training recipe's name, version, description and results, see
                `kseg.recipes`) is skipped, so a recipe file is a config file too.
            overrides: dict or None. Values that win over the file, e.g. from CLI options.
        """
        path = os.fspath(path)
        values = load_yaml(path, "config file")
        if isinstance(values, dict):  # a recipe's description is not a setting
            values = {key: value for key, value in values.items() if key != RECIPE_SECTION}
        config = cls.from_dict(values, source=path)
        return config.replace(**(overrides or {}))

    def replace(self, **overrides):
        """Returns a copy with the given settings changed; None values leave one as it is."""
        changes = {key: value for key, value in overrides.items() if value is not None}
        for key in changes:
            if key not in SETTINGS:
                raise KsegError(f"unknown config key {brief(key, 60)}")
        return TrainConfig(**dict(self.to_dict(), **changes))

    def to_dict(self):
        """Every setting by its flat name, in config.yaml's order."""
        values = {}
        for name in SECTIONS:
            values.update(dataclasses.asdict(getattr(self, f"{name}_settings")))
        return {key: values[key] for key in SETTINGS}

    def to_yaml(self, path=None):
        """Returns the config as YAML text and, with `path`, writes it there atomically."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            write_bytes(path, text.encode("utf8"))
        return text


def _flat_setting(key):
    section = f"{SETTINGS[key].section}_settings"

    def read(config):
        return getattr(getattr(config, section), key)

    def write(config, value):
        object.__setattr__(config, section, dataclasses.replace(getattr(config, section), **{key: value}))

    return property(read, write, doc=SETTINGS[key].help)


for _key in SETTINGS:
    setattr(TrainConfig, _key, _flat_setting(_key))
del _key


def _setting_values(values, source):
    """A mapping of setting names (dashes accepted) -> values, unknown keys refused."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise KsegError(
            f"{source}: expected a mapping of option: value, found {_yaml_kind(values)}; write one "
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


def _yaml_kind(value):
    names = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}
    return names.get(type(value), type(value).__name__)
