"""Every export carries its class names and colours, under the tensor names kseg promises
(kseg/export_metadata.py), readable with each format's own tools."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import randomize_weights

from kseg.errors import KsegError
from kseg.export_metadata import KSEG_FILE, read_metadata
from kseg.exporting import ExportedModel, ExportTarget, export_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

NAMES = ["background", "person", "bicycle"]
PALETTE = [[0, 0, 0], [220, 20, 60], [119, 11, 32]]
CLASSES = {"dataset": "toy", "class_names": NAMES, "palette": PALETTE, "ignore_index": 255}


@pytest.fixture(scope="module")
def model():
    from kseg.models import create_model

    return randomize_weights(create_model("fcn8s", num_classes=3, weights=None, width=0.0625))


@pytest.fixture(scope="module")
def exports(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exports")
    return {
        "savedmodel": export_model(model, folder / "saved", ExportTarget("savedmodel", classes=CLASSES)),
        "mediapipe": export_model(model, folder / "mp.tflite", ExportTarget("tflite", input_size=(64, 96),
                                  classes=CLASSES)),
        "litert": export_model(model, folder / "any.tflite", ExportTarget("tflite", classes=CLASSES,
                               mediapipe=False)),
        "onnx": export_model(model, folder / "model.onnx", ExportTarget("onnx", classes=CLASSES)),
    }


def test_savedmodel_serves_names_and_colours_and_describes_itself(exports):
    import tensorflow as tf

    loaded = tf.saved_model.load(exports["savedmodel"])
    served = loaded.signatures["kseg_metadata"]()
    assert [name.decode() for name in served["class_names"].numpy()] == NAMES
    assert served["palette"].numpy().tolist() == PALETTE
    serving = loaded.signatures["serving_default"]
    assert list(serving.structured_input_signature[1]) == ["images"]
    assert set(serving.structured_outputs) == {"classes", "logits"}
    with open(os.path.join(exports["savedmodel"], "assets.extra", KSEG_FILE), encoding="utf8") as handle:
        described = json.load(handle)
    assert described["class_names"] == NAMES and described["palette"] == PALETTE
    assert described["outputs"] == ["classes", "logits"] and described["inputs"] == ["images"]


def test_mediapipe_tflite_has_named_tensors_and_metadata_its_displayer_reads(exports):
    from ai_edge_litert.interpreter import Interpreter

    from kseg.export_metadata import _mediapipe_metadata

    interpreter = Interpreter(model_path=exports["mediapipe"])
    (image,) = interpreter.get_input_details()
    assert image["name"] == "images" and image["dtype"] == np.uint8
    assert image["shape"].tolist() == [1, 64, 96, 3]
    assert [o["name"] for o in interpreter.get_output_details()] == ["logits"]
    assert interpreter.get_output_details()[0]["shape"].tolist() == [1, 64, 96, 3]

    metadata = _mediapipe_metadata()[0]
    displayer = metadata.MetadataDisplayer.with_model_file(exports["mediapipe"])
    shown = json.loads(displayer.get_metadata_json())
    graph = shown["subgraph_metadata"][0]
    assert graph["input_tensor_metadata"][0]["process_units"][0]["options"] == {
        "mean": [0.0], "std": [1.0]}
    assert graph["custom_metadata"][0]["name"] == "SEGMENTER_METADATA"
    assert graph["output_tensor_metadata"][0]["associated_files"][0]["name"] == "labels.txt"
    # Custom metadata (the segmenter's options) is a schema 1.5.0 member.
    assert shown["min_parser_version"] == "1.5.0"
    assert displayer.get_associated_file_buffer("labels.txt").decode().split("\n") == NAMES
    described = json.loads(displayer.get_associated_file_buffer(KSEG_FILE))
    assert described["palette"] == PALETTE and described["outputs"] == ["logits"]
    assert described["input"]["shape"] == [1, 64, 96, 3]


def test_plain_litert_tflite_keeps_both_outputs_by_name(exports):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=exports["litert"])
    assert interpreter.get_input_details()[0]["name"] == "images"
    assert interpreter.get_input_details()[0]["shape_signature"].tolist() == [1, -1, -1, 3]
    names = {o["name"] for o in interpreter.get_output_details()}
    assert names == {"classes", "logits"}
    assert interpreter.get_signature_list()["serving_default"]["outputs"] == ["classes", "logits"]
    with zipfile.ZipFile(exports["litert"]) as packed:  # any zip reader finds the labels
        assert sorted(packed.namelist()) == sorted(["labels.txt", KSEG_FILE])
        assert json.loads(packed.read(KSEG_FILE))["class_names"] == NAMES
    from kseg.export_metadata import _mediapipe_metadata

    shown = json.loads(_mediapipe_metadata()[0].MetadataDisplayer.with_model_file(
        exports["litert"]).get_metadata_json())
    assert shown["min_parser_version"] == "1.0.0"  # no member newer than the first schema


def test_onnx_names_its_dimensions_and_carries_the_classes(exports):
    import onnx
    import onnxruntime

    model = onnx.load(exports["onnx"])
    dims = {value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            for value in list(model.graph.input) + list(model.graph.output)}
    assert dims == {"images": ["batch", "height", "width", 3],
                    "classes": ["batch", "height", "width"],
                    "logits": ["batch", "height", "width", 3]}
    session = onnxruntime.InferenceSession(exports["onnx"], providers=["CPUExecutionProvider"])
    properties = session.get_modelmeta().custom_metadata_map
    assert json.loads(properties["class_names"]) == NAMES
    assert json.loads(properties["palette"]) == PALETTE
    assert json.loads(properties["kseg_export"])["dataset"] == "toy"


@pytest.mark.parametrize("which, export_format", [("savedmodel", "savedmodel"), ("mediapipe", "tflite"),
                                                  ("litert", "tflite"), ("onnx", "onnx")])
def test_exported_model_reads_names_and_colours(exports, which, export_format):
    exported = ExportedModel(exports[which], export_format)
    assert exported.class_names == NAMES and exported.palette == PALETTE
    assert read_metadata(exports[which], export_format)["ignore_index"] == 255


def test_a_fixed_size_file_refuses_another_size_in_one_line(exports):
    exported = ExportedModel(exports["mediapipe"], "tflite")
    assert exported.input_size == (64, 96)
    assert exported(np.zeros((64, 96, 3), np.uint8)).shape == (64, 96, 3)
    with pytest.raises(KsegError, match=r"takes 64x96 images only .* this image is 50x70"):
        exported(np.zeros((50, 70, 3), np.uint8))


def test_without_classes_json_classes_are_numbered_and_uncoloured(model, tmp_path):
    import tensorflow as tf

    out = export_model(model, tmp_path / "m.tflite", ExportTarget("tflite", input_size=(32, 32)))
    exported = ExportedModel(out, "tflite")
    assert exported.class_names == ["class 0", "class 1", "class 2"] and exported.palette is None
    saved = export_model(model, tmp_path / "saved", ExportTarget("savedmodel"))
    served = tf.saved_model.load(saved).signatures["kseg_metadata"]()
    assert served["class_names"].shape == (3,) and served["palette"].shape == (0, 3)


def test_an_export_without_a_description_reads_as_none_and_a_damaged_one_is_refused(tmp_path):
    saved = tmp_path / "saved"
    (saved / "assets.extra").mkdir(parents=True)
    marker = saved / "assets.extra" / KSEG_FILE
    marker.write_text(json.dumps({"written_by": "kseg export", "format": "savedmodel"}))
    assert read_metadata(saved, "savedmodel") is None
    marker.write_text("{not json")
    with pytest.raises(KsegError, match="cannot be read"):
        read_metadata(saved, "savedmodel")
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(b"TFL3 not a zip")
    assert read_metadata(plain, "tflite") is None


def test_a_class_name_with_a_line_break_is_refused_for_tflite(model, tmp_path):
    classes = {"class_names": ["road", "car\nbus", "sky"]}
    with pytest.raises(KsegError, match="line break"):
        export_model(model, tmp_path / "new" / "m.tflite",
                     ExportTarget("tflite", input_size=(32, 32), classes=classes))  # fmt: skip
    assert not (tmp_path / "new").exists()  # refused: not even the folder it would go in is made


@pytest.mark.parametrize("export_format, out", [("tflite", "m.tflite"), ("savedmodel", "saved")])
def test_a_class_name_that_is_not_utf8_is_refused_in_one_line(model, tmp_path, export_format, out):
    classes = {"class_names": ["road", "caf\udcc3", "sky"]}  # a folder name whose bytes were not UTF-8
    with pytest.raises(KsegError, match=r"class name 'caf\\udcc3' holds bytes that are not UTF-8"):
        export_model(model, tmp_path / "new" / out,
                     ExportTarget(export_format, input_size=(32, 32), classes=classes))  # fmt: skip
    assert not (tmp_path / "new").exists()


def test_onnx_keeps_a_class_name_that_is_not_utf8(model, tmp_path):
    classes = {"class_names": ["road", "caf\udcc3", "sky"]}  # its description is JSON, escaped
    out = export_model(model, tmp_path / "m.onnx", ExportTarget("onnx", classes=classes))
    assert read_metadata(out, "onnx")["class_names"] == classes["class_names"]


def test_a_tflite_description_that_unpacks_too_large_or_is_damaged_is_refused_in_one_line(tmp_path):
    bomb = tmp_path / "bomb.tflite"  # about 70 KB that unpacks to more than 64 MiB of valid JSON
    padding = "x" * (65 << 20)
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as packed:
        packed.writestr(KSEG_FILE, json.dumps({"class_names": ["a"], "padding": padding}))
    del padding
    with pytest.raises(KsegError, match="description is larger than kseg reads"):
        read_metadata(bomb, "tflite")
    marker = tmp_path / "saved" / "assets.extra" / KSEG_FILE
    marker.parent.mkdir(parents=True)
    with zipfile.ZipFile(bomb) as packed:
        marker.write_bytes(packed.read(KSEG_FILE))
    with pytest.raises(KsegError, match="description is larger than kseg reads"):
        read_metadata(tmp_path / "saved", "savedmodel")
    marker.unlink()
    damaged = tmp_path / "damaged.tflite"
    with zipfile.ZipFile(damaged, "w", zipfile.ZIP_DEFLATED) as packed:
        packed.writestr(KSEG_FILE, json.dumps({"class_names": ["a"] * 100}))
    with zipfile.ZipFile(damaged) as packed:
        info = packed.getinfo(KSEG_FILE)
    data = bytearray(damaged.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start:start + 4] = b"\xff\xff\xff\xff"  # deflate block type 3: not a deflate stream
    damaged.write_bytes(bytes(data))
    with pytest.raises(KsegError, match="cannot be read"):
        read_metadata(damaged, "tflite")


def test_mediapipe_labels_are_utf8_whatever_the_locale(model, tmp_path, monkeypatch):
    import kseg.exporting

    names, raw = ["background", "Straße", "道路"], {}
    monkeypatch.setattr(kseg.exporting, "tflite_with_metadata",
                        lambda content, description, mediapipe: raw.update(content=content, description=description)
                        or b"")  # fmt: skip
    export_model(model, tmp_path / "raw.tflite", ExportTarget("tflite", input_size=(32, 32),
                                                              classes={"class_names": names}))
    (tmp_path / "raw.bin").write_bytes(raw["content"])
    (tmp_path / "description.json").write_text(json.dumps(raw["description"]))
    script = ("import json, sys\nfrom kseg.export_metadata import tflite_with_metadata\n"
              "assert not sys.flags.utf8_mode\n"
              "content = open('raw.bin', 'rb').read()\n"
              "description = json.load(open('description.json'))\n"
              "open('m.tflite', 'wb').write(tflite_with_metadata(content, description))\n")
    environment = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True,
                          text=True, errors="replace")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    with zipfile.ZipFile(tmp_path / "m.tflite") as packed:
        assert packed.read("labels.txt").decode("utf-8").split("\n") == names
