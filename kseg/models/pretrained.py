"""Reading ImageNet VGG16 classifier weights: keras' download and cache, or a local file.
Also the weights of the keras.applications backbones (MobileNetV3, ResNet50):
`assign_application_weights`, at the end.

The weights are read layer by layer straight from the HDF5 file with h5py, so a full
VGG16 classifier (134M parameters) is never built beside the FCN that receives them.
Both layouts keras writes are understood: the legacy one of keras' published
`vgg16_weights_tf_dim_ordering_tf_kernels.h5` (top-level groups named after layers) and
Keras 3's `.weights.h5` (`layers/<name>/vars/<i>`).
"""

import os

import h5py
import keras
import numpy as np

from kseg.download import get_file, keras_models_folder, network_deadline, shown_folder
from kseg.errors import KsegError, WeightsError
from kseg.files import one_line
from kseg.models.manifest import manifest_entry

# The manifest entry of the file keras.applications.VGG16(weights="imagenet",
# include_top=True) downloads: the same name, address, hash and cache folder, so kseg and
# keras share one cached copy.
IMAGENET_ENTRY = "vgg16_imagenet"
_ENTRY_FIELDS = {"IMAGENET_FILENAME": "file", "IMAGENET_URL": "url", "IMAGENET_MD5": "md5"}


def __getattr__(name):
    """IMAGENET_FILENAME, IMAGENET_URL and IMAGENET_MD5, read from the weights manifest."""
    if name in _ENTRY_FIELDS:
        return getattr(manifest_entry(IMAGENET_ENTRY), _ENTRY_FIELDS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Names of the VGG16 layers with weights, in keras' naming.
CONV_LAYERS = (
    "block1_conv1", "block1_conv2",
    "block2_conv1", "block2_conv2",
    "block3_conv1", "block3_conv2", "block3_conv3",
    "block4_conv1", "block4_conv2", "block4_conv3",
    "block5_conv1", "block5_conv2", "block5_conv3",
)  # fmt: skip
DENSE_LAYERS = ("fc1", "fc2", "predictions")
# What h5py raises on a damaged file, or on a dataset where keras writes a group (and back).
H5_ERRORS = (KeyError, OSError, TypeError, ValueError, AttributeError)


def imagenet_weights_path():
    """Returns the local path of keras' ImageNet VGG16 weights, downloading them if needed.

    The download has deadlines and says what it waits for (`kseg.download`).

    Raises:
        WeightsError: when the file can neither be found in keras' cache nor downloaded.
    """
    entry = manifest_entry(IMAGENET_ENTRY)
    return get_file(
        entry.file, entry.url, entry.file_hash, "the ImageNet VGG16 weights",
        f"put {entry.file} in {shown_folder(keras_models_folder())}, or pass --weights PATH to a "
        "local VGG16 weights file, or (kseg train) --weights none to train from random weights "
        "(as `kseg train --recipe camvid-scratch` does)",
    )  # fmt: skip


class VGG16WeightsFile:
    """Read access, layer by layer, to a VGG16 classifier weights file written by keras.

    Use as a context manager. `arrays(name)` returns the layer's [kernel, bias] as NumPy.

    Args:
        path: str. A keras HDF5 weights file of VGG16 with its top (fc1, fc2, predictions).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise WeightsError(f"{self.path}: weights file not found")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as error:
            raise WeightsError(
                f"{self.path}: not a readable HDF5 weights file, truncated or corrupt ({error})"
            ) from None
        try:
            root = self._file.get("model_weights", self._file)
            if "layer_names" in root.attrs:
                self._layers = {_text(name): root[_text(name)] for name in root.attrs["layer_names"]}
                self._keras3 = False
            elif "layers" in root:
                self._layers = _keras3_layer_groups(root["layers"])
                self._keras3 = True
            else:
                raise WeightsError(f"{self.path}: HDF5 file holds no keras layer weights")
        except H5_ERRORS as error:
            self.close()
            raise WeightsError(f"{self.path}: damaged keras weights file ({error})") from None
        except WeightsError:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        self._file.close()

    def arrays(self, name):
        """Returns the weight arrays stored for layer `name`, in keras' order."""
        if name not in self._layers:
            hint = " (a 'notop' file without the classifier?)" if name in DENSE_LAYERS else ""
            raise WeightsError(
                f"{self.path}: no weights for layer '{name}'{hint}; expected a keras VGG16 "
                "classifier weights file (include_top=True)"
            )
        group = self._layers[name]
        try:
            if self._keras3:
                variables = group["vars"]
                return [variables[str(i)][()] for i in range(len(variables))]
            return [group[_text(w)][()] for w in group.attrs["weight_names"]]
        except H5_ERRORS as error:
            raise WeightsError(
                f"{self.path}: weights of layer '{name}' are unreadable, truncated or corrupt "
                f"({error})"
            ) from None


def _keras3_layer_groups(layers_group):
    """Maps VGG16 layer names to the groups of a Keras 3 `.weights.h5` file.

    Keras 3 names each group after the layer's class and position among layers of that
    class (conv2d, conv2d_1, ..., dense, dense_1, dense_2), not after the layer's name, so
    VGG16's layers are found by their order.
    """
    groups = dict(layers_group.items())
    if CONV_LAYERS[0] in groups:
        return groups
    keys = {name: prefix if index == 0 else f"{prefix}_{index}"
            for prefix, names in (("conv2d", CONV_LAYERS), ("dense", DENSE_LAYERS))
            for index, name in enumerate(names)}
    return {name: groups[key] for name, key in keys.items() if key in groups}


def _text(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def assign_vgg16_weights(model, weights, dense_as_conv=("fc1", "fc2")):
    """Loads VGG16 classifier weights into the same-named layers of `model`.

    Convolution layers are copied as they are. The Dense layers named in `dense_as_conv`
    are convolutionalized: fc1 (25088 x 4096) is reshaped into the 7x7x512x4096 kernel of
    `fc6`, fc2 into the 1x1 kernel of `fc7`, predictions into the 1x1 kernel of
    `predictions`. Keras' VGG16 flattens a channels-last 7x7x512 map, so the Dense row
    index is (row * 7 + column) * 512 + channel: a plain reshape is exact.

    Args:
        model: keras.Model. Holds the conv layers and the fc6/fc7(/predictions) convs.
        weights: str. "imagenet" or a path to a keras VGG16 weights file.
        dense_as_conv: tuple. Which of fc1, fc2, predictions to convert and load.
    """
    dense_to_conv = {"fc1": "fc6", "fc2": "fc7", "predictions": "predictions"}
    path = imagenet_weights_path() if weights == "imagenet" else os.fspath(weights)
    with VGG16WeightsFile(path) as source:
        names = [(n, n) for n in CONV_LAYERS] + [(d, dense_to_conv[d]) for d in dense_as_conv]
        for source_name, target_name in names:
            arrays = source.arrays(source_name)
            layer = model.get_layer(target_name)
            expected = [tuple(v.shape) for v in layer.weights]
            if len(arrays) != len(expected):
                raise WeightsError(
                    f"{path}: layer '{source_name}' has {len(arrays)} arrays, expected "
                    f"{len(expected)}"
                )
            if source_name in dense_to_conv:
                arrays = [_dense_to_conv(a, shape) for a, shape in zip(arrays, expected)]
            for array, shape in zip(arrays, expected):
                if tuple(array.shape) != shape:
                    raise WeightsError(
                        f"{path}: layer '{source_name}' has shape {tuple(array.shape)}, "
                        f"expected {shape} for '{target_name}'; is this a keras VGG16 "
                        "classifier (channels-last, 224x224 inputs)?"
                    )
            layer.set_weights(arrays)


def _dense_to_conv(array, conv_shape):
    """Reshapes a Dense kernel (rows, units) into a conv kernel (kh, kw, channels, units).

    Only a 2-D kernel whose rows are exactly kh * kw * channels is reshaped; anything else
    is returned unchanged so that the caller's shape check reports it.
    """
    if array.ndim == 2 and len(conv_shape) == 4 and array.shape == (
        int(np.prod(conv_shape[:3])), conv_shape[3]
    ):
        return array.reshape(conv_shape)
    return array


# -- backbones from keras.applications (MobileNetV3, ResNet50) ---------------------------


def application_weights_model(application, weights, **kwargs):
    """keras.applications.`application`(weights=`weights`, **kwargs), built on its own.

    "imagenet" goes through keras' own download, cache (~/.keras/models/) and hash check;
    a path is read by keras' `load_weights` (a `.weights.h5` written by Keras 3 from the
    same backbone, or a legacy `.h5` file such as keras' published "notop" files).

    Raises:
        WeightsError: when the ImageNet file can neither be found in keras' cache nor
            downloaded, or when the file at the path does not fit the backbone.
    """
    build = getattr(keras.applications, application)
    if weights == "imagenet":
        what = f"the ImageNet {application} weights"
        way_out = (f"put keras' {application} 'notop' weights file in "
                   f"{shown_folder(keras_models_folder())}, or pass --weights PATH to a local keras "
                   f"{application} weights file, or --weights none to train from random weights")
        try:
            with network_deadline(f"{what} (keras' cache or download)") as wait:
                return build(weights=weights, input_shape=(None, None, 3), **kwargs)
        except (KeyboardInterrupt, KsegError):
            raise
        except Exception as error:  # keras raises bare Exception for fetch failures
            reason = wait.timed_out(error) or f"{type(error).__name__}: {one_line(error, 300)}"
            raise WeightsError(f"could not obtain {what} through keras ({reason}); {way_out}") from None
    try:
        return build(weights=weights, input_shape=(None, None, 3), **kwargs)
    except Exception as error:
        detail = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        variant = "".join(f", {key}={kwargs[key]}" for key in ("alpha", "minimalistic") if key in kwargs)
        raise WeightsError(
            f"{weights}: not a keras {application} weights file of this variant "
            f"(include_top=False{variant}) ({detail}); pass --weights PATH to a matching "
            "file, or --weights none"
        ) from None


def assign_application_weights(model, application, weights, **kwargs):
    """Copies the weights of a keras.applications backbone into the same-named layers of
    `model`, checking every shape.

    Every backbone layer that holds weights must be found in `model` with the same weight
    shapes (dilated convolutions keep their kernels' shapes): a partial load is an error,
    never a silent skip.

    Args:
        model: keras.Model. A segmentation model built on the backbone.
        application: str. The keras.applications function, e.g. "MobileNetV3Large".
        weights: str. "imagenet" or a path to a keras weights file of the backbone.
        **kwargs: the keras.applications arguments of the variant (include_top=False,
            alpha, minimalistic, ...).
    """
    source = application_weights_model(application, weights if weights == "imagenet" else os.fspath(weights), **kwargs)
    for layer in source.layers:
        arrays = layer.get_weights()
        if not arrays:
            continue
        try:
            target = model.get_layer(layer.name)
        except ValueError:
            raise WeightsError(
                f"model '{model.name}' has no layer '{layer.name}' of {application}"
            ) from None
        expected = [tuple(w.shape) for w in target.weights]
        if [tuple(a.shape) for a in arrays] != expected:
            raise WeightsError(
                f"{application} layer '{layer.name}' has weights of shapes "
                f"{[tuple(a.shape) for a in arrays]}, the model's has {expected}"
            )
        target.set_weights(arrays)
