"""ImageNet class heatmaps (kseg/heatmap.py, `kseg heatmap`)."""

import json
import os

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from kseg.cli.main import cli

from kseg.errors import KsegError
from kseg.heatmap import class_scores, render_heatmap, resolve_class
from kseg.images import read_image


@pytest.fixture
def class_index_file(tmp_path):
    table = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    table["281"] = ["n02123045", "tabby"]
    table["134"] = ["n02012849", "crane"]
    table["517"] = ["n03126707", "crane"]
    table["207"] = ["n02099601", "golden_retriever"]
    path = tmp_path / "imagenet_class_index.json"
    path.write_text(json.dumps(table))
    return str(path)


def test_resolve_class_by_index_name_and_wordnet_id(class_index_file, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_class("281") == (281, None)
    assert resolve_class("281", class_index_file) == (281, "tabby")
    assert resolve_class("Tabby", class_index_file) == (281, "tabby")
    assert resolve_class("golden retriever", class_index_file) == (207, "golden_retriever")
    assert resolve_class("n02123045", class_index_file) == (281, "tabby")
    with pytest.raises(KsegError, match="0 to 999"):
        resolve_class("1000")
    with pytest.raises(KsegError, match="--class-index FILE"):
        resolve_class("tabby")
    with pytest.raises(KsegError, match="several"):
        resolve_class("crane", class_index_file)
    with pytest.raises(KsegError, match="no ImageNet class"):
        resolve_class("unicorn", class_index_file)
    with pytest.raises(KsegError, match="0 to 999"):
        resolve_class("-5")
    for text in ("--5", "\u00b2"):  # no index int() reads: looked up as a name, a one-line error
        with pytest.raises(KsegError, match="no ImageNet class"):
            resolve_class(text, class_index_file)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(KsegError, match="not an ImageNet class index"):
        resolve_class("tabby", str(tmp_path / "bad.json"))


def test_render_heatmap_keeps_the_image_size():
    image = np.zeros((10, 14, 3), np.uint8)
    scores = np.linspace(0, 1, 140, dtype=np.float32).reshape(10, 14)
    assert render_heatmap(image, scores).shape == (10, 14, 3)


def test_offline_imagenet_weights_give_the_clear_error(tmp_path, monkeypatch):
    from kseg.models.pretrained import IMAGENET_FILENAME

    if os.path.isfile(os.path.expanduser(f"~/.keras/models/{IMAGENET_FILENAME}")):
        pytest.skip("the ImageNet weights are cached on this machine")
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((40, 50, 3), np.uint8))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["heatmap", "x.png", "--class", "3"])
    assert result.exit_code == 1
    assert "could not download the ImageNet VGG16 weights" in result.output
    assert not os.path.exists(tmp_path / "x_heatmap_3.png")


def test_heatmap_with_a_vgg16_weights_file(vgg16_weights_file, class_index_file, tmp_path):
    from kseg.models import imagenet_heatmap_model

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (90, 131, 3), dtype=np.uint8), (9, 9), 3)
    cv2.imwrite(str(tmp_path / "odd.png"), image[:, :, ::-1])
    model = imagenet_heatmap_model(vgg16_weights_file)
    scores, grid = class_scores(model, image, 281)
    assert grid.shape == (3, 5) and scores.shape == (90, 131)
    assert scores.min() >= 0 and scores.max() <= 1 and grid.max() > 0
    np.testing.assert_allclose(scores[0, 0], grid[0, 0], rtol=1e-6)  # the corner is cell (0, 0)

    out = tmp_path / "heat.png"
    result = CliRunner().invoke(
        cli, ["heatmap", str(tmp_path / "odd.png"), "--class", "tabby", "--weights",
              vgg16_weights_file, "--class-index", class_index_file, "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "class 281 (tabby)" in result.output
    assert read_image(out).shape == (90, 131, 3)


def test_peak_is_the_centre_of_the_best_cell_clipped_to_the_image():
    import numpy as np

    from kseg.heatmap import peak

    grid = np.zeros((2, 3), np.float32)
    grid[1, 2] = 0.75
    assert peak(grid, (40, 90)) == (0.75, 39, 80)


@pytest.mark.parametrize("entry", ["ab", {"n0": 1, "tench": 2}])
def test_a_class_index_entry_that_is_no_list_of_two_strings_is_refused(tmp_path, entry):
    """A two-letter string or a two-key object has a length of two, and two strings in it."""
    from kseg.heatmap import load_class_index

    path = tmp_path / "imagenet_class_index.json"
    path.write_text(json.dumps({str(index): entry if index == 7 else ["n0", "x"] for index in range(1000)}))
    with pytest.raises(KsegError, match="pairs of strings"):
        load_class_index(str(path))
