"""The argument checks every model builder shares: one rule, one message and one error
type per argument, whichever builder is called."""

import os

from kseg.errors import ArgumentError, WeightsError


def check_num_classes(num_classes):
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ArgumentError(f"`num_classes` must be an integer >= 2. Received: num_classes={num_classes}")


def check_width(width):
    if not 0 < width <= 1:
        raise ArgumentError(f"`width` must be in (0, 1]. Received: width={width}")


def check_dropout(dropout):
    if not 0 <= dropout < 1:
        raise ArgumentError(f"`dropout` must be in [0, 1). Received: dropout={dropout}")


def check_weights_path(weights):
    """Refuses `weights` other than "imagenet", None or the path of an existing file."""
    if weights not in (None, "imagenet") and not os.path.isfile(os.fspath(weights)):
        raise WeightsError(f"{weights}: weights file not found (expected 'imagenet', none or a path)")


def check_random_weights(model_name, weights):
    """Refuses pretrained weights for a model that has none published."""
    if weights is not None:
        raise ArgumentError(
            f"{model_name} trains from random weights (no ImageNet weights exist for it); "
            f"pass --weights none (weights=None). Received: weights={weights!r}"
        )
