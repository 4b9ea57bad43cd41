"""The Caffe-exact FCNs against an independent NumPy run of the released nets, through a
.caffemodel written here byte by byte in protobuf's wire format."""

import json

import numpy as np
import pytest

from kseg import conversion as convert
from kseg.errors import WeightsError
from kseg.models.registry import create_model, parameter_count

WIDTH = 1 / 32  # conv 2, 4, 8, 16, 16 filters, fc 128
MEAN_BGR = np.array([104.00698793, 116.66876762, 122.67891434])
VGG = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


# -- protobuf wire format, by hand --------------------------------------------------------
def varint(number):
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def field(number, payload):  # a length-delimited field
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def blob_bytes(array, legacy=False):
    if legacy:
        dims = (1,) * (4 - array.ndim) + array.shape
        head = b"".join(varint(n << 3) + varint(d) for n, d in zip((1, 2, 3, 4), dims))
    else:
        head = field(7, field(1, b"".join(varint(d) for d in array.shape)))
    return head + field(5, np.asarray(array, "<f4").tobytes())


def caffemodel_bytes(blobs, legacy=False, extra_layers=("relu1_1", "pool1", "score")):
    layers = [field(1, name.encode()) + field(2, b"ReLU") for name in extra_layers]
    if legacy:  # V1LayerParameter in NetParameter.layers = 2: name = 4, type = 5, blobs = 6
        layers = [field(2, field(4, name.encode()) + varint(5 << 3) + varint(4)
                       + b"".join(field(6, blob_bytes(a, True)) for a in arrays))
                  for name, arrays in blobs.items()]
        return field(1, b"fcn") + b"".join(layers)
    for name, arrays in blobs.items():
        kind = b"Deconvolution" if name.startswith("upscore") else b"Convolution"
        layers.append(field(1, name.encode()) + field(2, kind)
                      + field(3, b"bottom") + b"".join(field(7, blob_bytes(a)) for a in arrays))
    return field(1, b"fcn") + b"".join(field(100, layer) for layer in layers)


# -- the released nets, as Caffe computes them -------------------------------------------
def c(channels, width=WIDTH):
    return max(1, int(round(channels * width)))


def caffe_shapes(variant, classes=21, width=WIDTH):
    """{layer: [weight shape (, bias shape)]} in Caffe's layouts, from the released nets."""
    shapes, channels = {}, 3

    def conv(out, inp, k):
        return [(out, inp, k, k), (out,)]

    for block, (filters, convs) in enumerate(VGG, 1):
        for index in range(1, convs + 1):
            shapes[f"conv{block}_{index}"] = conv(c(filters, width), channels, 3)
            channels = c(filters, width)
    shapes["fc6"] = conv(c(4096, width), channels, 7)
    shapes["fc7"] = conv(c(4096, width), c(4096, width), 1)
    shapes["score_fr"] = conv(classes, c(4096, width), 1)

    def deconv(k):  # Deconvolution blobs are (in, out, kh, kw)
        return [(classes, classes, k, k)]

    if variant == "fcn32s":
        shapes["upscore"] = deconv(64)
    else:
        shapes["upscore2"] = deconv(4)
        shapes["score_pool4"] = conv(classes, c(512, width), 1)
        if variant == "fcn16s":
            shapes["upscore16"] = deconv(32)
        else:
            shapes["upscore_pool4"] = deconv(4)
            shapes["score_pool3"] = conv(classes, c(256, width), 1)
            shapes["upscore8"] = deconv(16)
    return shapes


def caffe_blobs(variant, classes=21, width=WIDTH, seed=0):
    """Random (He-scaled) blobs of `caffe_shapes`, with the at-once Scale factors."""
    rng = np.random.default_rng(seed)

    def draw(shape):
        if len(shape) == 1:
            return rng.normal(0, 0.1, shape).astype(np.float32)
        fan_in = shape[0] * shape[2] * shape[3] if shape[2] > 7 else np.prod(shape[1:])
        return rng.normal(0, np.sqrt(2 / fan_in), shape).astype(np.float32)

    blobs = {name: [draw(shape) for shape in shapes]
             for name, shapes in caffe_shapes(variant, classes, width).items()}
    if variant == "fcn8s_atonce":
        blobs["scale_pool4"] = [np.full(c(512, width), 0.01, np.float32)]
        blobs["scale_pool3"] = [np.full(c(256, width), 0.0001, np.float32)]
    return blobs


def np_conv(x, blob, pad):
    weight, bias = (b.astype(np.float64) for b in blob)
    k = weight.shape[-1]
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
    return np.einsum("chwij,ocij->ohw", windows, weight) + bias[:, None, None]


def np_pool(x):  # Caffe MAX pooling 2x2 / 2, ceil rounding
    height, width = x.shape[1:]
    out_h, out_w = -(-(height - 2) // 2) + 1, -(-(width - 2) // 2) + 1
    result = np.full((x.shape[0], out_h, out_w), -np.inf)
    for i in range(out_h):
        for j in range(out_w):
            result[:, i, j] = x[:, 2 * i:min(2 * i + 2, height), 2 * j:min(2 * j + 2, width)].max(axis=(1, 2))
    return result


def np_deconv(x, blob, stride):  # scatter-add, Caffe's Deconvolution
    weight = blob[0].astype(np.float64)
    k = weight.shape[-1]
    height, width = x.shape[1:]
    out = np.zeros((weight.shape[1], (height - 1) * stride + k, (width - 1) * stride + k))
    for i in range(height):
        for j in range(width):
            out[:, i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum(
                "c,cokl->okl", x[:, i, j], weight)
    return out


def np_crop(x, offset, reference):
    return x[:, offset:offset + reference.shape[1], offset:offset + reference.shape[2]]


def np_fcn(variant, blobs, image):
    data = (image[..., ::-1].astype(np.float64) - MEAN_BGR).transpose(2, 0, 1)
    x, pools = data, {}
    for block, (_, convs) in enumerate(VGG, 1):
        for index in range(1, convs + 1):
            x = np.maximum(np_conv(x, blobs[f"conv{block}_{index}"], 100 if block == index == 1 else 1), 0)
        x = pools[block] = np_pool(x)
    x = np.maximum(np_conv(x, blobs["fc6"], 0), 0)
    x = np.maximum(np_conv(x, blobs["fc7"], 0), 0)
    x = np_conv(x, blobs["score_fr"], 0)
    scale4, scale3 = (0.01, 0.0001) if variant == "fcn8s_atonce" else (1, 1)
    if variant == "fcn32s":
        x = np_crop(np_deconv(x, blobs["upscore"], 32), 19, data)
    else:
        x = np_deconv(x, blobs["upscore2"], 2)
        x = x + np_crop(np_conv(pools[4] * scale4, blobs["score_pool4"], 0), 5, x)
        if variant == "fcn16s":
            x = np_crop(np_deconv(x, blobs["upscore16"], 16), 27, data)
        else:
            x = np_deconv(x, blobs["upscore_pool4"], 2)
            x = x + np_crop(np_conv(pools[3] * scale3, blobs["score_pool3"], 0), 9, x)
            x = np_crop(np_deconv(x, blobs["upscore8"], 8), 31, data)
    return x.transpose(1, 2, 0)


def write_model_file(tmp_path, variant, **kwargs):
    blobs = caffe_blobs(variant, **kwargs)
    path = tmp_path / f"{variant}.caffemodel"
    path.write_bytes(caffemodel_bytes(blobs))
    return path, blobs


@pytest.mark.parametrize("variant", ["fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce"])
def test_converted_caffemodel_matches_numpy_caffe_net(tmp_path, variant):
    path, blobs = write_model_file(tmp_path, variant)
    model = convert.convert_released_weights(path, f"{variant}_caffe")
    rng = np.random.default_rng(1)
    sizes = [(1, 1), (37, 53), (100, 120)] + ([(500, 500)] if variant == "fcn8s" else [])
    for size in sizes:
        image = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        expected = np_fcn(variant, blobs, image)
        logits = np.asarray(model(image[None], training=False))[0]
        assert logits.shape == size + (21,) and logits.dtype == np.float32
        scale = np.abs(expected).max()
        diff = np.abs(logits - expected).max()
        agreement = (logits.argmax(-1) == expected.argmax(-1)).mean()
        print(f"{variant} {size}: max|diff| {diff:.3g} of max|logit| {scale:.3g}, "
              f"agreement {agreement:.6f}")
        assert diff <= 1e-5 * scale + 1e-5
        assert agreement >= 0.9999


def test_legacy_v1_layers_and_blob_dims_are_read(tmp_path):
    blobs = caffe_blobs("fcn32s")
    path = tmp_path / "legacy.caffemodel"
    path.write_bytes(caffemodel_bytes(blobs, legacy=True))
    read = convert.read_caffemodel(path)
    assert set(read) == set(blobs)
    np.testing.assert_array_equal(read["fc6"][0], blobs["fc6"][0])
    np.testing.assert_array_equal(read["fc6"][1].ravel(), blobs["fc6"][1])
    model = convert.convert_released_weights(path, "fcn32s_caffe")
    image = np.zeros((1, 9, 11, 3), np.uint8)
    np.testing.assert_allclose(np.asarray(model(image))[0], np_fcn("fcn32s", blobs, image[0]),
                               rtol=1e-4, atol=1e-4)


def test_saved_keras_file_loads_and_passes_the_segmentation_check(tmp_path):
    from kseg.models.saving import load_segmentation_model

    path, _ = write_model_file(tmp_path, "fcn8s_atonce")
    model = convert.convert_released_weights(path, "fcn8s_atonce_caffe")
    out = tmp_path / "out" / "model.keras"
    classes = convert.read_class_names("voc")
    convert.save_converted(model, out, classes, convert.check_output(path, out, classes))
    loaded, classes = load_segmentation_model(str(out))
    assert classes == 21
    image = np.random.default_rng(2).integers(0, 256, (1, 41, 29, 3), dtype=np.uint8)
    np.testing.assert_allclose(np.asarray(loaded(image)), np.asarray(model(image)), atol=1e-5)
    from kseg.runs import read_classes, resolve_model_path

    found, run_dir = resolve_model_path(str(out))
    assert read_classes(run_dir, 21)["class_names"][15] == "person"


def test_full_width_models_have_the_released_blob_shapes():
    """The real widths, counted without allocating their 134M weights."""
    counts = {}
    for variant in ("fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce"):
        shapes = caffe_shapes(variant, 21, width=1)
        assert shapes["fc6"][0] == (4096, 512, 7, 7)
        counts[variant] = sum(int(np.prod(shape)) for blob in shapes.values() for shape in blob)
        assert parameter_count(f"{variant}_caffe", 21) == counts[variant]
    assert counts["fcn8s"] == counts["fcn8s_atonce"]


# -- refusals -------------------------------------------------------------------------------
def test_truncated_and_foreign_files_are_one_line(tmp_path):
    path, _ = write_model_file(tmp_path, "fcn32s")
    data = path.read_bytes()
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or damaged"):
        convert.convert_released_weights(cut, "fcn32s_caffe")
    noise = tmp_path / "noise.caffemodel"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    png = tmp_path / "image.caffemodel"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    for foreign in (noise, png):
        with pytest.raises(WeightsError, match="not a Caffe .caffemodel"):
            convert.convert_released_weights(foreign, "fcn32s_caffe")



def test_a_layer_name_not_utf8_after_whole_layers_is_damage_not_a_foreign_file(tmp_path):
    blob = blob_bytes(np.zeros(2, np.float32))
    path = tmp_path / "bad-name.caffemodel"
    path.write_bytes(caffemodel_bytes({}) + field(100, field(1, b"conv1_\xff") + field(7, blob)))
    with pytest.raises(WeightsError, match="truncated or damaged .caffemodel .a layer name that is not UTF-8"):
        convert.read_caffemodel(path)
    first = tmp_path / "first.caffemodel"
    first.write_bytes(field(100, field(1, b"conv1_\xff") + field(7, blob)))
    with pytest.raises(WeightsError, match="not a Caffe .caffemodel"):
        convert.read_caffemodel(first)


def test_a_classes_file_named_json_in_capitals_is_read_as_json(tmp_path):
    path = tmp_path / "CLASSES.JSON"
    path.write_text(json.dumps({"dataset": "pets", "class_names": ["background", "cat", "dog"]}))
    classes = convert.read_class_names(path)
    assert classes["dataset"] == "pets" and classes["class_names"] == ["background", "cat", "dog"]


@pytest.mark.parametrize("dims", [(1 << 32, 1 << 32), (1 << 62, 4), (0, 1 << 63)])
def test_blob_shapes_past_numpy_sizes_are_damage(tmp_path, dims):
    blob = field(7, field(1, b"".join(varint(d) for d in dims)))  # a shape, and no values
    path = tmp_path / "huge.caffemodel"
    path.write_bytes(caffemodel_bytes({}) + field(100, field(1, b"conv1_1") + field(7, blob)))
    with pytest.raises(WeightsError, match="truncated or damaged .caffemodel .a blob of shape"):
        convert.read_caffemodel(path)

def test_wrong_class_count_unmatched_and_missing_blobs_are_named(tmp_path):
    path, _ = write_model_file(tmp_path, "fcn32s", classes=60)
    with pytest.raises(WeightsError, match="'score_fr' scores 60 classes, the model 21"):
        convert.convert_released_weights(path, "fcn32s_caffe")
    blobs = caffe_blobs("fcn32s")
    blobs["fc8"] = [np.zeros((4, 4, 1, 1), np.float32)]
    path.write_bytes(caffemodel_bytes(blobs))
    with pytest.raises(WeightsError, match="blob 'fc8' matches no layer"):
        convert.convert_released_weights(path, "fcn32s_caffe")
    blobs = caffe_blobs("fcn32s")
    del blobs["conv3_2"]
    path.write_bytes(caffemodel_bytes(blobs))
    with pytest.raises(WeightsError, match="no blob for layer 'conv3_2'"):
        convert.convert_released_weights(path, "fcn32s_caffe")
    blobs = caffe_blobs("fcn32s")
    path.write_bytes(caffemodel_bytes(blobs))
    with pytest.raises(WeightsError, match="blob 'upscore' matches no layer of fcn16s_caffe"):
        convert.convert_released_weights(path, "fcn16s_caffe")
    blobs = caffe_blobs("fcn8s_atonce")
    blobs["scale_pool4"] = [np.ones_like(blobs["scale_pool4"][0])]
    path.write_bytes(caffemodel_bytes(blobs))
    with pytest.raises(WeightsError, match="'scale_pool4' holds factors other than 0.01"):
        convert.convert_released_weights(path, "fcn8s_atonce_caffe")


def test_pth_state_dict_converts_like_the_caffemodel(tmp_path):
    torch = pytest.importorskip("torch")
    blobs = caffe_blobs("fcn16s")
    state = {f"{name}.{kind}": torch.from_numpy(array)
             for name, arrays in blobs.items() for kind, array in zip(("weight", "bias"), arrays)}
    path = tmp_path / "fcn16s.pth"
    torch.save(state, path)
    model = convert.convert_released_weights(path, "fcn16s_caffe")
    image = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    np.testing.assert_allclose(np.asarray(model(image[None]))[0], np_fcn("fcn16s", blobs, image),
                               rtol=1e-4, atol=1e-3)


def test_pth_without_torch_names_the_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)
    path = tmp_path / "model.pth"
    path.write_bytes(b"PK\x03\x04" + bytes(10))
    with pytest.raises(WeightsError, match=r"pip install torch"):
        convert.convert_released_weights(path, "fcn8s_caffe")


def test_pth_mapping_through_a_stand_in_torch(tmp_path, monkeypatch):
    """The state-dict path without torch installed: a module standing in for torch.load."""
    import sys
    import types

    blobs = caffe_blobs("fcn8s_atonce")
    del blobs["scale_pool4"], blobs["scale_pool3"]  # pytorch-fcn multiplies by constants

    class Tensor:
        def __init__(self, array):
            self.array = array

        def detach(self):
            return self

        cpu = float = detach

        def numpy(self):
            return self.array

    state = {f"{name}.{kind}": Tensor(array)
             for name, arrays in blobs.items() for kind, array in zip(("weight", "bias"), arrays)}
    fake = types.ModuleType("torch")
    fake.load = lambda path, map_location, weights_only: {"model_state_dict": state}
    monkeypatch.setitem(sys.modules, "torch", fake)
    path = tmp_path / "fcn8s_atonce.pth"
    path.write_bytes(b"PK\x03\x04")
    model = convert.convert_released_weights(path, "fcn8s_atonce_caffe")
    image = np.random.default_rng(4).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    expected = np_fcn("fcn8s_atonce", blobs, image)
    logits = np.asarray(model(image[None]))[0]
    assert np.abs(logits - expected).max() <= 1e-5 * np.abs(expected).max() + 1e-5
    state["fc8.weight"] = Tensor(np.zeros((2, 2, 1, 1), np.float32))
    with pytest.raises(WeightsError, match="blob 'fc8' matches no layer"):
        convert.convert_released_weights(path, "fcn8s_atonce_caffe")
    del state["fc8.weight"], state["score_pool3.bias"]
    with pytest.raises(WeightsError, match="layer 'score_pool3' has 1 blobs"):
        convert.convert_released_weights(path, "fcn8s_atonce_caffe")


def test_builder_checks_and_training_arguments():
    from kseg.errors import KsegError

    model = create_model("fcn8s_caffe", num_classes=3, width=WIDTH, weights=None, dropout=0.5,
                         learn_upsampling=False)
    assert model.name == "fcn8s_caffe" and model.output_shape == (None, None, None, 3)
    assert not model.get_layer("upscore8").trainable and model.get_layer("upscore2").trainable
    with pytest.raises(ValueError, match="width"):
        create_model("fcn32s_caffe", width=2)
    with pytest.raises(KsegError, match="kseg weights convert"):
        create_model("fcn32s_caffe", weights="imagenet")
