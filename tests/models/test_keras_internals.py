"""kseg.models.keras_internals: the keras version check that guards keras' private parts."""

import keras
import numpy as np
import pytest

from kseg.errors import KsegError
from kseg.models import keras_internals


def test_the_installed_keras_is_the_tested_one():
    assert keras.__version__.startswith(keras_internals.TESTED_KERAS + ".")
    keras_internals.check_keras_version()


def test_an_untested_keras_is_refused_in_one_line_with_the_ways_out(monkeypatch):
    monkeypatch.delenv(keras_internals.ESCAPE_VARIABLE, raising=False)
    with pytest.raises(KsegError) as error:
        keras_internals.check_keras_version("3.20.0")
    message = str(error.value)
    assert "\n" not in message
    assert f"tested with keras {keras_internals.TESTED_KERAS}; found 3.20.0" in message
    assert "pip install" in message and f"{keras_internals.ESCAPE_VARIABLE}=1" in message


def test_the_escape_variable_allows_an_untested_keras(monkeypatch):
    monkeypatch.setenv(keras_internals.ESCAPE_VARIABLE, "1")
    keras_internals.check_keras_version.cache_clear()
    keras_internals.check_keras_version("3.99.0")
    keras_internals.check_keras_version.cache_clear()


def test_a_build_that_fails_leaves_no_pending_variables():
    def failing():
        keras.layers.Dense(3).build((None, 2))
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError):
        keras_internals.build_unallocated(failing)
    assert not keras_internals.pending_variables()


def test_an_unallocated_variable_is_created_from_its_first_assign():
    layer = keras_internals.build_unallocated(lambda: _built(keras.layers.Dense(2)))
    try:
        assert not any(keras_internals.is_allocated(v) for v in layer.weights)
        with keras_internals.allocate_on_assign(layer.weights):
            layer.kernel.assign(keras.ops.ones((3, 2)))
            with pytest.raises(ValueError, match="has shape \\(2, 1\\); the model expects \\(2,\\)"):
                layer.bias.assign(np.ones((2, 1), "float32"))
        keras_internals.allocate_initial(layer.bias)
    finally:
        keras_internals.forget_pending(layer.weights)
    assert keras.ops.convert_to_numpy(layer.kernel).sum() == 6
    assert keras.ops.convert_to_numpy(layer.bias).tolist() == [0, 0]
    assert not keras_internals.pending_variables()


def _built(layer):
    layer.build((None, 3))
    return layer


def bias_gradient(layer, inputs, projection):
    from kseg.training.precision_check import _output_and_gradients

    return _output_and_gradients(layer, inputs, projection)[3]


def test_a_bias_gradient_under_mixed_bfloat16_is_summed_in_float32():
    """On a CamVid-sized batch keras' bf16 bias made TensorFlow's bias gradient 46% off
    (summed in bfloat16); read in float32 it is the float32 sum."""
    from kseg.models.keras_internals import read_biases_in_float32
    from kseg.training.distribution import dtype_policy

    rng = np.random.default_rng(0)
    inputs = np.abs(rng.standard_normal((2, 180, 240, 4))).astype("float32")
    projection = rng.standard_normal((2, 180, 240, 3)).astype("float32")
    exact = projection.astype(np.float64).sum(axis=(0, 1, 2))
    with dtype_policy("mixed_bfloat16"):
        layer = keras.layers.Conv2D(3, 1)
        layer.build(inputs.shape)
    assert read_biases_in_float32(layer) == 1
    gradient = bias_gradient(layer, inputs, projection)
    assert np.linalg.norm(gradient - exact) <= 0.01 * np.linalg.norm(exact)
    assert layer.kernel._autocast  # only biases change


def test_a_model_built_for_training_under_a_mixed_policy_reads_its_biases_in_float32(tmp_path):
    from kseg.config import TrainConfig
    from kseg.training.build import build_model
    from kseg.training.distribution import dtype_policy

    config = TrainConfig(model="fcn8s", data="synthetic", weights="none", width=0.0625)
    with dtype_policy("mixed_bfloat16"):
        model = build_model(config, 3)
    biases = [variable for variable in model.trainable_variables if variable.name == "bias"]
    assert biases and not any(variable._autocast for variable in biases)
    with dtype_policy("float32"):
        model = build_model(config, 3)
    assert all(variable._autocast for variable in model.trainable_variables)
