"""A registry of model builders, so models can be created by name (`--model fcn8s`)."""

import dataclasses

from kseg.errors import KsegError


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """What the registry knows of a builder.

    Args:
        name: str. The name users pass to `create_model` and `--model`.
        builder: callable. Returns a `keras.Model`; takes the builder's own arguments.
        output_stride: int. The stride of the coarsest prediction before upsampling.
        description: str. One line for `kseg models`.
    """

    name: str
    builder: object
    output_stride: int
    description: str


_REGISTRY = {}


def register_model(name, output_stride, description=""):
    """Decorator that registers a model builder under `name`; a repeated name is an error."""

    def decorate(builder):
        if name in _REGISTRY:
            raise ValueError(f"A model named '{name}' is already registered. Received: name={name}")
        _REGISTRY[name] = ModelEntry(name, builder, output_stride, description)
        return builder

    return decorate


def list_models():
    """Returns the registered names, sorted."""
    return sorted(_REGISTRY)


def get_model_entry(name):
    """Returns the `ModelEntry` for `name`, or raises a `KsegError` listing the known names."""
    if name not in _REGISTRY:
        raise KsegError(f"unknown model '{name}'; known models: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(name, **kwargs):
    """Builds the registered model `name` with the builder's keyword arguments."""
    return get_model_entry(name).builder(**kwargs)
