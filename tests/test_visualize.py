import numpy as np
import pytest

from kseg.errors import KsegError
from kseg.labels import default_palette as class_colours
from kseg.visualize import colorize, overlay, palette_from_classes, score_colors


def default_palette(num_colors):
    return np.asarray(class_colours(num_colors), dtype=np.uint8)


def test_default_palette_is_pascal_voc():
    palette = default_palette(256)
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1].tolist() == [128, 0, 0]
    assert palette[2].tolist() == [0, 128, 0]
    assert palette[15].tolist() == [192, 128, 128]  # VOC "person"
    assert len({tuple(colour) for colour in palette}) == 256


def test_palette_from_classes_uses_run_colours_then_defaults():
    classes = {"palette": [[1, 2, 3], [4, 5, 6]]}
    palette = palette_from_classes(classes, 4)
    assert palette.tolist()[:2] == [[1, 2, 3], [4, 5, 6]]
    assert palette.tolist()[2:] == default_palette(4).tolist()[2:]
    assert palette_from_classes(None, 3).tolist() == default_palette(3).tolist()
    with pytest.raises(KsegError, match="palette"):
        palette_from_classes({"palette": [[1, 2]]}, 3)
    with pytest.raises(KsegError, match="0..255"):
        palette_from_classes({"palette": [[1, 2, 300]]}, 3)


def test_colorize_and_ignore_label():
    palette = np.array([[10, 20, 30], [40, 50, 60]], dtype=np.uint8)
    labels = np.array([[0, 1], [255, 7]], dtype=np.uint8)
    colors = colorize(labels, palette)
    assert colors[0, 0].tolist() == [10, 20, 30]
    assert colors[0, 1].tolist() == [40, 50, 60]
    assert colors[1, 0].tolist() == [0, 0, 0]  # ignore label
    assert colors[1, 1].tolist() == [0, 0, 0]  # beyond the palette


def test_overlay_blends():
    image = np.full((2, 2, 3), 100, np.uint8)
    colors = np.full((2, 2, 3), 200, np.uint8)
    assert (overlay(image, colors, 0.5) == 150).all()
    assert (overlay(image, colors, 0.0) == image).all()
    with pytest.raises(ValueError):
        overlay(image, colors[:1], 0.5)


def test_score_colors_low_blue_high_red():
    colors = score_colors(np.array([[0.0, 1.0]]))
    low, high = colors[0, 0], colors[0, 1]
    assert low[2] > low[0] and high[0] > high[2]
    assert score_colors(np.zeros((3, 3))).shape == (3, 3, 3)


def test_legend_lists_each_class_with_its_colour():
    from kseg.visualize import legend

    palette = np.array([[250, 0, 0], [0, 250, 0], [0, 0, 250]], np.uint8)
    sheet = legend(["road", "car", "sky"], palette)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3
    colours = {tuple(c) for c in sheet.reshape(-1, 3)}
    assert {(250, 0, 0), (0, 250, 0), (0, 0, 250)} <= colours
    # one entry per row in one column; only the asked classes when `classes` is given
    assert sheet.shape[0] > legend(["road"], palette[:1]).shape[0]
    partial = legend(["road", "car", "sky"], palette, classes=[2, 2, 7])
    partial_colours = {tuple(c) for c in partial.reshape(-1, 3)}
    assert (0, 0, 250) in partial_colours and (250, 0, 0) not in partial_colours
    # a fixed width flows 19 entries into several columns, fewer rows
    names = [f"class number {i}" for i in range(19)]
    wide = legend(names, default_palette(19), width=800)
    assert wide.shape[1] == 800 and wide.shape[0] < legend(names, default_palette(19)).shape[0]


def test_contact_sheet_tiles_rows_under_titles():
    from kseg.visualize import contact_sheet

    red = np.zeros((10, 12, 3), np.uint8)
    red[..., 0] = 200
    sheet = contact_sheet([[red, red, red], [red, red, red]], gap=4)
    assert sheet.shape[1] == 3 * 12 + 4 * 4
    assert (sheet[..., 0] == 200).sum() == 6 * 10 * 12  # every image, whole, once
    with pytest.raises(ValueError, match="same widths"):
        contact_sheet([[red, red], [red, red[:, :5]]])


def test_the_legend_draws_a_class_name_holding_a_lone_surrogate_escaped():
    """classes.json may spell "\\udcff"; OpenCV's text functions crash the process on it."""
    from kseg.visualize import legend

    sheet = legend(["a\udcffb", "c"], np.zeros((2, 3), np.uint8))
    assert sheet.shape[0] > 0 and (sheet < 255).any()
