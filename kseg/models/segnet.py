"""SegNet (Badrinarayanan, Kendall & Cipolla, TPAMI 2017) on VGG16 with batch norm.

    RGB image (any H x W) -> BGR minus the ImageNet mean -> pad to a multiple of 32
      -> encoder: VGG16-BN's 13 convolutions (conv + BN + ReLU) in 5 blocks; each block
         ends in a 2x2 max pooling that keeps where its maxima were (block{b}_pool_mask)
      -> decoder, block 5 down to 1: unpool with that block's indices (decoder{b}_unpool:
         each value goes back to where its maximum came from, zeros elsewhere), then as
         many convolutions as the encoder block (conv + BN + ReLU; the last one narrows
         to the channels of the block before)
      -> classifier (1x1) at full resolution
    -> crop to H x W -> float32 logits

The decoder learns no upsampling: it reuses the encoder's pooling indices, so boundaries
come back where the encoder saw them. The indices are held as 0/1 masks
(`kseg.models.layers.MaxPoolingMask`), built from ops every backend and converter has
(TFLite has no arg-max pooling); unpooling equals index unpooling exactly, ties
included (the first maximum of a window in row-major order).

There are no ImageNet weights for VGG16-BN in keras: SegNet trains from random weights
(the paper initialises its encoder from ImageNet VGG16).
"""

from keras import layers

from kseg.models.arguments import check_num_classes, check_random_weights, check_width
from kseg.models.layers import MaxPoolingMask, MaxUnpooling, padded_model
from kseg.models.vgg16 import VGG16_BLOCKS, conv_relu, scaled, vgg16_trunk

INPUT_MULTIPLE = 32  # five 2x2 poolings


def build_segnet(num_classes=21, weights=None, width=1.0):
    """SegNet on VGG16-BN, from random weights.

    Args:
        num_classes: int. Number of classes scored per pixel.
        weights: None. There are no pretrained weights; anything else is refused.
        width: float. Multiplier on every channel count (below 1: small models for tests
            and demos).
    """
    check_num_classes(num_classes)
    check_random_weights("SegNet", weights)
    check_width(width)

    def scores(x):
        taps = vgg16_trunk(x, width, batch_norm=True)
        x = taps["block5_pool"]
        for position, (block, convs, channels) in reversed(list(enumerate(VGG16_BLOCKS))):
            narrowed = VGG16_BLOCKS[position - 1][2] if position else channels
            pooled = [taps[f"block{block}_conv{convs}"], taps[f"block{block}_pool"]]
            mask = MaxPoolingMask(name=f"block{block}_pool_mask")(pooled)
            x = MaxUnpooling(name=f"decoder{block}_unpool")([x, mask])
            for index in range(1, convs + 1):
                out = narrowed if index == convs else channels
                x = conv_relu(x, scaled(out, width), 3, f"decoder{block}_conv{index}", batch_norm=True)
        return layers.Conv2D(num_classes, 1, name="classifier")(x)

    return padded_model("segnet", scores, INPUT_MULTIPLE)
