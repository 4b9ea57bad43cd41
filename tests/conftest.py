import os
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def randomize_weights(model, seed=0, scale=0.1):
    """Sets every variable of `model` from a seeded normal and returns the model.

    kseg's builders start the score layers at zero, so an untouched model predicts all-zero
    logits and any comparison of two code paths would trivially agree. Batch-norm
    variances are drawn from [0.5, 1.5], as a variance must be positive.
    """
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if "variance" in variable.path:
            values = rng.uniform(0.5, 1.5, variable.shape)
        else:
            values = rng.normal(0, scale, variable.shape)
        variable.assign(values.astype("float32"))
    return model


def tiny_run_dir(parent, model_name="fcn8s", classes=None):
    """Writes a run directory holding a tiny randomized model as checkpoints/best.keras.

    Args:
        parent: pathlib.Path. Folder the run directory "tiny" is made in.
        model_name: str. Registered model to build (width 0.0625, random weights).
        classes: tuple or None. (dataset, class_names, palette) for classes.json; 3 classes.
    """
    from kseg.models import create_model
    from kseg.runs import write_classes

    model = randomize_weights(create_model(model_name, num_classes=3, weights=None, width=0.0625))
    run = parent / "tiny"
    (run / "checkpoints").mkdir(parents=True)
    model.save(run / "checkpoints" / "best.keras")
    if classes is not None:
        write_classes(str(run), *classes)
    return run


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


@pytest.fixture
def reader_threads_left():
    """A call that returns the data reader threads started since the fixture was set up and
    still running, after giving a shut-down pool up to 10 s to let them end on their own."""
    before = set(threading.enumerate())

    def left():
        deadline = time.monotonic() + 10
        while True:
            threads = [t for t in set(threading.enumerate()) - before if t.name.startswith("kseg-data")]
            if not threads or time.monotonic() > deadline:
                return threads
            time.sleep(0.05)

    return left
