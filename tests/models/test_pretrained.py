"""Convolutionalization and VGG16 weight loading, on a classifier file the tests write."""

import os
import shutil

import keras
import numpy as np
import pytest

from kseg.errors import WeightsError
from kseg.models import fcn32s, imagenet_heatmap_model, pretrained
from kseg.models.manifest import manifest_entry

CENTRE = 3  # a 224x224 image gives a 7x7 pool5 map; fc6's centre sees all of it


@pytest.fixture(scope="module")
def classifier(vgg16_weights_file):
    """keras' own VGG16 classifier loading the test file: proves the file is in keras' format."""
    model = keras.applications.VGG16(weights=vgg16_weights_file, include_top=True)
    yield model
    del model
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3)).astype("float32")


def relative_error(actual, expected):
    return np.max(np.abs(actual - expected)) / np.max(np.abs(expected))


def test_fc6_fc7_kernels_are_the_reshaped_dense_kernels(classifier, vgg16_weights_file):
    model = fcn32s(num_classes=5, weights=vgg16_weights_file)
    fc1_kernel, fc1_bias = classifier.get_layer("fc1").get_weights()
    fc6_kernel, fc6_bias = model.get_layer("fc6").get_weights()
    np.testing.assert_array_equal(fc6_kernel, fc1_kernel.reshape(7, 7, 512, 4096))
    np.testing.assert_array_equal(fc6_bias, fc1_bias)
    np.testing.assert_array_equal(
        model.get_layer("fc7").get_weights()[0][0, 0], classifier.get_layer("fc2").get_weights()[0]
    )
    np.testing.assert_array_equal(
        model.get_layer("block3_conv2").get_weights()[0],
        classifier.get_layer("block3_conv2").get_weights()[0],
    )


def test_fc6_fc7_centre_equals_the_dense_classifier(classifier, vgg16_weights_file, image):
    model = fcn32s(num_classes=5, weights=vgg16_weights_file)
    fcn_features = keras.Model(model.input, [model.get_layer(n).output for n in ("fc6", "fc7")])
    dense_features = keras.Model(
        classifier.input, [classifier.get_layer(n).output for n in ("fc1", "fc2")]
    )
    # keras' VGG16 expects its own preprocessing; kseg's model does it inside
    expected = dense_features(keras.applications.vgg16.preprocess_input(image.copy()))
    actual = fcn_features(image)
    for conv, dense in zip(actual, expected):
        conv, dense = np.asarray(conv), np.asarray(dense)
        assert conv.shape[1:3] == (7, 7)
        assert np.abs(dense).max() > 0
        assert relative_error(conv[0, CENTRE, CENTRE], dense[0]) < 1e-4


def test_heatmap_centre_equals_the_classifier_probabilities(classifier, vgg16_weights_file, image):
    heatmap = imagenet_heatmap_model(vgg16_weights_file)
    probabilities = np.asarray(heatmap(image))
    expected = np.asarray(classifier(keras.applications.vgg16.preprocess_input(image.copy())))
    assert probabilities.shape == (1, 7, 7, 1000)
    assert relative_error(probabilities[0, CENTRE, CENTRE], expected[0]) < 1e-4
    # any size works: a 300x410 image gives a ceil(H/32) x ceil(W/32) map
    assert np.asarray(heatmap(np.zeros((1, 300, 410, 3), "uint8"))).shape == (1, 10, 13, 1000)


def test_keras3_weights_file_loads_too(classifier, tmp_path):
    path = tmp_path / "vgg16.weights.h5"
    classifier.save_weights(path)
    model = fcn32s(num_classes=5, weights=str(path))
    np.testing.assert_array_equal(
        model.get_layer("fc6").get_weights()[0],
        classifier.get_layer("fc1").get_weights()[0].reshape(7, 7, 512, 4096),
    )


def test_truncated_file_is_a_clear_error(vgg16_weights_file, tmp_path):
    truncated = tmp_path / "truncated.h5"
    with open(vgg16_weights_file, "rb") as source, open(truncated, "wb") as target:
        target.write(source.read(5_000_000))
    with pytest.raises(WeightsError, match="truncated.h5.*(truncated|corrupt)"):
        fcn32s(num_classes=5, weights=str(truncated))


def test_text_file_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not weights")
    with pytest.raises(WeightsError, match="notes.h5: not a readable HDF5"):
        fcn32s(num_classes=5, weights=str(path))


def test_notop_file_is_a_clear_error(tmp_path):
    from conftest import write_legacy_vgg16_weights

    notop = keras.applications.VGG16(weights=None, include_top=False)
    path = tmp_path / "notop.h5"
    write_legacy_vgg16_weights(notop, str(path))
    with pytest.raises(WeightsError, match="no weights for layer 'fc1'.*notop"):
        fcn32s(num_classes=5, weights=str(path))


def test_wrong_shapes_are_a_clear_error(tmp_path):
    from conftest import write_legacy_vgg16_weights

    other = keras.applications.VGG16(weights=None, include_top=True, input_shape=(64, 64, 3))
    path = tmp_path / "vgg16_64.h5"
    write_legacy_vgg16_weights(other, str(path))
    with pytest.raises(WeightsError, match="layer 'fc1' has shape \\(2048, 4096\\)"):
        fcn32s(num_classes=5, weights=str(path))


def test_imagenet_download_failure_says_how_to_proceed(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsError) as error:
        fcn32s(num_classes=5, weights="imagenet")
    message = str(error.value)
    entry = manifest_entry("vgg16_imagenet")
    assert "\n" not in message and entry.url in message and "--weights PATH" in message
    assert entry.file in message and "~/.keras/models/" in message
    assert "--weights none" in message


def test_imagenet_download_uses_keras_file_and_cache(monkeypatch, vgg16_weights_file):
    from keras.src.applications import vgg16 as keras_vgg16

    calls = []

    def cached(fname, origin, cache_subdir, file_hash):
        calls.append((fname, origin, cache_subdir, file_hash))
        return vgg16_weights_file

    monkeypatch.setattr(keras.utils, "get_file", cached)
    fcn32s(num_classes=5, weights="imagenet")
    entry = manifest_entry("vgg16_imagenet")
    assert calls == [(entry.file, keras_vgg16.WEIGHTS_PATH, "models", entry.md5)]
    assert entry.file == keras_vgg16.WEIGHTS_PATH.rsplit("/", 1)[-1]


def test_the_imagenet_file_name_address_and_hash_come_from_the_manifest(tmp_path):
    from kseg.models import manifest

    assert os.path.isfile(manifest.MANIFEST_PATH)
    entry = manifest_entry("vgg16_imagenet")
    assert entry.md5 == "64373286793e3c8b2b4e3219cbf3544b" and entry.file_hash == entry.md5
    assert (
        entry.file, entry.url, entry.md5
    ) == (pretrained.IMAGENET_FILENAME, pretrained.IMAGENET_URL, pretrained.IMAGENET_MD5)
    other = tmp_path / "manifest.yaml"
    other.write_text("- name: x\n  file: x.h5\n  url: https://example.org/x.h5\n  sha256: ab\n")
    assert manifest.manifest_entry("x", str(other)).file_hash == "ab"
    with pytest.raises(WeightsError, match="no weights entry named 'y'"):
        manifest.manifest_entry("y", str(other))
    with pytest.raises(WeightsError, match="manifest is missing"):
        manifest.read_manifest(str(tmp_path / "none.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("- name: z\n")
    with pytest.raises(WeightsError, match="needs a list of entries"):
        manifest.read_manifest(str(broken))


def test_a_copy_of_the_file_gives_the_same_model(vgg16_weights_file, tmp_path, image):
    copy = tmp_path / "copy.h5"
    shutil.copy(vgg16_weights_file, copy)
    a = fcn32s(num_classes=5, weights=vgg16_weights_file, dropout=0)
    b = fcn32s(num_classes=5, weights=str(copy), dropout=0)
    np.testing.assert_array_equal(a.get_layer("fc7").get_weights()[0], b.get_layer("fc7").get_weights()[0])


def test_a_listed_layer_without_its_group_is_a_clear_error(tmp_path):
    import h5py

    path = tmp_path / "listed.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [b"block1_conv1"]
    with pytest.raises(WeightsError, match="listed.h5: damaged keras weights file"):
        fcn32s(num_classes=5, weights=str(path))


def _dataset_for_a_group(handle, path):
    handle.create_dataset(path, data=np.zeros(3))


@pytest.mark.parametrize("layout", [
    {"layers": _dataset_for_a_group},  # Keras 3: 'layers' a dataset
    {"layers/block1_conv1/vars": _dataset_for_a_group},  # Keras 3: 'vars' a dataset
    {"layers/block1_conv1": _dataset_for_a_group},  # Keras 3: the layer a dataset
    {"block1_conv1": _dataset_for_a_group, "names": [b"block1_conv1"], "weights": [b"k"]},  # legacy
    {"names": 5},  # legacy: layer_names not a list
])
def test_datasets_where_keras_writes_groups_are_a_damaged_file(tmp_path, layout):
    import h5py

    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as handle:
        for key, value in layout.items():
            if callable(value):
                value(handle, key)
        if "names" in layout:
            handle.attrs["layer_names"] = layout["names"]
        if "weights" in layout:
            handle["block1_conv1"].attrs["weight_names"] = layout["weights"]
    damaged = "odd.h5: (damaged keras weights file|weights of layer 'block1_conv1' are unreadable)"
    with pytest.raises(WeightsError, match=damaged), pretrained.VGG16WeightsFile(path) as weights:
        weights.arrays("block1_conv1")
