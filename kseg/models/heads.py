"""Decoders on top of a backbone's feature maps: FCN skips, LR-ASPP and DeepLab v3's ASPP.

Each head takes the features {stride: tensor} of `kseg.models.backbones` and returns
class scores at the padded input size (the model crops them to the image size).

- FCN (Long et al. 2015): a zero-initialised 1x1 score layer on the last feature map and,
  for 16s and 8s, on the stride-16 and stride-8 taps; learned x2 upsamplings between
  them, a bilinear final upsampling (learned only with `learn_upsampling`).
- LR-ASPP (Howard et al. 2019, "Searching for MobileNetV3"; as torchvision builds it): on
  the stride-16 map, a 1x1 conv (128) + BN + ReLU gated by a sigmoid of its global average
  (1x1 conv, 128), upsampled x2, scored, plus a 1x1 score of the stride-8 map.
- DeepLab v3 (Chen et al. 2017): ASPP on the last map (1x1 branch, three 3x3 atrous
  branches, image pooling branch; 256 channels, BN, ReLU), a 1x1 projection and dropout,
  a 3x3 conv, a 1x1 classifier, bilinear upsampling by the output stride.
- DeepLab v3+ (Chen et al. 2018): the same ASPP, bilinear to stride 4, concatenated with
  a 48-channel 1x1 conv of the stride-4 features, two 3x3 convs, a classifier, x4.
"""

from keras import layers

from kseg.models.arguments import check_dropout
from kseg.models.bilinear import BilinearUpsampling
from kseg.models.layers import BilinearUpsample, BroadcastToReference

ASPP_CHANNELS = 256
LRASPP_CHANNELS = 128
# ASPP's atrous rates at each output stride: (6, 12, 18) at 16, doubled at 8 (DeepLab v3).
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
# DeepLab v3+'s decoder: the stride of the features it adds, and the channels it keeps of them.
LOW_LEVEL_STRIDE = 4
LOW_LEVEL_CHANNELS = 48


def conv_bn_relu(x, filters, kernel_size, name, dilation_rate=1):
    """Conv2D (no bias) -> BatchNormalization -> ReLU, named `name`_conv/_bn/_relu."""
    x = layers.Conv2D(filters, kernel_size, padding="same", dilation_rate=dilation_rate,
                      use_bias=False, name=f"{name}_conv")(x)  # fmt: skip
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def upsample(x, factor, name, trainable=True):
    """A Conv2DTranspose of kernel 2 x factor and stride `factor`, initialised bilinear."""
    return layers.Conv2DTranspose(
        x.shape[-1], 2 * factor, strides=factor, padding="same", use_bias=False,
        kernel_initializer=BilinearUpsampling(), trainable=trainable, name=name,
    )(x)  # fmt: skip


def score(x, num_classes, name):
    """A zero-initialised 1x1 convolution giving one score per class."""
    return layers.Conv2D(num_classes, 1, kernel_initializer="zeros", name=name)(x)


def fcn_head(num_classes, skips=32, learn_upsampling=False, names=("skip16", "skip8")):
    """The FCN skip head on a stride-32 map: `skips` is 32, 16 or 8 (FCN-32s, -16s, -8s).

    `names` name the layers of the stride-16 and stride-8 skips (`score_{name}`,
    `fuse_{name}`, and `upscore_{name}` after the stride-16 one): the VGG16 FCNs call them
    after the pooling layers they tap, "pool4" and "pool3".
    """
    if skips not in (8, 16, 32):
        raise ValueError(f"`skips` must be 8, 16 or 32. Received: skips={skips}")

    def head(features, output_stride):
        x = score(features[32], num_classes, "score_fr")
        upscore = "upscore2"
        for stride, name in zip((16, 8), names):
            if stride < skips:
                break
            x = upsample(x, 2, upscore)
            x = layers.Add(name=f"fuse_{name}")([x, score(features[stride], num_classes, f"score_{name}")])
            upscore = f"upscore_{name}"
        final = "upscore" if skips == 32 else f"upscore{skips}"
        return upsample(x, skips, final, trainable=learn_upsampling)

    return head


def lraspp_head(num_classes, channels=LRASPP_CHANNELS):
    """LR-ASPP on the stride-16 map (`features[32]` of a backbone dilated to 16) and the
    stride-8 tap."""

    def head(features, output_stride):
        high, low = features[32], features[8]
        x = conv_bn_relu(high, channels, 1, "lraspp_cbr")
        gate = layers.GlobalAveragePooling2D(keepdims=True, name="lraspp_scale_pool")(high)
        gate = layers.Conv2D(channels, 1, use_bias=False, name="lraspp_scale_conv")(gate)
        gate = layers.Activation("sigmoid", name="lraspp_scale_sigmoid")(gate)
        x = layers.Multiply(name="lraspp_gate")([x, gate])
        x = BilinearUpsample(output_stride // 8, name="lraspp_upsample")(x)
        x = layers.Add(name="lraspp_fuse")([
            layers.Conv2D(num_classes, 1, name="lraspp_low_classifier")(low),
            layers.Conv2D(num_classes, 1, name="lraspp_high_classifier")(x),
        ])  # fmt: skip
        return BilinearUpsample(8, name="upsample")(x)

    return head


def aspp(x, rates, dropout, channels=ASPP_CHANNELS):
    """Atrous spatial pyramid pooling: five parallel branches, concatenated and projected."""
    branches = [conv_bn_relu(x, channels, 1, "aspp_1x1")]
    for index, rate in enumerate(rates, start=1):
        branches.append(conv_bn_relu(x, channels, 3, f"aspp_atrous{index}", dilation_rate=rate))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(x)
    pooled = conv_bn_relu(pooled, channels, 1, "aspp_pool")
    branches.append(BroadcastToReference(name="aspp_pool_broadcast")([pooled, x]))
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = conv_bn_relu(x, channels, 1, "aspp_project")
    return layers.Dropout(dropout, name="aspp_dropout")(x)


def deeplab_head(num_classes, dropout, decoder=False, channels=ASPP_CHANNELS):
    """DeepLab v3's head: ASPP with the rates of the output stride, a 3x3 conv, a classifier,
    bilinear upsampling by the output stride. With `decoder`, DeepLab v3+'s: ASPP, then a
    decoder over the stride-4 features, a classifier, bilinear x4."""
    check_dropout(dropout)

    def head(features, output_stride):
        x = aspp(features[32], ASPP_RATES[output_stride], dropout, channels)
        if not decoder:
            x = conv_bn_relu(x, channels, 3, "head")
        else:
            x = BilinearUpsample(output_stride // LOW_LEVEL_STRIDE, name="decoder_upsample")(x)
            low = conv_bn_relu(features[LOW_LEVEL_STRIDE], LOW_LEVEL_CHANNELS, 1, "decoder_low")
            x = layers.Concatenate(name="decoder_concat")([x, low])
            x = conv_bn_relu(x, channels, 3, "decoder_1")
            x = conv_bn_relu(x, channels, 3, "decoder_2")
        x = layers.Conv2D(num_classes, 1, name="classifier")(x)
        return BilinearUpsample(LOW_LEVEL_STRIDE if decoder else output_stride, name="upsample")(x)

    return head
