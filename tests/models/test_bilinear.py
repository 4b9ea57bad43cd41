import keras
import numpy as np
import pytest

from kseg.models.bilinear import BilinearUpsampling, bilinear_kernel_2d


def numpy_bilinear_upsample(image, factor):
    """Half-pixel-centred bilinear resize of a 2-D array by an integer factor."""
    height, width = image.shape
    def coordinates(size):
        x = (np.arange(size * factor) + 0.5) / factor - 0.5
        low = np.clip(np.floor(x).astype(int), 0, size - 1)
        high = np.clip(low + 1, 0, size - 1)
        return low, high, x - np.floor(x)
    y0, y1, fy = coordinates(height)
    x0, x1, fx = coordinates(width)
    rows = image[y0] * (1 - fy)[:, None] + image[y1] * fy[:, None]
    return rows[:, x0] * (1 - fx)[None, :] + rows[:, x1] * fx[None, :]


def test_kernel_follows_the_fcn_formula():
    # size 4: factor 2, centre 1.5 -> ramp 0.25, 0.75, 0.75, 0.25
    np.testing.assert_allclose(bilinear_kernel_2d(4)[0], [0.0625, 0.1875, 0.1875, 0.0625])
    # size 3 (odd): factor 2, centre 1 -> ramp 0.5, 1, 0.5
    np.testing.assert_allclose(bilinear_kernel_2d(3)[1], [0.5, 1.0, 0.5])
    # an even kernel of stride s sums to s^2 (each output gets weights summing to 1)
    assert bilinear_kernel_2d(64).sum() == pytest.approx(32**2)


def test_initializer_fills_only_the_class_diagonal():
    kernel = np.array(BilinearUpsampling()((4, 4, 3, 3)))
    for i in range(3):
        np.testing.assert_array_equal(kernel[:, :, i, i], bilinear_kernel_2d(4))
    kernel[:, :, np.arange(3), np.arange(3)] = 0
    assert not kernel.any()


def test_initializer_rejects_non_square_shapes():
    with pytest.raises(ValueError, match="Received: shape"):
        BilinearUpsampling()((4, 4, 3, 5))


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_transposed_convolution_equals_numpy_bilinear_on_a_ramp(factor):
    height, width, channels = 6, 9, 2
    y, x = np.mgrid[0:height, 0:width].astype("float32")
    ramp = np.stack([0.7 * y + 0.3 * x, 2.0 - 0.2 * x + 0.5 * y], axis=-1)[None]
    layer = keras.layers.Conv2DTranspose(
        channels, 2 * factor, strides=factor, padding="same", use_bias=False,
        kernel_initializer=BilinearUpsampling(),
    )
    upsampled = np.asarray(layer(ramp))[0]
    assert upsampled.shape == (height * factor, width * factor, channels)
    margin = factor  # the outermost input pixel's half-kernel reaches past the border
    for c in range(channels):
        expected = numpy_bilinear_upsample(ramp[0, :, :, c], factor)
        np.testing.assert_allclose(
            upsampled[margin:-margin, margin:-margin, c],
            expected[margin:-margin, margin:-margin],
            atol=1e-5,
        )


def test_initializer_serializes():
    config = keras.initializers.serialize(BilinearUpsampling())
    assert isinstance(keras.initializers.deserialize(config), BilinearUpsampling)
