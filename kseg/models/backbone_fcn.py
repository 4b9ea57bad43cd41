"""FCN-32s, FCN-16s and FCN-8s on keras.applications backbones: MobileNetV3 Large and
Small, ResNet50.

    RGB image (any H x W) -> the backbone's preprocessing -> pad to a multiple of 32
      -> backbone -> score_fr (1x1 conv on the last map, stride 32) -> upscore (x32)
      16s: ... -> upscore2 (x2) + score_skip16 (stride-16 tap) -> upscore16 (x16)
      8s:  ... -> upscore_skip16 (x2) + score_skip8 (stride-8 tap) -> upscore8 (x8)
    -> crop to H x W -> float32 logits

The taps (`kseg.models.backbones.BACKBONES`): MobileNetV3Large expanded_conv_5_add (8)
and expanded_conv_11_add (16); MobileNetV3Small expanded_conv_2_add and
expanded_conv_7_add; ResNet50 conv3_block4_out and conv4_block6_out. As in the VGG16 FCNs,
score layers start at zero and upsampling layers as bilinear interpolation.
"""

from kseg.models.backbones import Variant, build_on_backbone
from kseg.models.heads import fcn_head


def build_backbone_fcn(backbone, skips, num_classes=21, weights="imagenet", learn_upsampling=False,
                       width=1.0, minimalistic=False):
    """Builds FCN-`skips`s (32, 16 or 8) on `backbone`.

    Args:
        backbone: str. "mobilenetv3large", "mobilenetv3small" or "resnet50".
        skips: int. 32, 16 or 8: which taps are fused (FCN-32s, -16s, -8s).
        num_classes: int. Number of classes scored per pixel.
        weights: str or None. "imagenet" (keras' download and cache), None (random), or a
            path to a keras weights file of the backbone (include_top=False).
        learn_upsampling: bool. Whether the final upsampling layer is trained.
        width: float. MobileNetV3's alpha (ImageNet weights exist for 0.75 and 1).
        minimalistic: bool. MobileNetV3's minimalistic variant.
    """
    return build_on_backbone(
        backbone, fcn_head(num_classes, skips, learn_upsampling), num_classes, weights, 32,
        f"fcn{skips}s_{backbone}", Variant(width, minimalistic),
    )  # fmt: skip
