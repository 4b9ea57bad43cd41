"""Every verb that writes follows the one output policy (kseg.outputs), refusal by refusal.

For each writer (predict, evaluate, export, heatmap, data stats --json, data synth,
data init, weights convert, train --run-dir), each class of destination that would destroy
something is refused with one `error:` line naming the path, and nothing on disk changes:

- the output is one of the verb's inputs (a mask, an image, the model);
- the output lies inside an input folder (the dataset) or is reached through a link into it;
- the output is a user's existing file, with --force where the verb has it;
- the output is a symbolic link to a user's file.
"""

import os

import pytest
import robustness_corpus as corpus
from conftest import tiny_run_dir
from test_outputs_and_models import assert_refused, run, snapshot


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    data = corpus.write_dataset(root / "data", "one_pixel")
    model_run = tiny_run_dir(root, "fcn32s", ("toy", ["a", "b", "c"], [[255, 0, 0], [0, 255, 0], [0, 0, 255]]))
    user = root / "mine"
    user.mkdir()
    (user / "thesis.json").write_text('{"chapter": 1}')
    (user / "thesis.png").write_bytes(b"\x89PNG\r\n\x1a\n my drawing")
    os.symlink(user / "thesis.json", root / "link.json")
    os.symlink(data.root, root / "alias")
    (root / "source.caffemodel").write_bytes(b"\x00" * 64)
    return {"root": root, "data": data, "run": model_run, "mask": os.path.join(data.root, "masks", "good0.png"),
            "image": os.path.join(data.images, "good0.png"), "user_json": user / "thesis.json",
            "user_png": user / "thesis.png", "link": root / "link.json", "alias": root / "alias"}


def _dataset(world):
    return ["--data", "folder", "--data-dir", world["data"].root]


# verb -> function(world, destination) -> command line; destinations are file outputs
VERBS = {
    "evaluate": lambda w, out: ["evaluate", w["run"], *_dataset(w), "--split", "all", "--out", out],
    "evaluate --confusion-png": lambda w, out: ["evaluate", w["run"], *_dataset(w), "--split", "all",
                                                "--out", w["root"] / "fresh.json", "--confusion-png", out],
    "data stats --json": lambda w, out: ["data", "stats", *_dataset(w), "--no-progress", "--json", out],
    "export tflite": lambda w, out: ["export", w["run"], "--format", "tflite", "--out", out, "--force"],
    "export onnx": lambda w, out: ["export", w["run"], "--format", "onnx", "--out", out, "--force"],
    "heatmap": lambda w, out: ["heatmap", w["image"], "--class", "1", "--weights",
                               w["root"] / "vgg16.h5", "--out", out, "--force"],
    "weights convert": lambda w, out: ["weights", "convert", w["root"] / "source.caffemodel", "--out",
                                       str(out) if str(out).endswith(".keras") else str(out) + ".keras",
                                       "--force"],
}

# destination class -> (function(world) -> path, words the error line must hold)
DESTINATIONS = {
    "an input mask": (lambda w: w["mask"], ("input",)),
    "an input image": (lambda w: w["image"], ("input",)),
    "the model": (lambda w: w["run"] / "checkpoints" / "best.keras", ()),
    "inside the dataset": (lambda w: os.path.join(w["data"].root, "notes.json"), ("input folder",)),
    "inside the dataset through a link": (lambda w: w["alias"] / "new.png", ("input folder",)),
    "a user's file": (lambda w: w["user_json"], ()),
    "a link to a user's file": (lambda w: w["link"], ()),
}

# what does not apply: heatmap's only inputs are its image and weights, convert's its source
NOT_INPUTS = {("heatmap", "an input mask"), ("heatmap", "inside the dataset"),
              ("heatmap", "inside the dataset through a link"), ("heatmap", "the model"),
              ("export tflite", "an input mask"), ("export tflite", "an input image"),
              ("export tflite", "inside the dataset"), ("export tflite", "inside the dataset through a link"),
              ("export onnx", "an input mask"), ("export onnx", "an input image"),
              ("export onnx", "inside the dataset"), ("export onnx", "inside the dataset through a link"),
              ("weights convert", "an input mask"), ("weights convert", "an input image"),
              ("weights convert", "inside the dataset"), ("weights convert", "inside the dataset through a link"),
              ("weights convert", "the model"), ("weights convert", "a link to a user's file"),
              ("weights convert", "a user's file")}


@pytest.mark.parametrize("verb, destination", [(verb, destination) for verb in VERBS for destination in DESTINATIONS
                                                if (verb, destination) not in NOT_INPUTS])
def test_a_destination_that_would_destroy_something_is_refused(world, verb, destination):
    path, words = DESTINATIONS[destination]
    out = path(world)
    before = snapshot(world["root"])
    assert_refused(run(VERBS[verb](world, out)), str(out).rsplit("/", 1)[-1], *words)
    assert snapshot(world["root"]) == before


@pytest.mark.parametrize("verb", ["heatmap", "export tflite", "weights convert"])
def test_force_does_not_replace_a_users_file(world, verb):
    out = world["user_png"] if verb == "heatmap" else world["root"] / "mine" / (
        "thesis.tflite" if verb == "export tflite" else "thesis.keras")
    if not os.path.exists(out):
        out.write_bytes(b"the user's own")
    before = snapshot(world["root"])
    assert_refused(run(VERBS[verb](world, out)), str(out), "not written by kseg")
    assert snapshot(world["root"]) == before


@pytest.mark.parametrize("where", ["inside the dataset", "the dataset itself", "holding the dataset",
                                   "a user's file"])
def test_train_run_dir_and_synth_out_are_checked_too(world, tmp_path, where):
    folder = {"inside the dataset": os.path.join(world["data"].root, "runs", "x"),
              "the dataset itself": world["data"].root, "holding the dataset": world["root"],
              "a user's file": world["user_json"]}[where]
    before = snapshot(world["root"])
    result = run(["train", *_dataset(world), "--model", "fcn32s", "--weights", "none", "--width", "0.0625",
                  "--epochs", "1", "--run-dir", folder])
    assert_refused(result, str(folder))
    if where != "inside the dataset":
        result = run(["data", "synth", folder, "--num-train", "1", "--num-val", "1", "--size", "32x32", "--force"])
        assert_refused(result, str(folder), code=2 if where == "a user's file" else 1)  # 2: click's usage error
    assert snapshot(world["root"]) == before


def test_data_init_never_replaces_a_classes_file(world):
    path = os.path.join(world["data"].root, "classes.yaml")
    before = snapshot(world["root"])
    assert_refused(run(["data", "init", world["data"].root, "--no-progress"]), path, "never replaces")
    assert snapshot(world["root"]) == before
