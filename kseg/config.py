"""Training configuration: a dataclass validated when it is made, read from and written to YAML.

Precedence, lowest first: the dataclass defaults, a YAML file (`--config FILE.yaml`), then
the options given on the command line. The resolved configuration (every field, with the
values actually used, e.g. computed class weights) is written as `config.yaml` into each
run directory, and `kseg train --resume` reads it back from there.

    config = TrainConfig.from_yaml("fcn8s-camvid.yaml", overrides={"epochs": 5})
    config.to_yaml("runs/x/config.yaml")
"""

import dataclasses
import os
import re
import typing

import yaml

from kseg.atomic import write_bytes_atomic
from kseg.errors import KsegError
from kseg.files import brief, load_yaml
from kseg.validation import check_number, describe_range

MODEL_WEIGHT_CHOICES = ("imagenet", "none")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("poly", "cosine", "constant")
MIXED_PRECISION_MODES = ("auto", "off", "fp16", "bf16")
STRATEGIES = ("auto", "none", "mirrored", "multiworker")
CLASS_WEIGHT_MODES = ("none", "median-frequency")

# Whole Cityscapes images (1024x2048) do not fit a useful batch; other sets train on whole
# images unless --crop says otherwise.
DEFAULT_CROPS = {"cityscapes": (512, 1024)}
WHOLE_IMAGES = "none"  # crop value asking for whole images whatever the dataset's default

# The one table of numeric limits: TrainConfig checks every value against it (from YAML,
# Python or the command line), and `kseg train`'s options use it at parse time.
MAX_CROP_SIDE = 16384
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
MAX_STRING_LENGTH = 4096  # paths and names; PATH_MAX on Linux


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
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "none")):
        return None
    if isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        parts = re.split(r"[x,X ]+", str(text).strip())
    try:
        if len(parts) != 2 or any(isinstance(part, (bool, float)) for part in parts):
            raise ValueError(parts)
        height, width = (int(part) for part in parts)
    except (TypeError, ValueError, OverflowError):
        raise KsegError(f"{key}: expected HxW such as 512x1024. Received: {key}={brief(text)}") from None
    if not (1 <= height <= MAX_CROP_SIDE and 1 <= width <= MAX_CROP_SIDE):
        raise KsegError(
            f"{key}: height and width must be between 1 and {MAX_CROP_SIDE}. Received: {key}={brief(text)}"
        )
    return (height, width)


@dataclasses.dataclass
class TrainConfig:
    """Everything `kseg train` needs; validated in `__post_init__`.

    Args:
        model: str. A registered model name (`kseg models`): fcn32s, fcn16s or fcn8s.
        data: str. Dataset name: cityscapes, voc, camvid, folder or synthetic.
        data_dir: str or None. Where the dataset lies (None: the dataset's default place).
        classes_file: str or None. Class names/palette for the "folder" dataset.
        train_split: str. The split trained on.
        val_split: str. The split validated on after each epoch (best.keras follows it).
        epochs: int. Number of epochs (passes over the training split).
        batch_size: int. Global batch size (split across replicas under a strategy).
        val_batch_size: int or None. Batch size for validation; None means `batch_size`.
        crop: [int, int], "none" or None. Training crop (height, width); "none": whole
            images; None: the dataset default (512x1024 for Cityscapes, whole images otherwise).
        optimizer: str. "sgd" or "adam".
        lr: float. Base learning rate.
        momentum: float. SGD momentum (ignored by adam).
        weight_decay: float. Decoupled weight decay.
        schedule: str. Learning rate schedule over all steps: "poly" (power 0.9), "cosine"
            or "constant".
        weights: str. "imagenet", "none" or a path to VGG16 classifier weights.
        width: float. VGG16 channel multiplier (below 1 only with weights "none").
        dropout: float. Dropout rate after fc6 and fc7.
        learn_upsampling: bool. Whether the final bilinear upsampling is trained.
        init_from: str or None. A run directory or `.keras` file whose same-named layers
            initialise the model (FCN-32s -> 16s -> 8s).
        mixed_precision: str. "auto" (float16 on a GPU, float32 on a CPU), "off", "fp16",
            "bf16".
        strategy: str. "auto" (mirrored over several local GPUs, else none), "none",
            "mirrored" or "multiworker" (cluster from TF_CONFIG).
        class_weights: str or list of float. "none", "median-frequency" or one weight per
            class.
        seed: int. Seed for weights, data order, augmentation and dropout.
        skip_bad: bool. Train even if the dataset has bad pairs, skipping and counting them.
        steps_per_epoch: int or None. Cap on training steps per epoch.
        val_steps: int or None. Cap on validation steps.
        run_dir: str or None. Where the run is written; None: runs/<model>-<data>-<time>.
        worker_timeout: float. Seconds a multi-worker run waits for the other workers of
            TF_CONFIG to answer before it gives up, naming the missing one.
    """

    model: str = "fcn8s"
    data: str = "cityscapes"
    data_dir: typing.Optional[str] = None
    classes_file: typing.Optional[str] = None
    train_split: str = "train"
    val_split: str = "val"
    epochs: int = 50
    batch_size: int = 8
    val_batch_size: typing.Optional[int] = None
    crop: typing.Union[None, str, typing.List[int]] = None
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "poly"
    weights: str = "imagenet"
    width: float = 1.0
    dropout: float = 0.5
    learn_upsampling: bool = False
    init_from: typing.Optional[str] = None
    mixed_precision: str = "auto"
    strategy: str = "auto"
    class_weights: typing.Union[str, typing.List[float]] = "none"
    seed: int = 0
    skip_bad: bool = False
    steps_per_epoch: typing.Optional[int] = None
    val_steps: typing.Optional[int] = None
    run_dir: typing.Optional[str] = None
    worker_timeout: float = 300.0

    def __post_init__(self):
        if isinstance(self.crop, str):  # "512x1024" or "none" in YAML or from the command line
            crop = parse_crop(self.crop)
            self.crop = WHOLE_IMAGES if crop is None else list(crop)
        for field in dataclasses.fields(self):
            setattr(self, field.name, _check_type(field.name, getattr(self, field.name), field.type))
        self._check_values()

    def _check_values(self):
        def need(condition, key, what):
            if not condition:
                raise KsegError(f"{key}: {what}. Received: {key}={brief(getattr(self, key))}")

        for key in NUMBER_RANGES:
            if key in ("class_weight",) or getattr(self, key) is None:
                continue
            setattr(self, key, check_setting(key, getattr(self, key)))
        if self.crop not in (None, WHOLE_IMAGES):
            self.crop = list(parse_crop(self.crop))
        need(self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
        need(self.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}")
        need(
            self.mixed_precision in MIXED_PRECISION_MODES,
            "mixed_precision", f"must be one of {', '.join(MIXED_PRECISION_MODES)}",
        )  # fmt: skip
        need(self.strategy in STRATEGIES, "strategy", f"must be one of {', '.join(STRATEGIES)}")
        if self.weights.lower() in MODEL_WEIGHT_CHOICES:
            self.weights = self.weights.lower()
        need(
            self.weights == "none" or self.width == 1,
            "weights", f"pretrained weights need width 1 (got width {self.width}); use weights none",
        )  # fmt: skip
        if isinstance(self.class_weights, str):
            need(
                self.class_weights in CLASS_WEIGHT_MODES,
                "class_weights", "must be none, median-frequency or a list of numbers",
            )  # fmt: skip
        else:
            self.class_weights = [
                check_setting("class_weight", weight, f"class_weights[{index}]")
                for index, weight in enumerate(self.class_weights)
            ]
            need(
                len(self.class_weights) <= 4096 and any(self.class_weights),
                "class_weights", "expected one weight per class (at most 4096), not all zero",
            )  # fmt: skip

    @property
    def model_weights(self):
        """The `weights` argument for `create_model`: None, "imagenet" or a path."""
        return None if self.weights == "none" else self.weights

    @classmethod
    def from_dict(cls, values, source="config"):
        """Builds a config from a mapping; unknown keys are a `KsegError` naming them.

        Args:
            values: dict. Keys are field names (dashes are accepted for underscores).
            source: str. Where the values came from, for error messages (e.g. a file name).
        """
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise KsegError(
                f"{source}: expected a mapping of option: value, found {_yaml_kind(values)}; write one "
                "key: value per line, such as 'epochs: 10'"
            )
        known = {field.name for field in dataclasses.fields(cls)}
        cleaned = {}
        for key, value in values.items():
            name = str(key).replace("-", "_") if isinstance(key, str) else None
            if name not in known:
                shown = f"'{key}'" if isinstance(key, str) and len(key) <= 60 else brief(key, 60)
                raise KsegError(f"{source}: unknown key {shown}; known keys: {', '.join(sorted(known))}")
            cleaned[name] = value
        try:
            return cls(**cleaned)
        except KsegError as error:
            raise KsegError(f"{source}: {error}") from None

    @classmethod
    def from_yaml(cls, path, overrides=None):
        """Reads a YAML file (safe loader) and applies `overrides` (None values are ignored).

        Args:
            path: str. A YAML mapping of field names to values.
            overrides: dict or None. Values that win over the file, e.g. from CLI options.
        """
        path = os.fspath(path)
        values = load_yaml(path, "config file")
        config = cls.from_dict(values, source=path)
        return config.replace(**(overrides or {}))

    def replace(self, **overrides):
        """Returns a copy with the given fields changed; None values leave a field as it is."""
        changes = {key: value for key, value in overrides.items() if value is not None}
        known = {field.name for field in dataclasses.fields(self)}
        for key in changes:
            if key not in known:
                raise KsegError(f"unknown config key {brief(key, 60)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_yaml(self, path=None):
        """Returns the config as YAML text and, with `path`, writes it there atomically."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            write_bytes_atomic(path, text.encode("utf8"))
        return text


def _yaml_kind(value):
    names = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}
    return names.get(type(value), type(value).__name__)


def _type_name(annotation):
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(annotation, str(annotation))


def _check_type(key, value, annotation):
    """Returns `value` checked (and mildly coerced: int -> float) against `annotation`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(key, value, option)
            except KsegError as error:
                errors.append(str(error))
        raise KsegError(errors[-1] if len(errors) == 1 else f"{key}: wrong type. Received: {key}={brief(value)}")
    if origin in (list, typing.List):
        (item_type,) = typing.get_args(annotation)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise KsegError(f"{key}: expected a list of {_type_name(item_type)}s. Received: {key}={brief(value)}")
        if len(value) > 4096:
            raise KsegError(f"{key}: a list of {len(value)} items is too long (at most 4096)")
        return [_check_type(f"{key}[{index}]", item, item_type) for index, item in enumerate(value)]
    if annotation is bool:
        if not isinstance(value, bool):
            raise KsegError(f"{key}: expected true or false. Received: {key}={brief(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise KsegError(f"{key}: expected an integer. Received: {key}={brief(value)}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise KsegError(f"{key}: expected a number. Received: {key}={brief(value)}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise KsegError(f"{key}: expected a string. Received: {key}={brief(value)}")
        if len(value) > MAX_STRING_LENGTH:
            raise KsegError(f"{key}: a string of {len(value)} characters is too long (at most {MAX_STRING_LENGTH})")
        if "\0" in value:
            raise KsegError(f"{key}: a string with a NUL character is not a name or a path. Received: {brief(value)}")
        return value
    raise TypeError(f"unsupported config annotation {annotation!r} for {key}")
