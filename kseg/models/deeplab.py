"""DeepLab v3 (Chen, Papandreou, Schroff & Adam 2017) on ResNet50, at output stride 16 or 8.

    RGB image (any H x W) -> BGR minus the ImageNet mean -> pad to a multiple of 16 (8)
      -> ResNet50; output stride 16: conv5 at stride 1, its 3x3 convs dilated by 2;
         output stride 8: conv4 too, dilated by 2, and conv5 by 4
      -> ASPP on conv5_block3_out: 1x1 | 3x3 rate 6, 12, 18 (12, 24, 36 at stride 8)
         | global average -> 1x1, repeated over the map; each 256 channels + BN + ReLU
      -> concat -> 1x1 (256) + BN + ReLU -> dropout -> 3x3 (256) + BN + ReLU
      -> classifier (1x1) -> bilinear x16 (x8)
    -> crop to H x W -> float32 logits

Dilating instead of striding keeps every kernel's shape, so keras' ImageNet ResNet50
weights load unchanged (by layer name).

DeepLab v3+ (Chen, Zhu, Papandreou, Schroff & Adam 2018) adds a decoder over the
backbone's stride-4 features:

    ... -> ASPP as above (rates of the output stride) -> bilinear to stride 4
      + low-level: stride-4 tap (ResNet50 conv2_block3_out, MobileNetV3Large
        expanded_conv_2_add) -> 1x1 conv (48) + BN + ReLU (decoder_low)
      -> concat -> two 3x3 conv (256) + BN + ReLU (decoder_1, decoder_2)
      -> classifier (1x1) -> bilinear x4
    -> crop to H x W -> float32 logits

on ResNet50 at output stride 16 or 8, and on MobileNetV3Large (its last stage dilated,
output stride 16) for phones; the MobileNetV3Large variant exports to a full-integer
TFLite file.
"""

from kseg.errors import ArgumentError
from kseg.models.backbones import Variant, build_on_backbone
from kseg.models.heads import deeplab_head

OUTPUT_STRIDES = (16, 8)
PLUS_BACKBONES = ("resnet50", "mobilenetv3large")


def build_deeplabv3(backbone="resnet50", num_classes=21, weights="imagenet", output_stride=16, dropout=0.5):
    """DeepLab v3 on ResNet50.

    Args:
        backbone: str. "resnet50", the one backbone DeepLab v3 is built on here.
        num_classes: int. Number of classes scored per pixel.
        weights: str or None. "imagenet" (keras' download and cache), None (random), or a
            path to a keras ResNet50 weights file (include_top=False).
        output_stride: int. 16 or 8: the stride of ASPP's input map.
        dropout: float. Dropout rate after ASPP's projection.
    """
    if backbone != "resnet50":
        raise ArgumentError(f"DeepLab v3 is built on resnet50. Received: backbone={backbone!r}")
    return _build("deeplabv3", backbone, deeplab_head(num_classes, dropout), num_classes, weights, output_stride,
                  Variant())


def _build(family, backbone, head, num_classes, weights, output_stride, variant):
    """`head` on `backbone` at `output_stride` (16 or 8), named `{family}_{backbone}[_os8]`."""
    if output_stride not in OUTPUT_STRIDES:
        raise ArgumentError(f"`output_stride` must be 16 or 8. Received: output_stride={output_stride}")
    name = f"{family}_{backbone}" + ("" if output_stride == 16 else f"_os{output_stride}")
    return build_on_backbone(backbone, head, num_classes, weights, output_stride, name, variant)


def build_deeplabv3plus(backbone, num_classes=21, weights="imagenet", output_stride=16, dropout=0.1,
                        width=1.0):
    """DeepLab v3+ on `backbone`.

    Args:
        backbone: str. "resnet50" (output stride 16 or 8) or "mobilenetv3large" (16).
        num_classes: int. Number of classes scored per pixel.
        weights: str or None. "imagenet" (keras' download and cache), None (random), or a
            path to a keras weights file of the backbone (include_top=False).
        output_stride: int. 16 or 8: the stride of ASPP's input map.
        dropout: float. Dropout rate after ASPP's projection.
        width: float. MobileNetV3's alpha (ImageNet weights exist for 0.75 and 1).
    """
    if backbone not in PLUS_BACKBONES:
        raise ArgumentError(f"DeepLab v3+ is built on {' or '.join(PLUS_BACKBONES)}. Received: backbone={backbone!r}")
    return _build("deeplabv3plus", backbone, deeplab_head(num_classes, dropout, decoder=True), num_classes, weights,
                  output_stride, Variant(width))  # fmt: skip
