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
"""

from kseg.models.backbones import build_on_backbone
from kseg.models.heads import deeplabv3_head

OUTPUT_STRIDES = (16, 8)


def deeplabv3_resnet50(num_classes=21, weights="imagenet", output_stride=16, dropout=0.5):
    """DeepLab v3 on ResNet50.

    Args:
        num_classes: int. Number of classes scored per pixel.
        weights: str or None. "imagenet" (keras' download and cache), None (random), or a
            path to a keras ResNet50 weights file (include_top=False).
        output_stride: int. 16 or 8: the stride of ASPP's input map.
        dropout: float. Dropout rate after ASPP's projection.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"`output_stride` must be 16 or 8. Received: output_stride={output_stride}")
    name = "deeplabv3_resnet50" + ("" if output_stride == 16 else f"_os{output_stride}")
    return build_on_backbone("resnet50", deeplabv3_head(num_classes, dropout), num_classes, weights,
                             output_stride, name)  # fmt: skip


def deeplabv3_resnet50_os8(num_classes=21, weights="imagenet", dropout=0.5):
    """DeepLab v3 on ResNet50 at output stride 8. See `deeplabv3_resnet50`."""
    return deeplabv3_resnet50(num_classes, weights, 8, dropout)
