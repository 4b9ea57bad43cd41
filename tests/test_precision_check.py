"""The precision check: a reduced precision that trains unlike float32 is caught before a run.

The broken precision path here is a layer that is the identity forward but reverses its
gradient whenever it computes in a reduced precision: the forward pass agrees with float32
exactly, as the demo's did on the CPU whose bf16 training diverged, and only training shows it.
"""

import logging
import os

import keras
import numpy as np
import pytest

from kseg.config import TrainConfig
from kseg.errors import KsegError
from kseg.models import registry
from kseg.training import precision_check
from kseg.training.precision_check import PrecisionCheck, compare_precisions


@keras.saving.register_keras_serializable(package="kseg_tests")
class ReversedGradientInReducedPrecision(keras.layers.Layer):
    """Identity; its gradient is negated when the layer computes in bfloat16 or float16."""

    def call(self, inputs):
        if self.compute_dtype == "float32":
            return inputs
        doubled = 2 * inputs
        return inputs + (keras.ops.stop_gradient(doubled) - doubled)


@keras.saving.register_keras_serializable(package="kseg_tests")
class ConvWithWrongReducedGradient(keras.layers.Conv2D):
    """A Conv2D whose gradients are negated when it computes in bfloat16 or float16, as a
    wrong backward kernel of one layer would make them."""

    def call(self, inputs):
        outputs = super().call(inputs)
        if self.compute_dtype == "float32":
            return outputs
        doubled = 2 * outputs
        return outputs + (keras.ops.stop_gradient(doubled) - doubled)


def net_with_one_wrong_layer(num_classes=3, weights=None):
    inputs = keras.Input((None, None, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="fine")(x)
    x = ConvWithWrongReducedGradient(8, 3, padding="same", activation="relu", name="wrong")(x)
    x = keras.layers.Conv2D(num_classes, 3, padding="same", name="score")(x)
    outputs = keras.layers.Activation("linear", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def small_net(num_classes=3, weights=None, broken=False):
    inputs = keras.Input((None, None, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    if broken:
        x = ReversedGradientInReducedPrecision()(x)
    x = keras.layers.Conv2D(num_classes, 3, padding="same")(x)
    outputs = keras.layers.Activation("linear", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def broken_net(num_classes=3, weights=None):
    return small_net(num_classes, weights, broken=True)


def batch(seed=0, classes=3):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (4, 16, 16, 3)).astype("uint8")
    masks = (images[..., 0].astype(int) * classes // 256).astype("uint8")  # learnable from the red channel
    return images, masks


def compile_adam(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_a_reduced_precision_that_computes_right_agrees(policy):
    check = compare_precisions(lambda: small_net(), compile_adam, batch(), policy)
    assert check.agrees, check.describe()
    assert len(check.float32_losses) == precision_check.STEPS + 1
    assert check.float32_losses[-1] < check.float32_losses[0]


def test_a_reduced_precision_whose_gradients_are_wrong_is_caught():
    check = compare_precisions(lambda: broken_net(), compile_adam, batch(), "mixed_bfloat16")
    assert not check.agrees
    assert check.reduced_losses[-1] > check.float32_losses[-1]
    assert "mixed_bfloat16" in check.describe() and "float32" in check.describe()


@pytest.mark.parametrize(
    "float32, reduced, agrees",
    [
        ([2.0, 1.0], [2.0, 1.05], True),  # 5% apart: bf16 rounding
        ([2.0, 1.0], [2.0, 1.3], False),  # 30% above
        ([2.0, 1.0], [2.0, 0.7], False),  # 30% below is no better: it is not float32's path
        ([2.0, 1.0], [2.0, float("nan")], False),
        ([2.0, float("inf")], [2.0, 1.0], True),  # float32 itself diverges: nothing to hold against
        ([2.0, float("nan")], [2.0, float("nan")], True),
        ([2.0, 1.98], [2.0, 2.05], True),  # float32 barely moved; 3.5% apart
        ([0.69, 0.17], [0.69, 0.14], True),  # a batch learnt fast: 0.03 apart is 6% of 0.52 travelled
        ([0.69, 0.17], [0.69, 0.10], False),  # 0.07 apart: 13% of the way
        ([2.0, 1.97], [2.0, 2.0], True),  # float32 made 1.5% progress: too little to judge
    ],
)
def test_the_verdict(float32, reduced, agrees):
    check = PrecisionCheck("mixed_bfloat16", float32, reduced, images=2, size=(8, 8), seconds=0.1)
    assert check.agrees == agrees, check.problem


def test_a_reduced_precision_that_only_stalls_is_caught():
    # within 10% at the end, but it learned a fifth of what float32 learned
    check = PrecisionCheck("mixed_bfloat16", [1.0, 0.9], [1.0, 0.98], images=2, size=(8, 8), seconds=0.1)
    assert not check.agrees and "progress" in check.problem


def register(monkeypatch, name, builder):
    monkeypatch.setitem(registry._REGISTRY, name, registry.ModelPreset(name, builder, "test", 1, "a test"))
    return name


@pytest.fixture
def broken_model(monkeypatch):
    """A registered model whose reduced-precision training is broken (in no layer with weights)."""
    return register(monkeypatch, "test_broken_in_reduced_precision", broken_net)


def test_the_layer_to_blame_is_found_one_layer_at_a_time():
    from kseg.training.precision_check import disagreeing_layers, layer_errors

    images = batch()[0]
    assert disagreeing_layers(lambda: net_with_one_wrong_layer(), images, "mixed_bfloat16") == ["wrong"]
    errors = layer_errors(net_with_one_wrong_layer(), images, "mixed_bfloat16")
    assert set(errors) == {"fine", "wrong", "score"}
    tolerance = precision_check.LAYER_TOLERANCE
    assert errors["fine"] < tolerance and errors["score"] < tolerance and errors["wrong"] > 1


def test_a_run_keeps_bf16_with_the_blamed_layer_in_float32(data, tmp_path, monkeypatch, caplog):
    from kseg.training import train

    name = register(monkeypatch, "test_one_wrong_layer", net_with_one_wrong_layer)
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="kseg"):
        train(config(data, run_dir, name, mixed_precision="bf16"), verbose=0)
    line = next(record for record in caplog.records if "precision check" in record.getMessage())
    assert line.levelno == logging.WARNING
    assert "gradients of wrong disagree with float32's, so it computes in float32" in line.getMessage()
    assert "with policy mixed_bfloat16" in caplog.text
    from kseg import runs
    from kseg.models.saving import load_model

    model = load_model(runs.checkpoint_path(str(run_dir), runs.LAST))
    assert model.get_layer("wrong").compute_dtype == "float32"
    assert model.get_layer("fine").compute_dtype == "bfloat16"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from kseg.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(
        str(tmp_path_factory.mktemp("data") / "synthetic"), num_train=8, num_val=4, size=(32, 48), seed=0
    )


def config(data, run_dir, model, **changes):
    values = dict(model=model, data="synthetic", data_dir=data, weights="none", epochs=1, batch_size=4,
                  crop=[32, 32], optimizer="adam", lr=1e-2, run_dir=str(run_dir), seed=0)  # fmt: skip
    values.update(changes)
    return TrainConfig(**values)


def test_a_check_batch_that_cannot_be_read_leaves_no_reader_threads(tmp_path, monkeypatch, reader_threads_left):
    import kseg.data.pipeline
    from kseg.data import get_dataset_spec
    from kseg.data.synthetic import write_synthetic_dataset

    root = write_synthetic_dataset(str(tmp_path / "synthetic"), num_train=4, num_val=2, size=(32, 48), seed=0)
    spec = get_dataset_spec("synthetic", root, None)
    for image, _ in spec.pairs("train"):  # damaged since the run began (a resumed run does not verify)
        with open(image, "wb") as handle:
            handle.write(b"not an image")
    monkeypatch.setattr(kseg.data.pipeline, "default_engine", lambda: "python")  # as under JAX and PyTorch
    with pytest.raises(KsegError):
        precision_check.check_batch(config(root, tmp_path / "run", "fcn8s"), spec)

    assert not reader_threads_left()


def test_bf16_asked_for_by_name_stops_before_training(data, tmp_path, broken_model):
    from kseg.training import train

    run_dir = tmp_path / "run"
    with pytest.raises(KsegError) as caught:
        train(config(data, run_dir, broken_model, mixed_precision="bf16"), verbose=0)
    message = str(caught.value)
    assert "--mixed-precision bf16" in message and "does not train like float32" in message
    assert "--mixed-precision off" in message and "--no-precision-check" in message
    assert not run_dir.exists()  # nothing half-made is left


def test_auto_falls_back_to_float32_with_one_line(data, tmp_path, broken_model, monkeypatch, caplog):
    from kseg.training import distribution, train

    monkeypatch.setitem(distribution._AUTO_CHOICE, keras.backend.backend(), ("mixed_bfloat16", "a test"))
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="kseg"):
        train(config(data, run_dir, broken_model, mixed_precision="auto"), verbose=0)
    fallbacks = [record for record in caplog.records if "training in float32 instead" in record.getMessage()]
    assert len(fallbacks) == 1 and fallbacks[0].levelno == logging.WARNING
    assert "with policy float32" in caplog.text
    saved = TrainConfig.from_yaml(os.path.join(run_dir, "config.yaml"))
    assert saved.mixed_precision == "off"


def test_the_check_can_be_turned_off(data, tmp_path, broken_model, caplog):
    from kseg.training import train

    with caplog.at_level(logging.INFO, logger="kseg"):
        train(config(data, tmp_path / "run", broken_model, mixed_precision="bf16", precision_check=False), verbose=0)
    assert "with policy mixed_bfloat16" in caplog.text and "precision check" not in caplog.text


def test_a_model_that_trains_right_in_bf16_keeps_bf16_and_says_what_the_check_cost(data, tmp_path, caplog):
    from kseg.training import train

    with caplog.at_level(logging.INFO, logger="kseg"):
        train(config(data, tmp_path / "run", "fcn8s_vgg16bn", width=0.0625, mixed_precision="bf16"), verbose=0)
    line = next(record.getMessage() for record in caplog.records if "precision check" in record.getMessage())
    assert "trains like float32" in line and "checked in" in line
    assert "with policy mixed_bfloat16" in caplog.text
