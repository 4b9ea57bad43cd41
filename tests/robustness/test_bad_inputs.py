"""Every verb against every bad input of the corpus that applies to it.

Each (verb, case) runs the real `kseg` group in-process (Click's CliRunner), so the CLI's
own error handling is what is tested. The expected outcome is one of:

    ok      the verb accepts the input: exit 0, its outputs written
    error   exit 1, one line `error: ...` naming the file and the problem, no traceback,
            and no output file (not even a partial or temporary one)
    report  the verb's promise for bad files: it names each bad file on a line of its
            own, carries on with the others (their outputs are written), and exits 1

MATRIX below is the table of verbs x cases; a case missing from a verb's row does not
apply to that verb (e.g. a training config for predict).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np
import pytest
import robustness_corpus as corpus
from click.testing import CliRunner
from kseg.cli.main import cli

OK, ERROR, REPORT = "ok", "error", "report"

# verb -> {case: expected outcome}. An image without its mask is no bad file but one that
# cannot be paired: `data verify` reports it, the other verbs leave it out with a warning line.
MATRIX = {
    "predict": {
        "truncated_png": REPORT, "truncated_jpeg": REPORT, "zero_byte": REPORT,
        "text_as_png": REPORT, "png_16bit": OK, "rgba": OK, "grayscale": OK, "one_pixel": OK,
        "very_wide": OK, "empty_folder": ERROR, "unreadable": REPORT, "odd_path": OK,
        "missing_model": ERROR, "not_a_model": ERROR, "lambda_model": ERROR,
    },
    "data verify": {
        "truncated_png": REPORT, "truncated_jpeg": REPORT, "zero_byte": REPORT,
        "text_as_png": REPORT, "png_16bit": REPORT, "rgba": REPORT, "grayscale": REPORT,
        "one_pixel": OK, "very_wide": OK, "mask_wrong_size": REPORT, "mask_value_200": REPORT,
        "colour_mask": REPORT, "missing_mask": REPORT, "empty_folder": REPORT,
        "unreadable": REPORT, "odd_path": OK,
    },
    "data stats": {  # reads the masks only
        "mask_value_200": REPORT, "colour_mask": REPORT, "missing_mask": OK,
        "empty_folder": ERROR, "unreadable": REPORT, "odd_path": OK,
    },
    "train": {
        "truncated_png": ERROR, "truncated_jpeg": ERROR, "zero_byte": ERROR, "text_as_png": ERROR,
        "png_16bit": ERROR, "rgba": ERROR, "grayscale": ERROR, "mask_wrong_size": ERROR,
        "mask_value_200": ERROR, "colour_mask": ERROR, "missing_mask": OK,
        "empty_folder": ERROR, "unreadable": ERROR, "odd_path": OK, "one_pixel": OK,
        "missing_model": ERROR, "not_a_model": ERROR, "lambda_model": ERROR,  # --init-from
        "config_unknown_key": ERROR, "config_wrong_type": ERROR, "config_python_tag": ERROR,
    },
    "evaluate": {
        "truncated_png": ERROR, "truncated_jpeg": ERROR, "zero_byte": ERROR, "text_as_png": ERROR,
        "png_16bit": ERROR, "rgba": ERROR, "grayscale": ERROR, "one_pixel": OK, "very_wide": OK,
        "mask_wrong_size": ERROR, "mask_value_200": ERROR, "colour_mask": ERROR,
        "missing_mask": OK, "empty_folder": ERROR, "unreadable": ERROR, "odd_path": OK,
        "missing_model": ERROR, "not_a_model": ERROR, "lambda_model": ERROR,
    },
    "evaluate --predictions": {  # the case's file is the label map predicted for an image
        "truncated_png": ERROR, "zero_byte": ERROR, "text_as_png": ERROR, "png_16bit": ERROR,
        "rgba": ERROR, "grayscale": OK, "one_pixel": ERROR, "mask_wrong_size": ERROR,
        "mask_value_200": OK, "colour_mask": ERROR, "missing_mask": ERROR,
        "empty_folder": ERROR, "unreadable": ERROR, "odd_path": OK,
    },
    "export": {  # image cases are int8 calibration images
        "truncated_png": ERROR, "truncated_jpeg": ERROR, "zero_byte": ERROR, "text_as_png": ERROR,
        "empty_folder": ERROR, "unreadable": ERROR, "odd_path": OK,
        "missing_model": ERROR, "not_a_model": ERROR, "lambda_model": ERROR,
    },
    "heatmap": {  # model cases are the --weights file
        "truncated_png": ERROR, "truncated_jpeg": ERROR, "zero_byte": ERROR, "text_as_png": ERROR,
        "unreadable": ERROR, "missing_model": ERROR, "not_a_model": ERROR,
    },
}

MODEL_CASES = ("missing_model", "not_a_model", "lambda_model")
CONFIG_CASES = ("config_unknown_key", "config_wrong_type", "config_python_tag")
# Words one of which the message must hold, per case: it names the problem, not only the file.
PROBLEM_WORDS = {
    "truncated_png": ("truncated", "corrupt", "not a readable"),
    "truncated_jpeg": ("truncated", "corrupt", "not a readable"),
    "zero_byte": ("empty",),
    "text_as_png": ("not a readable", "unknown format"),
    "png_16bit": ("16-bit", "uint16"),
    "rgba": ("RGBA", "alpha", "colour", "channels"),
    "grayscale": ("grayscale",),
    "one_pixel": ("1x1", "size", "is 1x1", "(WxH)"),
    "mask_wrong_size": ("(WxH)", "size"),
    "mask_value_200": ("200",),
    "colour_mask": ("colour",),
    "missing_mask": ("not found", "no prediction", "missing"),
    "empty_folder": ("no image", "holds no", "no prediction"),
    "unreadable": ("permission", "Permission"),
    "missing_model": ("not found", "no such"),
    "not_a_model": ("not a loadable", "not a readable", "corrupt"),
    "lambda_model": ("--unsafe",),
    "config_unknown_key": ("unknown key 'learning_rate'",),
    "config_wrong_type": ("epochs", "integer"),
    "config_python_tag": ("python", "YAML"),
}
DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unreadable_driver.py")
TINY_TRAIN = ["--weights", "none", "--width", "0.0625", "--epochs", "1", "--batch-size", "2",
              "--crop", "32x32", "--optimizer", "adam", "--val-split", "none", "--quiet"]


def matrix_entries():
    return [pytest.param(verb, case, expected, id=f"{verb.replace(' ', '_')}-{case}")
            for verb, row in MATRIX.items() for case, expected in row.items()]


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world():
    """The folder every case of this module is written under."""
    base = tempfile.mkdtemp(prefix="kseg-robustness-")
    yield base
    _chmod_tree(base)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def tiny_model(world):
    """A tiny randomized FCN-8s for 3 classes, as a run directory's checkpoints/best.keras."""
    import pathlib

    from conftest import tiny_run_dir

    run = tiny_run_dir(pathlib.Path(world))
    return str(run / "checkpoints" / "best.keras")


@pytest.fixture(scope="module")
def lambda_model(world):
    return corpus.write_lambda_model(os.path.join(world, "models", "lambda.keras"))


@pytest.fixture(scope="module")
def not_a_model(world):
    return corpus.write_not_a_model(os.path.join(world, "models", "garbage.keras"))


@pytest.fixture
def case_dir(world):
    folder = tempfile.mkdtemp(dir=world)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def unreadable_results(world, tiny_model, lambda_model, not_a_model):
    """The unreadable case of every verb, run in one subprocess (see unreadable_driver.py):
    root ignores file permissions unless its capabilities are dropped before any thread."""
    models = {"tiny": tiny_model, "lambda_model": lambda_model, "not_a_model": not_a_model}
    verbs = [verb for verb, row in MATRIX.items() if "unreadable" in row]
    done = subprocess.run(
        [sys.executable, DRIVER, world, json.dumps(models), *verbs],
        capture_output=True, text=True, timeout=600, cwd=os.path.dirname(DRIVER),
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(("RESULTS ", "{"))]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    if lines[-1].startswith("{"):
        pytest.skip(json.loads(lines[-1])["unsupported"])
    return json.loads(lines[-1][len("RESULTS "):])


def _chmod_tree(folder):
    """Makes every file readable again (the unreadable case's files are mode 000)."""
    for parent, _, files in os.walk(folder):
        for name in files:
            os.chmod(os.path.join(parent, name), 0o644)


# -- running a verb on a case ---------------------------------------------------------------


class Setup:
    """The command line of one (verb, case) and what it should (not) write."""

    def __init__(self, arguments, named, outputs, good_outputs=(), bad_outputs=(), unreadable=()):
        self.arguments = arguments
        self.named = named  # the file or folder the error line must name
        self.outputs = outputs  # written on success, absent after an error
        self.good_outputs = good_outputs  # written despite a reported bad file
        self.bad_outputs = bad_outputs  # never written for the bad file
        self.unreadable = unreadable


def setup(verb, case, folder, models):  # noqa: C901 - one branch per verb: the table of what each verb is run with
    data = corpus.write_dataset(os.path.join(folder, "data"), case)  # outputs go beside it, never inside
    model = {"missing_model": os.path.join(folder, "no such model.keras"),
             "not_a_model": models["not_a_model"], "lambda_model": models["lambda_model"]}.get(
        case, models["tiny"])
    named = model if case in MODEL_CASES else data.bad
    if case == "empty_folder" and verb not in ("predict", "export"):
        named = data.root  # a dataset verb names the dataset's root
    locked = ()
    if case == "unreadable":
        locked = [data.bad, os.path.join(data.root, "masks", "bad.png")]
    dataset = ["--data", "folder", "--data-dir", data.root]

    if verb == "predict":
        out = os.path.join(folder, "predictions")
        return Setup(["predict", data.images, "--model", model, "--out", out, "--format", "labels"],
                     named, [os.path.join(out, "good0.png")],
                     [os.path.join(out, "good0.png"), os.path.join(out, "good1.png")],
                     [os.path.join(out, "bad.png")], locked)
    if verb == "data verify":
        return Setup(["data", "verify", *dataset, "--no-progress"], named, [], unreadable=locked)
    if verb == "data stats":
        out = os.path.join(folder, "stats.json")
        if case != "empty_folder":
            named = os.path.join(data.root, "masks", "bad.png")
        return Setup(["data", "stats", *dataset, "--no-progress", "--json", out], named, [out], [out],
                     unreadable=locked)
    if verb == "train":
        run = os.path.join(folder, "run")
        arguments = ["train", *dataset, *TINY_TRAIN, "--run-dir", run]
        if case in MODEL_CASES:
            arguments += ["--init-from", model]
        if case in CONFIG_CASES:
            named = os.path.join(folder, "train config.yaml")
            with open(named, "w") as handle:
                handle.write(corpus.CONFIG_TEXT[case].format(marker=os.path.join(folder, "owned")))
            arguments += ["--config", named]
        return Setup(arguments, named, [os.path.join(run, "checkpoints", "best.keras")], unreadable=locked)
    if verb == "evaluate":
        out = os.path.join(folder, "metrics.json")
        return Setup(["evaluate", model, *dataset, "--split", "all", "--out", out], named,
                     [out, os.path.join(folder, "metrics-confusion.png")], unreadable=locked)
    if verb == "evaluate --predictions":
        predictions = os.path.join(folder, "predicted")
        named = _write_predictions(data, case, predictions)
        if case == "unreadable":
            locked = [named]
        out = os.path.join(folder, "metrics.json")
        return Setup(["evaluate", "--predictions", predictions, *dataset, "--split", "all",
                      "--out", out], named, [out, os.path.join(folder, "metrics-confusion.png")],
                     unreadable=locked)
    if verb == "export":
        if case in MODEL_CASES or case == "odd_path":
            out = os.path.join(data.root, "export", "model été.tflite")
            return Setup(["export", model, "--format", "tflite", "--out", out], named, [out])
        out = os.path.join(folder, "model_int8.tflite")
        return Setup(["export", model, "--format", "tflite", "--quantize", "int8", "--calibration-data",
                      data.images, "--out", out], named, [out], unreadable=locked[:1])
    if verb == "heatmap":
        out = os.path.join(folder, "heatmap.png")
        weights = os.path.join(folder, "vgg16.h5")
        image = data.bad
        if case == "missing_model":
            named = weights
        elif case == "not_a_model":
            named = corpus.write_not_a_model(weights)
        if case in MODEL_CASES:
            image = os.path.join(data.images, "good0.png")
        return Setup(["heatmap", image, "--class", "1", "--weights", weights, "--out", out], named, [out],
                     unreadable=locked[:1])
    raise AssertionError(verb)


def _write_predictions(data, case, folder):
    """Label maps for the dataset's images: the good ones right, the bad one per the case.

    Returns the path the error should name.
    """
    os.makedirs(folder, exist_ok=True)
    masks = os.path.join(data.root, "masks")
    if case == "empty_folder":
        return folder
    for stem in corpus.GOOD_STEMS:
        shutil.copy(os.path.join(masks, stem + ".png"), os.path.join(folder, stem + ".png"))
    target = os.path.join(folder, "bad.png")
    content = corpus.bad_image_bytes(case)
    if case in ("mask_wrong_size", "mask_value_200", "colour_mask", "unreadable", "odd_path"):
        # The dataset's own bad pair is replaced by a good one; the prediction is the case.
        corpus.write_bytes(os.path.join(data.images, "bad.png"), corpus.encode(".png", corpus.random_rgb(*corpus.SIZE)))
        corpus.write_bytes(os.path.join(masks, "bad.png"), corpus.encode(".png", corpus.index_mask(*corpus.SIZE)))
        mask = corpus.index_mask(*corpus.SIZE, seed=4)
        if case == "mask_wrong_size":
            mask = corpus.index_mask(corpus.SIZE[0] + 8, corpus.SIZE[1])
        elif case == "mask_value_200":
            mask[:4, :4] = 200
        elif case == "colour_mask":
            mask = corpus.random_rgb(*corpus.SIZE, seed=4)
        corpus.write_bytes(target, corpus.encode(".png", mask))
        return target
    if case == "missing_mask":  # here: a missing prediction; the dataset pair is made whole
        corpus.write_bytes(os.path.join(masks, "bad.png"), corpus.encode(".png", corpus.index_mask(*corpus.SIZE)))
        return "bad.png"
    extension, data_bytes = content
    if case == "one_pixel":  # a label map, of the wrong size
        data_bytes = corpus.encode(".png", corpus.index_mask(1, 1))
    # The dataset pair of the case stays readable: the image is replaced by a good one of
    # the same size, so only the prediction is at fault.
    os.remove(data.bad)
    corpus.write_bytes(os.path.join(data.images, "bad.png"), corpus.encode(".png", corpus.random_rgb(*corpus.SIZE)))
    corpus.write_bytes(os.path.join(masks, "bad.png"), corpus.encode(".png", corpus.index_mask(*corpus.SIZE)))
    return corpus.write_bytes(target, data_bytes)


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def leftover_temporaries(folder):
    return [os.path.join(parent, name) for parent, dirs, names in os.walk(folder)
            for name in dirs + names if ".tmp" in name]


def names(path, line):
    """Whether `line` names `path` (its full path, or its name when the verb lists files)."""
    return os.fspath(path) in line or os.path.basename(os.fspath(path).rstrip(os.sep)) in line


@pytest.mark.parametrize("verb, case, expected", matrix_entries())
def test_verb_on_bad_input(verb, case, expected, case_dir, tiny_model, lambda_model, not_a_model,
                           request):
    if case == "unreadable":
        ran = request.getfixturevalue("unreadable_results")[verb]
        plan = Setup(**ran["plan"])
        result = types.SimpleNamespace(exit_code=ran["exit_code"], output=ran["output"],
                                       stderr=ran["stderr"], exception=ran["exception"])
        case_dir = ran["folder"]
    else:
        models = {"tiny": tiny_model, "lambda_model": lambda_model, "not_a_model": not_a_model}
        plan = setup(verb, case, case_dir, models)
        invoked = CliRunner().invoke(cli, plan.arguments)
        exception = invoked.exception
        result = types.SimpleNamespace(
            exit_code=invoked.exit_code, output=invoked.output, stderr=invoked.stderr,
            exception=None if exception is None or isinstance(exception, SystemExit) else repr(exception),
        )
    check(verb, case, expected, plan, result, case_dir)


def check(verb, case, expected, plan, result, case_dir):
    output = result.output
    assert "Traceback" not in output, output
    assert "--debug for the traceback" not in output, f"unanticipated failure:\n{output}"
    assert result.exception is None, result.exception
    assert leftover_temporaries(case_dir) == []
    if case == "config_python_tag":
        assert not os.path.exists(os.path.join(case_dir, "owned")), "YAML ran code"

    if expected == OK:
        assert result.exit_code == 0, output
        assert error_lines(result) == [], output
        for path in plan.outputs:
            assert os.path.exists(path), path
        _check_ok(verb, case, plan)
        return

    assert result.exit_code == 1, output
    lines = error_lines(result) if verb != "data verify" else result.output.splitlines()
    naming = [line for line in lines if names(plan.named, line)]
    assert naming, f"no line names {plan.named}:\n{output}"
    assert any(word in line for line in naming for word in PROBLEM_WORDS[case]), (
        f"the line does not say what is wrong ({PROBLEM_WORDS[case]}):\n{output}")
    if expected == ERROR:
        assert len(error_lines(result)) == 1, output
        for path in plan.outputs:
            assert not os.path.exists(path), f"{path} written despite the error"
        return
    # REPORT: the others were processed, the bad file left out, exit 1.
    for path in plan.good_outputs:
        assert os.path.exists(path), f"{path} missing: one bad file stopped the others"
    for path in plan.bad_outputs:
        assert not os.path.exists(path), path
    if verb == "data stats":
        with open(plan.outputs[0]) as handle:
            skipped = json.load(handle)["all"]["skipped"]
        assert [os.path.basename(path) for path, _ in skipped] == ["bad.png"]


def _check_ok(verb, case, plan):
    if verb == "predict":
        from kseg.images import read_mask

        labels = read_mask(os.path.join(os.path.dirname(plan.outputs[0]), "bad.png"))
        assert labels.shape == corpus.image_shape(case) and labels.max() < corpus.NUM_CLASSES
    elif verb == "train":
        from kseg.models.saving import load_model

        assert load_model(plan.outputs[0]).output_shape[-1] == corpus.NUM_CLASSES
    elif verb.startswith("evaluate"):
        with open(plan.outputs[0]) as handle:
            metrics = json.load(handle)
        scored = 2 if case == "missing_mask" and verb == "evaluate" else 3  # an image without a mask: left out
        assert metrics["num_images"] == scored and np.isfinite(metrics["pixel_accuracy"])


def test_matrix_counts():
    """The table covers every corpus case at least once and names only known cases."""
    used = {case for row in MATRIX.values() for case in row}
    assert used == set(corpus.CASES)
    assert sum(len(row) for row in MATRIX.values()) == len(matrix_entries())


def test_training_augmentation_of_a_one_pixel_pair():
    """Random down-scaling of a 1x1 pair once reached OpenCV as a 0-pixel size."""
    from kseg.data.augment import TrainAugmenter

    augmenter = TrainAugmenter(crop=(32, 32))
    image, mask = corpus.random_rgb(1, 1), np.zeros((1, 1), np.uint8)
    for seed in range(40):
        out_image, out_mask = augmenter(image, mask, seed)
        assert out_image.shape == (32, 32, 3) and out_mask.shape == (32, 32)
        assert set(np.unique(out_mask)) <= {0, 255}
