"""FCN-32s/16s/8s exactly as the authors' released Caffe nets compute them.

The released models (fcn.berkeleyvision.org: voc-fcn32s, voc-fcn16s, voc-fcn8s and
voc-fcn8s-atonce) differ from kseg's own FCNs in ways that change their outputs, so
their weights need this variant to give the logits they were trained to give:

    uint8 RGB (any H x W) -> BGR float minus the Caffe mean (inside the model)
      -> conv1_1 padded by 100 on every side, 3x3 convolutions padded by 1, each + ReLU
      -> 2x2 / 2 max pooling rounded up (Caffe's ceil mode)
      -> fc6 (7x7 VALID, 4096) + ReLU + dropout -> fc7 (1x1, 4096) + ReLU + dropout
      -> score_fr (1x1, classes)
      32s: upscore (64/32 deconvolution)                                       -> crop 19
      16s: upscore2 (4/2) + score_pool4 cropped at 5 -> upscore16 (32/16)       -> crop 27
      8s:  ... + upscore_pool4 (4/2) + score_pool3 cropped at 9 -> upscore8 (16/8) -> crop 31
      at-once 8s: pool4 x 0.01 and pool3 x 0.0001 before their score layers

Caffe's Deconvolution (no padding) gives (in - 1) * stride + kernel, as
Conv2DTranspose(padding="valid") does, and Caffe's Crop takes [offset : offset + size] of
the reference. Layer names are the Caffe layer names, which the converters in
`kseg.conversion` match blobs against.
"""

import keras
from keras import layers, ops

from kseg.errors import KsegError
from kseg.models.arguments import check_dropout, check_num_classes, check_width
from kseg.models.layers import rgb_to_bgr

# The per-channel BGR mean the released FCNs subtract (their solve/infer scripts).
CAFFE_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)

VGG_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
FC_CHANNELS = 4096

# variant -> (output stride, final upsampling layer, its kernel, its stride, final crop)
VARIANTS = {
    "fcn32s": (32, "upscore", 64, 32, 19),
    "fcn16s": (16, "upscore16", 32, 16, 27),
    "fcn8s": (8, "upscore8", 16, 8, 31),
    "fcn8s_atonce": (8, "upscore8", 16, 8, 31),
}
SKIP_CROPS = {"score_pool4": 5, "score_pool3": 9}
ATONCE_SCALES = {"pool4": 0.01, "pool3": 0.0001}


@keras.saving.register_keras_serializable(package="kseg")
class CaffeFCNPreprocessing(keras.layers.Layer):
    """uint8 (or float [0, 255]) RGB -> float32 BGR minus `CAFFE_BGR_MEAN`."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, images):
        bgr = rgb_to_bgr(ops.cast(images, "float32"))
        return bgr - ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype="float32")

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="kseg")
class CeilPoolPadding(keras.layers.Layer):
    """Pads one row and one column of -inf at the bottom and right.

    Followed by a 2x2 / 2 VALID max pooling this gives Caffe's rounded-up pooling,
    ceil((n - 2) / 2) + 1 rows: an odd size gets its last row pooled alone, an even size
    gets nothing extra (the padded row falls outside the last window).
    """

    def call(self, x):
        return ops.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]], constant_values=float("-inf"))

    def compute_output_shape(self, input_shape):
        def grow(size):
            return None if size is None else size + 1

        return (input_shape[0], grow(input_shape[1]), grow(input_shape[2]), input_shape[3])


@keras.saving.register_keras_serializable(package="kseg")
class CaffeCrop(keras.layers.Layer):
    """Caffe's Crop layer on height and width: `inputs[0][offset : offset + size]`, with
    the size of `inputs[1]`.

    Args:
        offset: int. The first row and column kept.
    """

    def __init__(self, offset=0, **kwargs):
        if int(offset) != offset or offset < 0:
            raise ValueError(f"`offset` must be a whole number >= 0. Received: offset={offset}")
        super().__init__(**kwargs)
        self.offset = int(offset)

    def call(self, inputs):
        tensor, reference = inputs
        shape = ops.shape(reference)
        top = self.offset
        return tensor[:, top : top + shape[1], top : top + shape[2], :]

    def compute_output_shape(self, input_shapes):
        tensor_shape, reference_shape = input_shapes
        return (tensor_shape[0], reference_shape[1], reference_shape[2], tensor_shape[3])

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}


@keras.saving.register_keras_serializable(package="kseg")
class ConstantScale(keras.layers.Layer):
    """Multiplies by a fixed number (the at-once FCN-8s' Scale layers, never learned).

    Args:
        scale: float.
    """

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, x):
        return x * ops.cast(self.scale, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def scaled(channels, width):
    return max(1, int(round(channels * width)))


def caffe_fcn(variant, num_classes=21, weights=None, width=1.0, dropout=0.5, name=None,
              learn_upsampling=False):
    """Builds a Caffe-exact FCN (random weights; `kseg.conversion` fills them in).

    Args:
        variant: str. "fcn32s", "fcn16s", "fcn8s" or "fcn8s_atonce".
        num_classes: int. Classes scored per pixel (21 for the released VOC models).
        weights: None, or a `.keras` file / model whose layers of matching name and shape
            are copied in.
        width: float. Multiplier on the channel counts (below 1: small models for tests).
        dropout: float. Dropout rate after fc6 and fc7 (inactive at inference).
        name: str or None. Model name; defaults to "<variant>_caffe".
        learn_upsampling: bool. Whether the final upsampling layer is trained (when
            fine-tuning); the x2 upsampling layers always are.
    """
    _check_weights(weights)
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {', '.join(VARIANTS)}. Received: variant={variant!r}")
    check_num_classes(num_classes)
    check_width(width)
    check_dropout(dropout)
    stride, final, kernel, final_stride, final_crop = VARIANTS[variant]

    images = keras.Input(shape=(None, None, 3), name="images")
    x = CaffeFCNPreprocessing(name="preprocess")(images)
    x = layers.ZeroPadding2D(100, name="conv1_1_pad")(x)
    pools = {}
    for block, (channels, convs) in enumerate(VGG_BLOCKS, start=1):
        for index in range(1, convs + 1):
            padding = "valid" if (block, index) == (1, 1) else "same"  # conv1_1: the 100 above
            x = layers.Conv2D(scaled(channels, width), 3, padding=padding, activation="relu",
                              name=f"conv{block}_{index}")(x)
        x = CeilPoolPadding(name=f"pool{block}_pad")(x)
        x = layers.MaxPooling2D(2, strides=2, padding="valid", name=f"pool{block}")(x)
        pools[f"pool{block}"] = x
    x = layers.Conv2D(scaled(FC_CHANNELS, width), 7, padding="valid", activation="relu",
                      name="fc6")(x)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = layers.Conv2D(scaled(FC_CHANNELS, width), 1, activation="relu", name="fc7")(x)
    x = layers.Dropout(dropout, name="drop7")(x)
    x = layers.Conv2D(num_classes, 1, name="score_fr")(x)

    def upscore(tensor, layer_name, size, step, trainable=True):
        return layers.Conv2DTranspose(num_classes, size, strides=step, padding="valid",
                                      use_bias=False, trainable=trainable, name=layer_name)(tensor)

    def skip(tensor, pool):
        source = pools[pool]
        if variant == "fcn8s_atonce":
            source = ConstantScale(ATONCE_SCALES[pool], name=f"scale_{pool}")(source)
        scores = layers.Conv2D(num_classes, 1, name=f"score_{pool}")(source)
        cropped = CaffeCrop(SKIP_CROPS[f"score_{pool}"], name=f"score_{pool}c")([scores, tensor])
        return layers.Add(name=f"fuse_{pool}")([tensor, cropped])

    if stride <= 16:
        x = skip(upscore(x, "upscore2", 4, 2), "pool4")
    if stride == 8:
        x = skip(upscore(x, "upscore_pool4", 4, 2), "pool3")
    x = upscore(x, final, kernel, final_stride, trainable=learn_upsampling)
    logits = CaffeCrop(final_crop, dtype="float32", name="score")([x, images])
    model = keras.Model(images, logits, name=name or f"{variant}_caffe")
    if weights is not None:
        from kseg.models.transfer import transfer_weights

        transfer_weights(weights, model)
    return model


def _check_weights(weights):
    if weights == "imagenet":
        raise KsegError("the Caffe FCNs take their weights from a released model: convert one "
                        "with `kseg weights convert FILE --out MODEL.keras`")
