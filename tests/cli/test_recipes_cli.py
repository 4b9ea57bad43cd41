"""Training recipes: `kseg recipes`, `kseg train --recipe NAME`, and the recipe files."""

import os
import shlex
import subprocess
import sys

import pytest
from click.testing import CliRunner
from kseg.cli.main import cli

from kseg.config import TrainConfig
from kseg.errors import KsegError
from kseg.recipes import RECIPES_DIR, load_recipe, read_recipe, recipe_names

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def trained(monkeypatch):
    """Replaces the training loop: `kseg train` builds its config, which is kept here."""
    import kseg.training

    configs = []

    def fake_train(config, **kwargs):
        configs.append(config)
        return "runs/fake"

    monkeypatch.setattr(kseg.training, "train", fake_train)
    return configs


def train_config(trained, arguments):
    result = CliRunner().invoke(cli, ["train", *arguments])
    assert result.exit_code == 0, result.output
    return trained.pop()


def test_the_shipped_recipes_are_there_and_valid():
    assert {"demo", "camvid-scratch", "paper-voc"} <= set(recipe_names())
    for name in recipe_names():
        recipe = load_recipe(name)
        assert recipe.name == name and recipe.version >= 1 and recipe.description
        assert isinstance(recipe.config(), TrainConfig)
        # a recipe file is a config file too: the config reader skips its recipe section
        assert TrainConfig.from_yaml(recipe.path) == recipe.config()


def test_the_recipes_hold_what_they_promise():
    scratch = load_recipe("camvid-scratch").config()
    assert (scratch.model, scratch.data, scratch.weights, scratch.width) == ("fcn8s_vgg16bn", "camvid", "none", 0.125)
    assert (scratch.batch_size, scratch.crop, scratch.optimizer, scratch.lr) == (4, (360, 480), "adam", 2e-3)
    assert (scratch.schedule, scratch.class_weights, scratch.seed) == ("poly", "sqrt-median-frequency", 0)
    assert (scratch.epochs, scratch.val_split) == (30, "none")
    paper = load_recipe("paper-voc").config()
    assert (paper.model, paper.data, paper.weights, paper.optimizer) == ("fcn8s", "voc", "imagenet", "sgd")
    assert (paper.momentum, paper.lr, paper.schedule) == (0.99, 1e-4, "constant")
    assert (paper.weight_decay, paper.batch_size, paper.crop) == (5e-4, 1, None)
    assert "cannot express" in load_recipe("paper-voc").description


def makefile_train_arguments():
    """The options of `make demo`'s `kseg train` line, its variables at their defaults."""
    with open(os.path.join(REPO, "Makefile"), encoding="utf8") as handle:
        text = handle.read().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if "$(BIN)/kseg train" in line)
    defaults = {"$(DEMO)": "demo", "$(DEMO_EPOCHS)": "12"}
    for variable, value in defaults.items():
        line = line.replace(variable, value)
    return shlex.split(line.split("$(BIN)/kseg train", 1)[1])


def test_the_demo_recipe_is_what_make_demo_trains(trained):
    from_makefile = train_config(trained, makefile_train_arguments())
    from_recipe = train_config(trained, ["--recipe", "demo", "--run-dir", "demo/run"])
    assert from_recipe == from_makefile


def test_the_camvid_recipe_is_the_benchmark_script_at_30_epochs(trained):
    with open(os.path.join(REPO, "benchmarks", "camvid_from_scratch.sh"), encoding="utf8") as handle:
        text = handle.read().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if '"$KSEG" train' in line)
    line = line.replace('"$DATA"', "data/camvid").replace('"$EPOCHS"', "30").replace('"$OUT', '"out')
    from_script = train_config(trained, shlex.split(line.split('"$KSEG" train', 1)[1]))
    from_recipe = train_config(trained, ["--recipe", "camvid-scratch", "--data-dir", "data/camvid",
                                         "--run-dir", "out/fcn8s_vgg16bn"])
    assert from_recipe == from_script


def test_options_given_with_a_recipe_win(trained):
    config = train_config(trained, ["--recipe", "camvid-scratch", "--data-dir", "d", "--epochs", "2",
                                    "--lr", "0.01", "--crop", "none", "--no-precision-check"])
    assert (config.epochs, config.lr, config.crop, config.precision_check) == (2, 0.01, None, False)
    assert (config.model, config.width, config.class_weights) == ("fcn8s_vgg16bn", 0.125, "sqrt-median-frequency")
    assert config.data_dir == "d"


@pytest.mark.parametrize("arguments, message", [
    (["--recipe", "camvid-scrach"],
     "unknown recipe 'camvid-scrach'; did you mean camvid-scratch or folder-scratch? known recipes: "),
    (["--recipe", "zzz"], "unknown recipe 'zzz'; known recipes: camvid-scratch, demo, folder-scratch, paper-voc"),
    (["--recipe", "demo", "--config", "x.yaml"], "--recipe and --config both give the settings"),
    (["--recipe", "demo", "--resume", "--run-dir", "r"], "--recipe cannot be given with it"),
    (["--recipe", "demo", "--epochs", "0"], "--epochs"),
])  # fmt: skip
def test_recipe_mistakes_are_one_line(arguments, message, trained):
    result = CliRunner().invoke(cli, ["train", *arguments])
    assert result.exit_code != 0 and not trained
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output


def test_recipes_lists_descriptions_and_results():
    result = CliRunner().invoke(cli, ["recipes"])
    assert result.exit_code == 0, result.output
    blocks = {block.split(" ", 1)[0]: " ".join(block.split()) for block in result.output.strip().split("\n\n")}
    assert sorted(blocks) == recipe_names()
    assert "val mIoU 0.771" in blocks["demo"] and "AMD EPYC" in blocks["demo"] and "`make demo`" in blocks["demo"]
    assert "val mIoU 0.5647" in blocks["camvid-scratch"] and "AMD EPYC" in blocks["camvid-scratch"]
    assert "val mIoU: not measured yet" in blocks["folder-scratch"]
    assert "crop=360x480" in blocks["camvid-scratch"]
    assert "kseg train --recipe camvid-scratch --data-dir DATA" in blocks["camvid-scratch"]
    assert "kseg train --recipe demo" in blocks["demo"] and "momentum=0.99" in blocks["paper-voc"]


def test_recipes_name_prints_the_file_and_unknown_names_say_what_exists():
    result = CliRunner().invoke(cli, ["recipes", "paper-voc"])
    assert result.exit_code == 0
    with open(os.path.join(RECIPES_DIR, "paper-voc.yaml"), encoding="utf8") as handle:
        assert result.output.strip() == handle.read().strip()
    result = CliRunner().invoke(cli, ["recipes", "dmeo"])
    assert result.exit_code == 1 and "did you mean demo?" in result.output
    assert "known recipes: camvid-scratch, demo, folder-scratch, paper-voc" in result.output


def test_train_help_mentions_recipes():
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert "--recipe NAME" in result.output and "camvid-scratch" in result.output


@pytest.mark.parametrize("text, problem", [
    ("epochs: 3\n", "needs a 'recipe:' section"),
    ("recipe: {name: other, version: 1, description: x}\n", "name must be the file's name"),
    ("recipe: {name: r, version: 0, description: x}\n", "version must be a whole number"),
    ("recipe: {name: r, version: 1, description: ''}\n", "description must be"),
    ("recipe: {name: r, version: 1, description: x, results: [{metric: m, value: 0.5}]}\n",
     "needs the cpu and the command"),
    ("recipe: {name: r, version: 1, description: x, results: [{metric: m, when: today}]}\n",
     "unknown key 'when'"),
    ("recipe: {name: r, version: 1, description: x}\nlearning_rate: 1\n", "unknown key 'learning_rate'"),
    ("recipe: {name: r, version: 1, description: x}\nlr: 99\n", "lr"),
])  # fmt: skip
def test_bad_recipe_files_are_refused_naming_the_file(text, problem, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(KsegError) as error:
        read_recipe(path)
    assert str(error.value).startswith(str(path)) and problem in str(error.value)


def test_a_package_build_carries_the_recipes(tmp_path):
    """setup.py declares the recipes as package data, so a non-editable install has them."""
    result = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    shipped = sorted(name for name in os.listdir(tmp_path / "kseg" / "recipes") if name.endswith(".yaml"))
    assert shipped == [f"{name}.yaml" for name in recipe_names()]


def test_listing_recipes_imports_neither_tensorflow_nor_keras():
    script = ("import sys\nfrom click.testing import CliRunner\nfrom kseg.cli.main import cli\n"
              "result = CliRunner().invoke(cli, ['recipes'])\n"
              "assert result.exit_code == 0, result.output\n"
              "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_folder_recipe_trains_a_users_folder_from_random_weights_at_the_images_size():
    config = load_recipe("folder-scratch").config()
    assert config.data == "folder" and config.weights == "none" and config.crop is None
