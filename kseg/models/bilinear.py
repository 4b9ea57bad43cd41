"""Bilinear interpolation kernels for Conv2DTranspose upsampling layers.

FCN initialises every upsampling ("deconvolution") layer to bilinear interpolation: a
kernel of size k = 2 x stride with factor f = (k + 1) // 2 and centre c = f - 1 (odd k) or
f - 0.5 (even k), whose weight at (i, j) is (1 - |i - c| / f) * (1 - |j - c| / f). The
kernel is placed only on the class-to-class diagonal, so class c upsamples into class c.
With "same" padding this equals half-pixel-centred bilinear resizing away from the border.
"""

import keras
import numpy as np


def bilinear_kernel_2d(size):
    """Returns the (size, size) bilinear interpolation kernel as a float32 array.

    Args:
        size: int. Kernel height and width; 2 x stride for an upsampling layer.
    """
    if int(size) != size or size < 1:
        raise ValueError(f"`size` must be a positive integer. Received: size={size}")
    size = int(size)
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1.0 - np.abs(np.arange(size) - centre) / factor
    return np.outer(ramp, ramp).astype("float32")


@keras.saving.register_keras_serializable(package="kseg")
class BilinearUpsampling(keras.initializers.Initializer):
    """Initializer for a Conv2DTranspose kernel that performs bilinear upsampling.

    The kernel shape is (k, k, out_channels, in_channels), as Keras' Conv2DTranspose
    stores it. Channel i maps to channel i; off-diagonal entries are zero, so the number
    of input and output channels must be equal.
    """

    def __call__(self, shape, dtype=None):
        if len(shape) != 4 or shape[0] != shape[1] or shape[2] != shape[3]:
            raise ValueError(
                "BilinearUpsampling needs a square kernel with as many output as input "
                f"channels, shaped (k, k, c, c). Received: shape={tuple(shape)}"
            )
        size, channels = shape[0], shape[2]
        kernel = np.zeros(shape, dtype="float32")
        diagonal = np.arange(channels)
        kernel[:, :, diagonal, diagonal] = bilinear_kernel_2d(size)[:, :, None]
        return keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {}
