"""Building what is trained: the model of a config (weights, init_from) and its optimizer."""

import logging

import keras

from kseg import runs
from kseg.config import SETTINGS
from kseg.data import DatasetOptions
from kseg.errors import KsegError
from kseg.models import create_model, transfer_weights
from kseg.models.keras_internals import read_biases_in_float32
from kseg.models.registry import MODEL_OPTIONS, get_model_entry
from kseg.models.saving import load_model

logger = logging.getLogger("kseg")


def build_optimizer(config, total_steps):
    """The optimizer with its learning-rate schedule over `total_steps` steps."""
    total_steps = max(int(total_steps), 1)
    if config.schedule == "poly":
        learning_rate = keras.optimizers.schedules.PolynomialDecay(
            config.lr, decay_steps=total_steps, end_learning_rate=0.0, power=0.9
        )
    elif config.schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=total_steps)
    else:
        learning_rate = config.lr
    weight_decay = config.weight_decay or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=config.momentum, weight_decay=weight_decay)
    return keras.optimizers.Adam(learning_rate, weight_decay=weight_decay)


def resolve_init_from(path):
    """A run directory or `.keras` file -> the model file to initialise from."""
    model_path, _ = runs.resolve_model_path(path)
    return model_path


def builder_options(config):
    """The model options of `config` (width, dropout, learn_upsampling) that the preset of
    `config.model` takes. An option it lacks is left out while it has its default value,
    and is an error otherwise (e.g. --width on ResNet50)."""
    accepted = get_model_entry(config.model).options
    options = {}
    for key in MODEL_OPTIONS:
        value = getattr(config, key)
        if key in accepted:
            options[key] = value
        elif value != SETTINGS[key].default:
            raise KsegError(
                f"{key}: model '{config.model}' has no {key} option; leave it at its default "
                f"({SETTINGS[key].default}). Received: {key}={value}"
            )
    return options


def dataset_options(config, pad_to=1):
    """How the run's data is read and augmented (`kseg.data.make_dataset`'s options); `pad_to`:
    the devices a data-parallel step splits each batch over, without tf.data."""
    return DatasetOptions(crop=config.crop, scale_range=tuple(config.scale), seed=config.seed,
                          skip_bad=config.skip_bad, pad_to=pad_to)


def build_model(config, num_classes, initialise=True, unsafe=False):
    """Creates the registered model of the config (weights, width, dropout, init_from).

    `unsafe` allows an init_from model file that contains code (Lambda layers).
    """
    source_model = None
    if initialise and config.init_from:  # a bad file is reported before the model is built
        source = resolve_init_from(config.init_from)
        source_model = load_model(source, unsafe=unsafe)
    model = create_model(
        config.model, num_classes=num_classes, weights=config.model_weights if initialise else None,
        **builder_options(config),
    )  # fmt: skip
    if source_model is not None:
        report = transfer_weights(source_model, model)
        logger.info(
            "initialised from %s: %d layers copied, %d not copied",
            source, len(report.copied), len(report.skipped),
        )  # fmt: skip
    return with_float32_biases(model)


def with_float32_biases(model):
    """`model`, its biases read in float32 when the global dtype policy is a mixed one.

    Under mixed_bfloat16, TensorFlow sums a bfloat16 bias's gradient in bfloat16, up to
    46% off on a CamVid batch (`kseg.models.keras_internals.read_biases_in_float32`).
    """
    if keras.config.dtype_policy().compute_dtype != "float32":
        read_biases_in_float32(model)
    return model


