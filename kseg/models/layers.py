"""Layers that let an FCN take raw images of any size and return logits of that size.

The model owns its preprocessing: callers pass RGB images (uint8 or float in [0, 255]) and
never need to know the channel order or the mean that VGG16 was trained with.
"""

import keras
from keras import ops

# Keras' VGG16 was trained on BGR images with these per-channel means subtracted.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


def rgb_to_bgr(images):
    """Reverses the channel order of `images` (..., 3) by concatenating its three slices.

    Not `ops.flip`: in a full-integer TFLite export, the REVERSE_V2 it becomes gives
    values tens of grey levels off (the quantization debugger measured a mean error of
    -62 and up to 117 on 0-255 images), which cost trained FCN-8s models 5 (synthetic
    shapes) and 23 (CamVid) mIoU points. A concatenation requantizes its inputs
    correctly, and in float it is the same permutation.
    """
    return ops.concatenate([images[..., 2:3], images[..., 1:2], images[..., 0:1]], axis=-1)


def _resized(input_shape, size):
    """`input_shape` (batch, h, w, channels) with `size` applied to each known h and w."""
    height, width = (None if length is None else size(length) for length in input_shape[1:3])
    return (input_shape[0], height, width, input_shape[3])


class _SizedLikeReference(keras.layers.Layer):
    """A layer on `[tensor, reference]` whose output has the batch and channels of `tensor`
    and the height and width of `reference`."""

    def compute_output_shape(self, input_shapes):
        tensor_shape, reference_shape = input_shapes
        return (tensor_shape[0], reference_shape[1], reference_shape[2], tensor_shape[3])


class _BGRMinusMean(keras.layers.Layer):
    """RGB [0, 255] (uint8 or float) -> BGR minus the per-channel `MEAN`.

    Computed in float32 whatever the global dtype policy; the next layer casts.
    """

    MEAN = (0.0, 0.0, 0.0)

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, images):
        bgr = rgb_to_bgr(ops.cast(images, "float32"))
        return bgr - ops.convert_to_tensor(self.MEAN, dtype="float32")

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="kseg")
class VGGPreprocessing(_BGRMinusMean):
    """RGB [0, 255] -> BGR with the ImageNet mean subtracted (keras' "caffe" mode)."""

    MEAN = IMAGENET_BGR_MEAN


@keras.saving.register_keras_serializable(package="kseg")
class PadToMultiple(keras.layers.Layer):
    """Pads height and width at the bottom and right up to a multiple of `multiple`.

    After VGG preprocessing a zero pad is the ImageNet mean colour.

    Args:
        multiple: int. Height and width are padded up to a multiple of this.
    """

    def __init__(self, multiple=32, **kwargs):
        if int(multiple) != multiple or multiple < 1:
            raise ValueError(f"`multiple` must be a positive integer. Received: multiple={multiple}")
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, images):
        # Written for converters too: remainders of non-negative numbers only (tf2onnx
        # turns floor-mod into a truncating one), and a reshape that restores the static
        # channel count a dynamic pad loses (TFLite needs it for its own conv kernels).
        shape = ops.shape(images)
        pad_h = (self.multiple - shape[1] % self.multiple) % self.multiple
        pad_w = (self.multiple - shape[2] % self.multiple) % self.multiple
        padded = ops.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        return ops.reshape(padded, (shape[0], shape[1] + pad_h, shape[2] + pad_w, images.shape[-1]))

    def compute_output_shape(self, input_shape):
        return _resized(input_shape, lambda size: -(-size // self.multiple) * self.multiple)

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="kseg")
class CropToReference(_SizedLikeReference):
    """Crops `inputs[0]` at the top left to the height and width of `inputs[1]`.

    Used last in every FCN, with dtype float32, so logits come out float32 and exactly as
    large as the input image even under a mixed-precision policy.
    """

    offset = 0  # the first row and column kept (`CaffeCrop` sets it)

    def call(self, inputs):
        tensor, reference = inputs
        shape = ops.shape(reference)
        top = self.offset
        return tensor[:, top : top + shape[1], top : top + shape[2], :]


def padded_model(name, body, multiple, preprocessing=None, crop=True):
    """The frame of every kseg network but the Caffe-exact FCNs: RGB images of any size ->
    `preprocessing` (default: `VGGPreprocessing`) -> zero padding to a multiple of
    `multiple` -> `body` -> with `crop`, its top-left H x W as float32 `logits`.

    Padded to a multiple of the coarsest stride, every feature map is exactly 1/stride of
    the padded image, and fixed-factor upsampling gives back the padded size.
    """
    images = keras.Input(shape=(None, None, 3), name="images")
    x = (preprocessing or VGGPreprocessing(name="preprocess"))(images)
    x = body(PadToMultiple(multiple, name="pad")(x))
    if crop:
        x = CropToReference(dtype="float32", name="logits")([x, images])
    return keras.Model(images, x, name=name)


@keras.saving.register_keras_serializable(package="kseg")
class Im2ColConv2D(keras.layers.Conv2D):
    """A Conv2D computed as one matrix multiply over gathered patches (im2col).

    Same kernel, weights and results as Conv2D. Meant for fc6, VGG16's fc1 as a 7x7
    convolution from 512 to 4096 channels on a small map: there the generic convolution
    kernels reach well under the machine's matrix-multiply rate, and one large matmul
    reaches it. The patches are gathered with pad + slices + concatenate, which every
    backend and converter (TFLite, ONNX) supports, in the kernel's (row, column, channel)
    order. Strided, dilated or grouped convolutions fall back to Conv2D's own op.
    """

    def convolution_op(self, inputs, kernel):
        kernel_h, kernel_w, channels, filters = kernel.shape
        plain = self.strides == (1, 1) and self.dilation_rate == (1, 1) and self.groups == 1
        if not plain or self.data_format != "channels_last" or (kernel_h, kernel_w) == (1, 1):
            return super().convolution_op(inputs, kernel)
        shape = ops.shape(inputs)
        if self.padding == "same":
            top, left = (kernel_h - 1) // 2, (kernel_w - 1) // 2
            padded = ops.pad(
                inputs, [[0, 0], [top, kernel_h - 1 - top], [left, kernel_w - 1 - left], [0, 0]]
            )
            out_h, out_w = shape[1], shape[2]
        else:
            padded = inputs
            out_h, out_w = shape[1] - kernel_h + 1, shape[2] - kernel_w + 1
        patches = ops.concatenate(
            [
                padded[:, row : row + out_h, column : column + out_w, :]
                for row in range(kernel_h)
                for column in range(kernel_w)
            ],
            axis=-1,
        )
        outputs = ops.matmul(
            ops.reshape(patches, (-1, kernel_h * kernel_w * channels)),
            ops.reshape(kernel, (kernel_h * kernel_w * channels, filters)),
        )
        return ops.reshape(outputs, (shape[0], out_h, out_w, filters))


# -- SegNet's pooling indices, as a mask (kseg.models.segnet) ---------------------------


def resize_by(x, factor, method):
    """`x` (batch, h, w, channels) resized to (batch, factor h, factor w, channels) by
    `method` ("bilinear" or "nearest"; a nearest-neighbour x2 copies every pixel into a
    2x2 block, exactly, whatever the pixel-centre convention).

    Under TensorFlow it is TensorFlow's own resize: keras' checks the size in Python, so it
    cannot be traced with an unknown height and width, which a SavedModel or TFLite export
    of any input size needs; TensorFlow's converts to TFLite's RESIZE_BILINEAR and
    RESIZE_NEAREST_NEIGHBOR.
    """
    shape = ops.shape(x)
    size = (shape[1] * factor, shape[2] * factor)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return ops.cast(tf.image.resize(x, tf.stack(size), method=method), x.dtype)
    return ops.image.resize(x, size, interpolation=method)


# Priorities of the four positions of a 2x2 pooling window, first in row-major order
# highest: where several positions hold the maximum, the first one is the arg-max, as in
# TensorFlow's MaxPoolWithArgmax and NumPy's argmax.
_WINDOW_PRIORITY = ((4.0, 3.0), (2.0, 1.0))


@keras.saving.register_keras_serializable(package="kseg")
class MaxPoolingMask(keras.layers.Layer):
    """Where the maxima of a 2x2, stride-2 max pooling came from: `[x, pooled]` -> a 0/1
    map of `x`'s size with exactly one 1 per window, at the window's arg-max (the first
    maximum in row-major order when several positions tie).

    SegNet stores the arg-max indices of each encoder pooling and its decoder puts
    values back at them (`MaxUnpooling`). The indices are held as this mask, computed from
    max pooling, nearest-neighbour x2 resizes, comparisons and products only, so it runs on
    every keras backend and converts to SavedModel, ONNX and TFLite builtins (TFLite has no
    MaxPoolWithArgmax or unpooling op):

        hit   = x == up(pooled)                     (the positions holding the maximum)
        score = hit * priority                      (4, 3, 2, 1 within each window)
        mask  = score == up(maxpool(score))         (the first hit of each window)

    Height and width of `x` must be even (kseg's models pad to a multiple of 32).
    """

    def call(self, inputs):
        x, pooled = inputs
        shape = ops.shape(x)
        priority = ops.tile(ops.convert_to_tensor(_WINDOW_PRIORITY, dtype=x.dtype),
                            (shape[1] // 2, shape[2] // 2))  # fmt: skip
        priority = ops.expand_dims(ops.expand_dims(priority, 0), -1)
        hit = ops.cast(ops.equal(x, resize_by(pooled, 2, "nearest")), x.dtype)
        score = hit * priority
        best = resize_by(ops.max_pool(score, 2, 2, padding="valid"), 2, "nearest")
        # `best` is at least 1 (every window holds its maximum), so a position without a
        # hit (score 0) is never chosen.
        return ops.cast(ops.equal(score, best), x.dtype)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


@keras.saving.register_keras_serializable(package="kseg")
class MaxUnpooling(_SizedLikeReference):
    """SegNet's unpooling: `[y, mask]` -> `y` (batch, h, w, c) placed at the 1s of `mask`
    (batch, 2h, 2w, c, from `MaxPoolingMask`), zeros elsewhere."""

    def call(self, inputs):
        values, mask = inputs
        return resize_by(values, 2, "nearest") * ops.cast(mask, values.dtype)


# -- The Caffe-exact FCNs' layers (kseg.models.caffe_fcn) -------------------------------

# The per-channel BGR mean the released FCNs subtract (their solve/infer scripts).
CAFFE_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)


@keras.saving.register_keras_serializable(package="kseg")
class CaffeFCNPreprocessing(_BGRMinusMean):
    """uint8 (or float [0, 255]) RGB -> float32 BGR minus `CAFFE_BGR_MEAN`."""

    MEAN = CAFFE_BGR_MEAN


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
        return _resized(input_shape, lambda size: size + 1)


@keras.saving.register_keras_serializable(package="kseg")
class CaffeCrop(CropToReference):
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


# -- Heads' layers (kseg.models.heads) ----------------------------------------------------


@keras.saving.register_keras_serializable(package="kseg")
class BroadcastToReference(_SizedLikeReference):
    """Repeats a (batch, 1, 1, channels) map over the height and width of `inputs[1]`.

    ASPP's image-pooling branch: bilinear upsampling of a 1x1 map is this repetition.
    """

    def call(self, inputs):
        pooled, reference = inputs
        shape = ops.shape(reference)
        return ops.broadcast_to(pooled, (shape[0], shape[1], shape[2], pooled.shape[-1]))


@keras.saving.register_keras_serializable(package="kseg")
class BilinearUpsample(keras.layers.Layer):
    """Bilinear upsampling by an integer `factor` (half-pixel centres, as
    `keras.ops.image.resize` and torchvision's `interpolate(align_corners=False)`).

    Unlike keras' UpSampling2D(interpolation="bilinear") it traces with unknown height and
    width (see `resize_by`).

    Args:
        factor: int. Height and width are multiplied by this.
    """

    def __init__(self, factor=2, **kwargs):
        if int(factor) != factor or factor < 1:
            raise ValueError(f"`factor` must be a positive integer. Received: factor={factor}")
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, inputs):
        return resize_by(inputs, self.factor, "bilinear")

    def compute_output_shape(self, input_shape):
        return _resized(input_shape, lambda size: size * self.factor)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
