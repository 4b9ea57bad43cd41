"""LR-ASPP (Howard et al. 2019, "Searching for MobileNetV3") on MobileNetV3 Large and Small.

    RGB image (any H x W) -> scaled to [-1, 1] -> pad to a multiple of 16
      -> MobileNetV3, last stage dilated (rate 2, stride 1): output stride 16
      -> high: last map (stride 16) -> 1x1 conv 128 + BN + ReLU
               x sigmoid(1x1 conv 128 of its global average) -> x2 bilinear
               -> lraspp_high_classifier (1x1)
      +  low: stride-8 tap (MobileNetV3Large expanded_conv_5_add, Small expanded_conv_2_add)
               -> lraspp_low_classifier (1x1)
    -> x8 bilinear -> crop to H x W -> float32 logits
"""

from kseg.errors import ArgumentError
from kseg.models.backbones import Variant, build_on_backbone
from kseg.models.heads import lraspp_head

OUTPUT_STRIDE = 16


def build_lraspp(backbone, num_classes=21, weights="imagenet", width=1.0, minimalistic=False):
    """Builds LR-ASPP on `backbone` ("mobilenetv3large" or "mobilenetv3small").

    Args:
        backbone: str. "mobilenetv3large" or "mobilenetv3small".
        num_classes: int. Number of classes scored per pixel.
        weights: str or None. "imagenet" (keras' download and cache), None (random), or a
            path to a keras weights file of the backbone (include_top=False).
        width: float. MobileNetV3's alpha (ImageNet weights exist for 0.75 and 1).
        minimalistic: bool. MobileNetV3's minimalistic variant.
    """
    if not backbone.startswith("mobilenetv3"):
        raise ArgumentError(f"LR-ASPP is built on MobileNetV3. Received: backbone={backbone!r}")
    return build_on_backbone(backbone, lraspp_head(num_classes), num_classes, weights, OUTPUT_STRIDE,
                             f"lraspp_{backbone}", Variant(width, minimalistic))  # fmt: skip
