"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015), and U-Net decoders on
keras.applications encoders (ResNet50, MobileNetV3Large).

U-Net:

    RGB image (any H x W) -> BGR minus the ImageNet mean -> pad to a multiple of 16
      -> down1..down4: two 3x3 convolutions (64, 128, 256, 512 channels) + ReLU
         (+ BN before it in the batch-norm variant), then a 2x2 max pooling
      -> bottleneck: two 3x3 convolutions (1024)
      -> up4..up1: x2 upsampling (a 2x2 stride-2 transposed convolution halving the
         channels, as in the paper, or bilinear), concatenated with down{i}'s output
         (the skip), two 3x3 convolutions (512, 256, 128, 64)
      -> classifier (1x1)
    -> crop to H x W -> float32 logits

'same' padding (the paper crops 'valid' convolutions and predicts a smaller centre):
every map is exactly 1/stride of the padded image, so the skips need no cropping.
There are no ImageNet U-Net weights: U-Net trains from random weights, with He
initialisation; the batch-norm variant (`unet_bn`) is the one that trains reliably from
them at high learning rates.

U-Net on an encoder (`unet_resnet50`, `unet_mobilenetv3large`): the backbone's maps at
strides 32, 16, 8, 4, 2 (`kseg.models.backbones.BACKBONES` taps) feed a decoder of five
stages: bilinear x2, concatenation with the tap of that stride (none at stride 1), two
3x3 conv + BN + ReLU (256, 128, 64, 32, 16 channels); then the classifier. The encoder
loads keras' ImageNet weights; the decoder starts random.
"""

from keras import layers

from kseg.errors import ArgumentError
from kseg.models.arguments import check_num_classes, check_random_weights, check_width
from kseg.models.backbones import Variant, build_on_backbone
from kseg.models.heads import conv_bn_relu
from kseg.models.layers import BilinearUpsample, padded_model
from kseg.models.vgg16 import conv_stack, he_initializer, scaled

INPUT_MULTIPLE = 16  # four 2x2 poolings
UNET_CHANNELS = (64, 128, 256, 512)
BOTTLENECK_CHANNELS = 1024
UPSAMPLINGS = ("transpose", "bilinear")
# Channels of the five decoder stages of an encoder U-Net (strides 16, 8, 4, 2, 1).
DECODER_CHANNELS = (256, 128, 64, 32, 16)


def build_unet(num_classes=21, weights=None, width=1.0, batch_norm=False, upsampling="transpose", name="unet"):
    """U-Net: 4 down and 4 up stages with concatenated skips, from random weights.

    Args:
        num_classes: int. Number of classes scored per pixel.
        weights: None. There are no pretrained weights; anything else is refused.
        width: float. Multiplier on every channel count (64 ... 1024 at 1).
        batch_norm: bool. Batch normalisation after every convolution.
        upsampling: str. "transpose" (2x2 stride-2 transposed convolution halving the
            channels, as in the paper) or "bilinear" (fixed).
        name: str. The model's name.
    """
    check_num_classes(num_classes)
    check_random_weights("U-Net", weights)
    check_width(width)
    if upsampling not in UPSAMPLINGS:
        raise ArgumentError(f"`upsampling` must be one of {UPSAMPLINGS}. Received: upsampling={upsampling!r}")

    def scores(x):
        skips = []
        for stage, channels in enumerate(UNET_CHANNELS, start=1):
            x = conv_stack(x, 2, scaled(channels, width), f"down{stage}", batch_norm, first=stage == 1)
            skips.append(x)
            x = layers.MaxPooling2D(2, strides=2, name=f"down{stage}_pool")(x)
        x = conv_stack(x, 2, scaled(BOTTLENECK_CHANNELS, width), "bottleneck", batch_norm)
        for stage in range(len(UNET_CHANNELS), 0, -1):
            channels = scaled(UNET_CHANNELS[stage - 1], width)
            if upsampling == "transpose":
                x = layers.Conv2DTranspose(channels, 2, strides=2, name=f"up{stage}_upsample",
                                           kernel_initializer=he_initializer())(x)  # fmt: skip
            else:
                x = BilinearUpsample(2, name=f"up{stage}_upsample")(x)
            x = layers.Concatenate(name=f"up{stage}_concat")([skips[stage - 1], x])
            x = conv_stack(x, 2, channels, f"up{stage}", batch_norm)
        return layers.Conv2D(num_classes, 1, name="classifier")(x)

    return padded_model(name, scores, INPUT_MULTIPLE)


def unet_decoder_head(num_classes, channels=DECODER_CHANNELS):
    """A U-Net decoder over a backbone's maps at strides 32, 16, 8, 4, 2."""

    def head(features, output_stride):
        x = features[32]
        for stage, stage_channels in enumerate(channels):
            stride = 16 // 2**stage
            x = BilinearUpsample(2, name=f"decoder{stride}_upsample")(x)
            if stride in features:
                x = layers.Concatenate(name=f"decoder{stride}_concat")([x, features[stride]])
            for index in (1, 2):
                x = conv_bn_relu(x, stage_channels, 3, f"decoder{stride}_{index}")
        return layers.Conv2D(num_classes, 1, name="classifier")(x)

    return head


def build_backbone_unet(backbone, num_classes=21, weights="imagenet", width=1.0):
    """A U-Net decoder on `backbone` ("resnet50" or "mobilenetv3large").

    Args:
        backbone: str. "resnet50" or "mobilenetv3large" (the backbones with taps at
            strides 2 and 4).
        num_classes: int. Number of classes scored per pixel.
        weights: str or None. "imagenet" (keras' download and cache), None (random), or a
            path to a keras weights file of the backbone (include_top=False).
        width: float. MobileNetV3's alpha (ImageNet weights exist for 0.75 and 1).
    """
    if backbone not in ("resnet50", "mobilenetv3large"):
        raise ArgumentError(f"U-Net is built on resnet50 or mobilenetv3large. Received: backbone={backbone!r}")
    return build_on_backbone(backbone, unet_decoder_head(num_classes), num_classes, weights, 32,
                             f"unet_{backbone}", Variant(width))  # fmt: skip
