import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


def write_legacy_vgg16_weights(model, path):
    """Writes `model`'s weights in the HDF5 layout of keras' published VGG16 file.

    That layout (Keras 2's `save_weights` to `.h5`) has one top-level group per layer,
    listed in the `layer_names` attribute, each with a `weight_names` attribute naming
    datasets such as `block1_conv1/kernel:0`.
    """
    import h5py

    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = handle.create_group(layer.name)
            names = [f"{layer.name}/{v.name}:0".encode() for v in layer.weights]
            group.attrs["weight_names"] = names
            for name, value in zip(names, layer.get_weights()):
                group.create_dataset(name.decode(), data=value)


@pytest.fixture(scope="session")
def vgg16_weights_file(tmp_path_factory):
    """A keras VGG16 classifier (random weights, seeded) saved in keras' legacy .h5 layout.

    Stands in for the ImageNet file, which cannot be downloaded in tests.
    """
    import keras

    keras.utils.set_random_seed(1234)
    model = keras.applications.VGG16(weights=None, include_top=True)
    path = tmp_path_factory.mktemp("weights") / "vgg16_test_weights.h5"
    write_legacy_vgg16_weights(model, str(path))
    del model
    keras.backend.clear_session()
    return str(path)
