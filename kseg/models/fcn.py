"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer & Darrell, CVPR 2015) on VGG16.

    RGB image (any H x W) -> BGR, minus ImageNet mean -> pad to a multiple of 32
      -> VGG16 blocks 1-5 -> fc6 (7x7 conv) -> fc7 (1x1 conv) -> score_fr (1x1 conv)
      FCN-32s: score_fr -> upscore (x32)
      FCN-16s: score_fr -> upscore2 (x2) + score_pool4 -> upscore16 (x16)
      FCN-8s:  ... -> upscore_pool4 (x2) + score_pool3 -> upscore8 (x8)
    -> crop to H x W -> float32 logits

Scoring layers start at zero (as in the paper), so a 16s model initialised from a trained
32s model predicts exactly what the 32s model did. Every upsampling layer starts as
bilinear interpolation; the x2 layers are learned, the final one is learned only with
`learn_upsampling=True` (the paper keeps it fixed).
"""

from kseg.errors import KsegError
from kseg.models.arguments import check_dropout, check_num_classes, check_weights_path, check_width
from kseg.models.heads import fcn_head
from kseg.models.layers import padded_model
from kseg.models.pretrained import assign_vgg16_weights
from kseg.models.transfer import transfer_weights
from kseg.models.vgg16 import fully_connected_as_convs, vgg16_trunk

INPUT_MULTIPLE = 32  # VGG16 pools five times


def build_fcn(output_stride, num_classes, weights="imagenet", learn_upsampling=False, dropout=0.5, width=1.0,
              batch_norm=False):
    """Builds an FCN on VGG16 with the given output stride (32, 16 or 8).

    Args:
        output_stride: int. 32, 16 or 8: FCN-32s, FCN-16s or FCN-8s.
        num_classes: int. Number of classes scored per pixel (the ignore label is not one).
        weights: str or None. "imagenet" (keras' download and cache), None (random), or a
            path to a keras VGG16 classifier weights file; fc1/fc2 become fc6/fc7.
        learn_upsampling: bool. Whether the final upsampling layer is trained; the x2
            upsampling layers of FCN-16s/8s always are.
        dropout: float. Dropout rate after fc6 and fc7.
        width: float. Multiplier on VGG16's channel counts; below 1 only for random weights
            (small models for tests and quick demos).
        batch_norm: bool. VGG16-BN (batch normalisation after every convolution, fc6 and
            fc7), for training from random weights only; the model is then named
            "fcn{output_stride}s_vgg16bn", else "fcn{output_stride}s".
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"`output_stride` must be 8, 16 or 32. Received: output_stride={output_stride}")
    check_num_classes(num_classes)
    check_dropout(dropout)
    check_width(width)
    if weights is not None and width != 1:
        raise ValueError(
            f"pretrained weights need the full VGG16 (width=1). Received: weights={weights!r}, "
            f"width={width}"
        )
    if weights is not None and batch_norm:
        raise KsegError(
            "VGG16-BN models train from random weights (keras has no ImageNet VGG16-BN); "
            "pass --weights none, or use fcn32s/fcn16s/fcn8s for ImageNet VGG16"
        )
    check_weights_path(weights)

    def scores(x):
        taps = vgg16_trunk(x, width, batch_norm)
        features = {32: fully_connected_as_convs(taps["block5_pool"], width, dropout, batch_norm),
                    16: taps["block4_pool"], 8: taps["block3_pool"]}  # fmt: skip
        return fcn_head(num_classes, output_stride, learn_upsampling, ("pool4", "pool3"))(features, 32)

    name = f"fcn{output_stride}s" + ("_vgg16bn" if batch_norm else "")
    model = padded_model(name, scores, INPUT_MULTIPLE)
    if weights is not None:
        assign_vgg16_weights(model, weights)
    return model


def fcn32s(num_classes=21, weights="imagenet", learn_upsampling=False, dropout=0.5, width=1.0):
    """FCN-32s. See `build_fcn` for the arguments."""
    return build_fcn(32, num_classes, weights, learn_upsampling, dropout, width)


def fcn16s(
    num_classes=21, weights="imagenet", learn_upsampling=False, dropout=0.5, width=1.0,
    init_from=None,
):  # fmt: skip
    """FCN-16s, optionally initialised from a trained FCN-32s. See `build_fcn`."""
    return _initialised(build_fcn(16, num_classes, weights, learn_upsampling, dropout, width), init_from)


def fcn8s(
    num_classes=21, weights="imagenet", learn_upsampling=False, dropout=0.5, width=1.0,
    init_from=None,
):  # fmt: skip
    """FCN-8s, optionally initialised from a trained FCN-16s (or FCN-32s). See `build_fcn`."""
    return _initialised(build_fcn(8, num_classes, weights, learn_upsampling, dropout, width), init_from)


def _initialised(model, init_from):
    """`model`, with the layers of matching name and shape copied in from `init_from` (a
    trained model or `.keras` file, e.g. FCN-32s into FCN-16s) when one is given."""
    if init_from is not None:
        transfer_weights(init_from, model)
    return model
