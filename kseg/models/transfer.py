"""Copying weights between models by layer name, as FCN's staged training needs.

FCN-16s starts from a trained FCN-32s and FCN-8s from a trained FCN-16s: every layer whose
name and weight shapes match is copied; the new skip layers keep their zero initialisation.
"""

import dataclasses
import logging
import os

import keras

from kseg.errors import KsegError
from kseg.models.saving import load_model

logger = logging.getLogger("kseg")


@dataclasses.dataclass
class TransferReport:
    """Which layers `transfer_weights` copied and which it left as they were, and why."""

    copied: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)  # (layer name, reason)


def transfer_weights(source, target):
    """Copies the weights of every same-named, same-shaped layer of `source` into `target`.

    Args:
        source: keras.Model or str. A model, or a path to a `.keras` model file.
        target: keras.Model. Receives the weights in place.

    Returns:
        TransferReport listing copied and skipped layers.
    """
    if not isinstance(source, keras.Model):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise KsegError(f"{path}: model file not found")
        if not path.endswith(".keras"):
            raise KsegError(f"{path}: expected a .keras model file to initialise from")
        source = load_model(path)  # keras' safe mode, errors as KsegError
    source_layers = {layer.name: layer for layer in source.layers}
    report = TransferReport()
    for layer in target.layers:
        if not layer.weights:
            continue
        if layer.name not in source_layers:
            report.skipped.append((layer.name, "not in the source model; kept its initial weights"))
            continue
        source_shapes = [tuple(w.shape) for w in source_layers[layer.name].weights]
        target_shapes = [tuple(w.shape) for w in layer.weights]
        if source_shapes != target_shapes:
            report.skipped.append(
                (layer.name, f"shape {source_shapes} in the source, {target_shapes} here")
            )
            continue
        layer.set_weights(source_layers[layer.name].get_weights())
        report.copied.append(layer.name)
    target_names = {layer.name for layer in target.layers}
    for name, layer in source_layers.items():
        if layer.weights and name not in target_names:
            report.skipped.append((name, "only in the source model"))
    logger.info(f"copied {len(report.copied)} layers: {', '.join(report.copied) or '-'}")
    for name, reason in report.skipped:
        logger.info(f"not copied: {name} ({reason})")
    return report
