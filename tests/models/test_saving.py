"""kseg.models.saving.load_keras_file: keras' .keras loading, one copy of the weights."""

import os
import zipfile

import keras
import numpy as np
import pytest

from kseg.models.fcn import build_fcn
from kseg.models.saving import load_keras_file


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = build_fcn(8, 3, weights=None, width=0.0625, dropout=0.5)
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
    path = tmp_path_factory.mktemp("saved") / "model.keras"
    model.save(path)
    return model, path


def test_loads_what_keras_loads(saved):
    model, path = saved
    loaded = load_keras_file(path)
    reference = keras.saving.load_model(path, compile=False)
    assert loaded.get_config() == reference.get_config()
    assert [v.path for v in loaded.weights] == [v.path for v in reference.weights]
    for a, b, c in zip(loaded.get_weights(), reference.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    image = np.random.default_rng(1).integers(0, 256, (1, 40, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(loaded(image)), np.asarray(model(image)))
    # the file's initializers are kept: the loaded model saves and trains as keras' would
    assert loaded.get_layer("fc6").kernel_initializer.get_config() == (
        model.get_layer("fc6").kernel_initializer.get_config()
    )


def test_a_checkpoint_with_optimizer_state_loads_uncompiled(saved, tmp_path):
    model, _ = saved
    trained = keras.models.clone_model(model)
    trained.set_weights(model.get_weights())
    trained.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="mse")
    image = np.zeros((1, 32, 32, 3), np.uint8)
    trained.train_on_batch(image, np.zeros((1, 32, 32, 3), "float32"))
    path = tmp_path / "checkpoint.keras"
    trained.save(path)
    loaded = load_keras_file(path)
    assert getattr(loaded, "optimizer", None) is None
    for a, b in zip(loaded.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_wrong_shapes_in_the_file_are_an_error(saved, tmp_path):
    _, path = saved
    other = build_fcn(8, 5, weights=None, width=0.0625)  # 5 classes, same layer names
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json")
    other_path = tmp_path / "other.keras"
    other.save(other_path)
    mixed = tmp_path / "mixed.keras"
    with zipfile.ZipFile(other_path) as source, zipfile.ZipFile(mixed, "w") as target:
        for item in source.infolist():
            target.writestr(item, config if item.filename == "config.json" else source.read(item))
    with pytest.raises(ValueError, match="shape"):
        load_keras_file(mixed)


def test_lambda_layers_are_refused_in_safe_mode(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="safe_mode|Lambda"):
        load_keras_file(path)
    loaded = load_keras_file(path, safe_mode=False)
    np.testing.assert_allclose(np.asarray(loaded(np.ones((1, 4), "float32"))), 2.0)


def test_a_failed_load_leaves_no_pending_variables(saved, tmp_path):
    from kseg.models.keras_internals import pending_variables

    _, path = saved
    truncated = tmp_path / "truncated.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(truncated, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, data[: len(data) // 2] if item.filename.endswith(".h5") else data)
    with pytest.raises((OSError, ValueError)):
        load_keras_file(truncated)
    assert not pending_variables()
    load_keras_file(path)
    assert not pending_variables()


def test_first_nonfinite_weight_names_the_variable(saved, tmp_path):
    from kseg.models.saving import first_nonfinite_weight

    model, _ = saved
    assert first_nonfinite_weight(model) is None
    copy = keras.models.clone_model(model)
    weights = model.get_weights()
    copy.set_weights(weights)
    for value, kind in ((np.inf, "inf"), (-np.inf, "inf"), (np.nan, "NaN")):
        variable = copy.get_layer("fc7").kernel
        array = variable.numpy()
        array.flat[7] = value
        variable.assign(array)
        assert first_nonfinite_weight(copy) == ("fc7/kernel", kind)
    path = tmp_path / "nan.keras"
    copy.save(path)
    assert first_nonfinite_weight(load_keras_file(path)) == ("fc7/kernel", "NaN")


@pytest.mark.parametrize("name", ["lraspp_mobilenetv3small", "deeplabv3_resnet50", "fcn8s_caffe"])
def test_a_saved_model_with_kseg_layers_loads_in_a_fresh_process(name, tmp_path):
    """Loading must not depend on the builder having run in the same process: the layers
    of the heads (BilinearUpsample, BroadcastToReference) and of the Caffe FCNs are
    registered by `load_model` itself."""
    import subprocess
    import sys

    from kseg.models import create_model

    options = {"width": 0.0625} if name == "fcn8s_caffe" else {}
    model = create_model(name, num_classes=3, weights=None, **options)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    code = (
        "import sys\n"
        "from kseg.models.saving import load_model\n"
        "model = load_model(sys.argv[1])\n"
        "print(model.count_params())\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) == model.count_params()


def _patched_config_archive(path, patch):
    """A .keras-like zip holding a deflated config.json, its bytes then changed by `patch`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", '{"class_name": "Functional", "config": "' + "x" * 2000 + '"}')
    data = bytearray(path.read_bytes())
    patch(data)
    path.write_bytes(bytes(data))
    return path


def _encrypted(data):
    data[data.find(b"PK\x01\x02") + 8] |= 1  # the central directory's "encrypted" flag


def _scrambled(data):
    start = data.find(b"PK\x03\x04") + 30 + len("config.json")  # the deflated bytes
    data[start + 2 : start + 12] = bytes(byte ^ 0x55 for byte in data[start + 2 : start + 12])


@pytest.mark.parametrize("patch", [_encrypted, _scrambled])
def test_an_encrypted_or_undecompressable_config_is_one_error_naming_the_file(patch, tmp_path):
    from kseg.files import MalformedFileError
    from kseg.models.saving import read_keras_config

    path = _patched_config_archive(tmp_path / "model.keras", patch)
    with pytest.raises(MalformedFileError, match=r"model\.keras: not a loadable keras model"):
        read_keras_config(path)
