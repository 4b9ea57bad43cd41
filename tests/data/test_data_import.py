"""`kseg data import`: each source format, written here in that tool's published layout,
becomes a folder dataset whose masks are what the annotations say."""

import base64
import json
import os

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from data_helpers import random_image, write_png
from kseg.cli.main import cli
from pycocotools import mask as coco_mask

from kseg.data.importers import ImportOptions, import_dataset
from kseg.errors import KsegError
from kseg.images import read_mask
from kseg.labels import IGNORE_INDEX


def run(*arguments):
    return CliRunner().invoke(cli, ["data", "import", *map(str, arguments), "--no-progress"])


def mask_of(out, stem, split=""):
    return read_mask(os.path.join(out, "masks", split, f"{stem}.png"))


def class_names(out):
    return [entry["name"] for entry in yaml.safe_load(open(os.path.join(out, "classes.yaml")))["classes"]]


# -- LabelMe -------------------------------------------------------------------------------------


def labelme_file(path, image_path, shapes, size, image_data=None):
    """A LabelMe 5 annotation (its published keys)."""
    document = {"version": "5.5.0", "flags": {}, "shapes": [
        {"label": label, "points": points, "group_id": None, "description": "", "shape_type": kind, "flags": {},
         "mask": None} for label, kind, points in shapes],
        "imagePath": image_path, "imageData": image_data, "imageHeight": size[0], "imageWidth": size[1]}
    with open(path, "w") as handle:
        json.dump(document, handle)


@pytest.fixture
def labelme(tmp_path):
    rng = np.random.default_rng(0)
    source = tmp_path / "labelme"
    write_png(source / "a.png", random_image(rng, 30, 40))
    labelme_file(source / "a.json", "a.png", [
        ("car", "rectangle", [[14, 11], [5, 4]]),  # corners in any order
        ("road", "polygon", [[10, 0], [20, 0], [20, 6], [10, 6]]),  # drawn later: on top of the car
        ("__ignore__", "rectangle", [[30, 20], [33, 25]]),
    ], (30, 40))
    ok, jpeg = cv2.imencode(".jpg", random_image(rng, 24, 32))
    os.makedirs(source / "sub")
    labelme_file(source / "sub" / "b.json", "../nowhere.jpg", [
        ("car", "circle", [[16, 12], [16, 16]]),
        ("road", "point", [[3, 3]]),
        ("road", "linestrip", [[0, 20], [31, 20]]),
    ], (24, 32), image_data=base64.b64encode(jpeg.tobytes()).decode())
    write_png(source / "c.png", random_image(rng, 30, 40))
    labelme_file(source / "c.json", "c.png", [
        ("car", "polygon", [[1, 1], [5, 5]]),  # two points: not a polygon
        ("car", "ellipse", [[1, 1], [5, 5]]),  # not a LabelMe shape type
        ("person", "rectangle", [[35, 25], [50, 40]]),  # reaches outside the 40x30 image
    ], (30, 40))
    labelme_file(source / "d.json", "missing.png", [("car", "rectangle", [[1, 1], [3, 3]])], (30, 40))
    write_png(source / "e.png", random_image(rng, 30, 40))
    labelme_file(source / "e.json", "e.png", [("car", "rectangle", [[1, 1], [3, 3]])], (31, 40))
    return source


def test_labelme_shapes_are_drawn_exactly_and_every_bad_one_is_named(labelme, tmp_path):
    out = tmp_path / "out"
    result = run("labelme", labelme, out)
    assert result.exit_code == 0, result.output
    assert class_names(out) == ["background", "car", "person", "road"]
    expected = np.zeros((30, 40), np.uint8)
    expected[4:12, 5:15] = 1  # the rectangle, corners included
    expected[0:7, 10:21] = 3  # the polygon on top
    expected[20:26, 30:34] = IGNORE_INDEX  # LabelMe's __ignore__ label
    np.testing.assert_array_equal(mask_of(out, "a"), expected)
    b = mask_of(out, "b")  # from imageData; its imagePath leads nowhere
    assert b.shape == (24, 32) and b[12, 16] == 1 and b[3, 3] == 3 and (b[20] == 3).all()
    c = mask_of(out, "c")
    assert (c[25:, 35:] == 2).all() and (c[:25] == 0).all()  # the outside part clipped, the rest kept
    for line in ("c.json: shape 0 ('car'): a polygon needs at least 3 point(s), this one has 2 (annotation left out)",
                 "c.json: shape 1 ('car'): unknown shape_type 'ellipse'",
                 "c.json: shape 2 ('person'): 1 point(s) outside the 40x30 image (e.g. [50, 40])",
                 "d.json: image missing: imagePath 'missing.png' is not there",
                 "e.json: imageWidth x imageHeight is 40x31, the image 40x30 (image left out)"):
        assert line in result.output, line
    assert not os.path.exists(out / "masks" / "d.png") and not os.path.exists(out / "masks" / "e.png")
    assert "imported 3 image(s) from labelme" in result.output
    assert "5 problem(s): 2 annotation left out, 2 image left out, 1 kept, clipped to the image" in result.output
    report = (out / "import-report.txt").read_text()
    assert "unknown shape_type 'ellipse'" in report and "missing.png" in report
    assert "splits: {val_fraction: 0.1, seed: 0}" in (out / "classes.yaml").read_text()


def test_labelme_labels_file_fixes_the_order_and_ignores_unlisted_labels(labelme, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("__ignore__\n_background_\nroad\ncar\n")  # LabelMe's labels.txt
    out = tmp_path / "out"
    result = run("labelme", labelme, out, "--labels", labels)
    assert result.exit_code == 0, result.output
    assert class_names(out) == ["_background_", "road", "car"]
    assert "c.json: shape 2 ('person'): label not in" in result.output and "(pixels ignored)" in result.output
    assert (mask_of(out, "c")[25:, 35:] == IGNORE_INDEX).all()
    assert mask_of(out, "a")[5, 5] == 2


def test_labelme_split_folders_become_splits(tmp_path):
    rng = np.random.default_rng(7)
    source = tmp_path / "labelme"
    for split, stem in (("train", "a"), ("train", "b"), ("valid", "c"), ("", "stray")):
        write_png(source / split / f"{stem}.png", random_image(rng, 10, 12))
        labelme_file(source / split / f"{stem}.json", f"{stem}.png", [("leaf", "rectangle", [[1, 1], [4, 4]])],
                     (10, 12))
    out = tmp_path / "out"
    result = run("labelme", source, out)
    assert result.exit_code == 0, result.output
    assert "(splits: train 2, val 1)" in result.output  # Roboflow's valid/ is kseg's val
    assert sorted(os.listdir(out / "masks" / "train")) == ["a.png", "b.png"]
    assert os.listdir(out / "masks" / "val") == ["c.png"]
    assert "stray.json: not in a split folder (train, val) while the others are (image left out)" in result.output
    assert "splits:" not in (out / "classes.yaml").read_text()


def test_labelme_mask_shapes_are_placed_on_their_box(tmp_path):
    source = tmp_path / "labelme"
    write_png(source / "m.png", random_image(np.random.default_rng(5), 12, 16))
    blob = np.array([[0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 0, 0]], np.uint8)  # 4 wide, 3 high
    encoded = base64.b64encode(cv2.imencode(".png", blob)[1].tobytes()).decode()
    labelme_file(source / "m.json", "m.png", [("leaf", "mask", [[6, 2], [9, 4]]),
                                              ("leaf", "mask", [[0, 0], [5, 5]])], (12, 16))
    document = json.loads((source / "m.json").read_text())
    for shape in document["shapes"]:
        shape["mask"] = encoded
    (source / "m.json").write_text(json.dumps(document))
    out = tmp_path / "out"
    result = run("labelme", source, out)
    assert result.exit_code == 0, result.output
    expected = np.zeros((12, 16), np.uint8)
    expected[2:5, 6:10] = blob
    np.testing.assert_array_equal(mask_of(out, "m"), expected)
    assert "shape 1 ('leaf'): its mask is 4x3 but its points span 6x6 (annotation left out)" in result.output


def test_strict_writes_nothing_and_an_existing_folder_is_never_replaced(labelme, tmp_path):
    result = run("labelme", labelme, tmp_path / "new" / "deeper" / "out", "--strict")
    assert result.exit_code == 1 and "error: " in result.output and "nothing was written" in result.output
    assert os.listdir(tmp_path) == ["labelme"]  # no scratch folder, no folder made for OUT_DIR
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    result = run("labelme", labelme, out)
    assert result.exit_code == 1 and "never replaces it" in result.output
    assert os.listdir(out) == ["mine.txt"]
    result = run("labelme", labelme, labelme / "inside")
    assert result.exit_code == 1 and "lies inside the input folder" in result.output


def test_an_interrupted_import_leaves_nothing(labelme, tmp_path, monkeypatch):
    from kseg.data import importers

    written = []

    def stop(folder, sample):
        written.append(sample.stem)
        if len(written) == 2:
            raise KeyboardInterrupt
        real(folder, sample)

    real = importers._write_sample
    monkeypatch.setattr(importers, "_write_sample", stop)
    with pytest.raises(KeyboardInterrupt):
        import_dataset("labelme", str(labelme), str(tmp_path / "out"), ImportOptions(workers=1))
    assert os.listdir(tmp_path) == ["labelme"]


# -- COCO ------------------------------------------------------------------------------------------


def uncompressed_rle(region):
    """COCO's uncompressed RLE: run lengths over the column-major pixels, zeros first."""
    flat = region.flatten(order="F").astype(np.uint8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return runs if flat[0] == 0 else [0] + runs


def test_coco_polygons_rle_and_crowd(tmp_path):
    rng = np.random.default_rng(1)
    height, width = 32, 48
    write_png(tmp_path / "coco" / "images" / "one.png", random_image(rng, height, width))
    square = np.zeros((height, width), bool)
    square[20:30, 30:45] = True
    crowd = np.zeros((height, width), bool)
    crowd[0:16, 0:24] = True
    blob = np.zeros((height, width), bool)
    blob[2:6, 40:47] = True
    compressed = coco_mask.encode(np.asfortranarray(square.astype(np.uint8)))
    annotations = [
        {"id": 1, "image_id": 10, "category_id": 3, "iscrowd": 0, "segmentation": [[4, 4, 12, 4, 12, 10, 4, 10]]},
        {"id": 2, "image_id": 10, "category_id": 7, "iscrowd": 0,
         "segmentation": {"size": [height, width], "counts": compressed["counts"].decode()}},
        {"id": 3, "image_id": 10, "category_id": 3, "iscrowd": 1,  # drawn first: the cat above stays on top
         "segmentation": {"size": [height, width], "counts": uncompressed_rle(crowd)}},
        {"id": 4, "image_id": 10, "category_id": 7, "iscrowd": 0,
         "segmentation": {"size": [height, width], "counts": uncompressed_rle(blob)}},
        {"id": 5, "image_id": 10, "category_id": 3, "iscrowd": 0, "segmentation": [[1, 1, 5, 5]]},
        {"id": 6, "image_id": 10, "category_id": 99, "iscrowd": 0, "segmentation": [[40, 20, 47, 20, 47, 31]]},
        {"id": 7, "image_id": 10, "category_id": 7, "iscrowd": 0,
         "segmentation": {"size": [height, width], "counts": [5, 3]}},
        {"id": 8, "image_id": 11, "category_id": 3, "iscrowd": 0, "segmentation": [[1, 1, 5, 1, 5, 5]]},
    ]
    document = {"info": {}, "licenses": [],
                "images": [{"id": 10, "file_name": "one.png", "width": width, "height": height},
                           {"id": 11, "file_name": "gone.jpg", "width": width, "height": height}],
                "annotations": annotations,
                "categories": [{"id": 7, "name": "dog", "supercategory": "animal"},
                               {"id": 3, "name": "cat", "supercategory": "animal"}]}
    source = tmp_path / "coco" / "annotations" / "instances.json"
    os.makedirs(source.parent)
    source.write_text(json.dumps(document))
    out = tmp_path / "out"
    result = run("coco", source, out, "--images", tmp_path / "coco" / "images")
    assert result.exit_code == 0, result.output
    assert class_names(out) == ["background", "cat", "dog"]  # category ids 3, 7 -> train ids 1, 2
    expected = np.zeros((height, width), np.uint8)
    expected[crowd] = IGNORE_INDEX  # crowd first ...
    expected[4:10, 4:12] = 1  # ... then objects in file order: pycocotools fills the square x 4..12, y 4..10
    expected[square] = 2  # compressed RLE
    expected[blob] = 2  # uncompressed RLE
    unknown = coco_mask.decode(coco_mask.frPyObjects([[40, 20, 47, 20, 47, 31]], height, width))[:, :, 0]
    expected[unknown.astype(bool)] = IGNORE_INDEX  # category 99 is unknown: its region ignored
    np.testing.assert_array_equal(mask_of(out, "one"), expected)
    for line in ("annotations[4] (id 5, image one.png): a polygon with 2 point(s); a polygon needs at least 3",
                 "annotations[5] (id 6, image one.png): category_id 99 is not in 'categories' (pixels ignored)",
                 "annotations[6] (id 7, image one.png): its RLE counts do not add up to the image's 1536 pixels",
                 "image id 11: image missing"):
        assert line in result.output, line
    assert "1 crowd regions" in result.output and "3 objects drawn" in result.output


def test_coco_hostile_rle_and_coordinates_are_left_out(tmp_path):
    """A compressed RLE whose runs miss pixels (pycocotools would fill them from stale
    memory) and a polygon with a 400-digit coordinate are each named and left out."""
    write_png(tmp_path / "x.png", random_image(np.random.default_rng(7), 8, 10))
    square = np.zeros((8, 10), np.uint8)
    square[2:6, 3:8] = 1
    counts = coco_mask.encode(np.asfortranarray(square))["counts"].decode()
    segmentations = [{"size": [8, 10], "counts": counts[:-1]}, {"size": [8, 10], "counts": counts + "~"},
                     [[1, 1, 10**400, 1, 5, 5]], {"size": [8, 10], "counts": counts}]
    source = tmp_path / "instances.json"
    source.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "x.png", "width": 10, "height": 8}],
        "annotations": [{"id": index + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": shape}
                        for index, shape in enumerate(segmentations)],
        "categories": [{"id": 1, "name": "box"}]}))
    result = run("coco", source, tmp_path / "out")
    assert result.exit_code == 0, result.output
    for index in (0, 1):
        assert f"annotations[{index}] (id {index + 1}, image x.png): its RLE counts do not add up" in result.output
    assert "annotations[2] (id 3, image x.png): a polygon must be a list of numbers" in result.output
    np.testing.assert_array_equal(mask_of(tmp_path / "out", "x"), square)  # the valid RLE alone


def test_coco_crowd_as_class_and_unlabelled_ignored(tmp_path):
    write_png(tmp_path / "x.png", random_image(np.random.default_rng(6), 8, 10))
    crowd = np.zeros((8, 10), bool)
    crowd[2:5, 3:9] = True
    source = tmp_path / "instances.json"
    source.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "x.png", "width": 10, "height": 8}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "iscrowd": 1,
                         "segmentation": {"size": [8, 10], "counts": uncompressed_rle(crowd)}}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}))
    out = tmp_path / "out"
    result = run("coco", source, out, "--crowd", "class", "--unlabelled", "ignore")
    assert result.exit_code == 0, result.output
    assert class_names(out) == ["person", "car"]
    np.testing.assert_array_equal(mask_of(out, "x"), np.where(crowd, 1, IGNORE_INDEX))


def test_coco_ignored_background_leaves_unlabelled_pixels_ignored(tmp_path):
    """With `--ignore-class background` the unlabelled pixels are 255, not the first category's id."""
    write_png(tmp_path / "x.png", random_image(np.random.default_rng(8), 8, 10))
    source = tmp_path / "instances.json"
    source.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "x.png", "width": 10, "height": 8}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                         "segmentation": [[2, 2, 6, 2, 6, 5, 2, 5]]}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}))
    out = tmp_path / "out"
    result = run("coco", source, out, "--ignore-class", "background")
    assert result.exit_code == 0, result.output
    assert class_names(out) == ["person", "car"]
    mask = mask_of(out, "x")
    assert mask[0, 0] == IGNORE_INDEX and mask[3, 4] == 0, mask


def test_coco_roboflow_folder_of_splits(tmp_path):
    rng = np.random.default_rng(8)
    categories = [{"id": 0, "name": "leaves", "supercategory": "none"}, {"id": 1, "name": "leaf",
                                                                         "supercategory": "leaves"}]
    for split, count in (("train", 2), ("valid", 1), ("test", 1)):
        images, annotations = [], []
        for index in range(count):
            write_png(tmp_path / "export" / split / f"{split}{index}.jpg.png", random_image(rng, 12, 16))
            images.append({"id": index, "file_name": f"{split}{index}.jpg.png", "width": 16, "height": 12})
            annotations.append({"id": index, "image_id": index, "category_id": 1, "iscrowd": 0,
                                "segmentation": [[2, 2, 10, 2, 10, 8, 2, 8]], "area": 48, "bbox": [2, 2, 8, 6]})
        (tmp_path / "export" / split / "_annotations.coco.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": categories}))
    out = tmp_path / "out"
    result = run("coco", tmp_path / "export", out)
    assert result.exit_code == 0, result.output
    assert "(splits: test 1, train 2, val 1)" in result.output
    assert class_names(out) == ["background", "leaves", "leaf"]
    assert (mask_of(out, "train1.jpg", "train")[2:8, 2:10] == 2).all()
    categories[1]["name"] = "foliage"
    (tmp_path / "export" / "test" / "_annotations.coco.json").write_text(json.dumps(
        {"images": [], "annotations": [], "categories": categories}))
    result = run("coco", tmp_path / "export", tmp_path / "other")
    assert result.exit_code == 1 and "its categories differ from those of" in result.output


def test_coco_damaged_or_panoptic_files_and_misplaced_options(tmp_path):
    source = tmp_path / "instances.json"
    source.write_text('{"images": [')
    result = run("coco", source, tmp_path / "out")
    assert result.exit_code == 1 and result.output.startswith(f"error: {source}: COCO annotation file is not valid")
    source.write_text(json.dumps({"images": [], "annotations": [{"segments_info": []}], "categories": []}))
    assert "COCO panoptic" in run("coco", source, tmp_path / "out").output
    result = run("cvat", source, tmp_path / "out", "--crowd", "class")
    assert result.exit_code == 1 and "--crowd applies to coco only" in result.output



@pytest.mark.parametrize("name", ["labelme\nsplits: {}", os.fsdecode(b"labelme\xff")])
def test_a_source_named_with_a_line_break_or_not_in_utf8_gives_readable_files(tmp_path, name):
    source = tmp_path / name
    os.makedirs(source)
    ok, png = cv2.imencode(".png", np.zeros((20, 30, 3), np.uint8))
    labelme_file(source / "a.json", "a.png", [("car", "rectangle", [[1, 1], [9, 9]])], (20, 30),
                 base64.b64encode(png.tobytes()).decode())
    import_dataset("labelme", source, tmp_path / "out")
    assert class_names(tmp_path / "out") == ["background", "car"]
    assert (tmp_path / "out" / "import-report.txt").read_text(encoding="utf8").startswith("kseg data import")

def test_the_cli_prints_file_and_class_names_not_in_utf8(tmp_path):
    source, out = tmp_path / os.fsdecode(b"caf\xe9"), tmp_path / os.fsdecode(b"out\xe9")
    os.makedirs(source)
    ok, png = cv2.imencode(".png", np.zeros((20, 30, 3), np.uint8))
    labelme_file(source / "a.json", "a.png", [("car\udce9", "rectangle", [[1, 1], [9, 9]]),
                                              ("car", "polygon", [[1, 1]])], (20, 30),
                 base64.b64encode(png.tobytes()).decode())
    result = run("labelme", source, out, "--max-problems", "0")
    assert result.exit_code == 0, result.output
    assert f"1 more problem(s): all are in {tmp_path}/out\\udce9/import-report.txt" in result.output
    assert "car\\udce9" in result.output and f"wrote {tmp_path}/out\\udce9;" in result.output
    assert class_names(out) == ["background", "car", "car\udce9"]

# -- CVAT ------------------------------------------------------------------------------------------

CVAT_COLOURS = {"background": (0, 0, 0), "car": (255, 0, 0), "tree": (0, 255, 0)}


def test_cvat_segmentation_mask_export(tmp_path):
    rng = np.random.default_rng(2)
    source = tmp_path / "cvat"
    os.makedirs(source / "ImageSets" / "Segmentation")
    (source / "labelmap.txt").write_text("# label:color_rgb:parts:actions\n" + "".join(
        f"{name}:{r},{g},{b}::\n" for name, (r, g, b) in CVAT_COLOURS.items()))
    ids = np.zeros((20, 30), np.uint8)
    ids[2:9, 3:12], ids[10:18, 15:28] = 1, 2
    palette = np.array(list(CVAT_COLOURS.values()), np.uint8)
    os.makedirs(source / "JPEGImages")
    for stem in ("a", "b"):
        cv2.imwrite(str(source / "JPEGImages" / f"{stem}.jpg"), random_image(rng, 20, 30))
        colour = palette[ids].copy()
        if stem == "b":
            colour[0, 0:5] = (1, 2, 3)  # a colour labelmap.txt does not name
        write_png(source / "SegmentationClass" / f"{stem}.png", colour)
    write_png(source / "SegmentationClass" / "c.png", palette[np.zeros((10, 10), np.uint8)])
    cv2.imwrite(str(source / "JPEGImages" / "c.jpg"), random_image(rng, 20, 30))
    (source / "ImageSets" / "Segmentation" / "default.txt").write_text("a\nb\nc\n")
    out = tmp_path / "out"
    result = run("cvat", source, out)
    assert result.exit_code == 0, result.output
    assert class_names(out) == list(CVAT_COLOURS)
    np.testing.assert_array_equal(mask_of(out, "a"), ids)
    b = mask_of(out, "b")
    assert (b[0, 0:5] == IGNORE_INDEX).all() and (b[1:] == ids[1:]).all()
    assert "b.png: 5 px of 1 colour(s) not in" in result.output and "[1, 2, 3] (5 px)" in result.output
    assert "c.png: mask is 10x10, its image" in result.output
    assert open(out / "images" / "a.jpg", "rb").read() == open(source / "JPEGImages" / "a.jpg", "rb").read()


def test_cvat_without_labelmap_is_one_error(tmp_path):
    os.makedirs(tmp_path / "cvat")
    result = run("cvat", tmp_path / "cvat", tmp_path / "out")
    assert result.exit_code == 1 and "labelmap.txt: not found" in result.output
    assert len(result.output.strip().splitlines()) == 1



def test_cvat_names_an_image_listed_in_two_split_lists_once(tmp_path):
    from kseg.data.importers.colour_masks import Cvat

    source = tmp_path / "cvat"
    lists = source / "ImageSets" / "Segmentation"
    os.makedirs(lists)
    os.makedirs(source / "SegmentationClass")
    os.makedirs(source / "JPEGImages")
    (source / "labelmap.txt").write_text("background:0,0,0::\ncar:255,0,0::\n")
    (lists / "train.txt").write_text("a\nb\n")
    (lists / "val.txt").write_text("b\nb\n")  # listed twice here, and once in train.txt
    (lists / "zz.txt").write_text("b\n")
    twice = [str(problem) for problem in Cvat(source).problems if "also in" in problem.message]
    assert twice == [f"{lists / 'val.txt'}: b is also in train.txt (image left out)"]

def test_cvat_and_camvid_name_two_masks_of_one_name_instead_of_keeping_one(tmp_path):
    from kseg.data.importers.colour_masks import CamvidKaggle, Cvat

    source = tmp_path / "cvat"
    os.makedirs(source / "JPEGImages")
    (source / "labelmap.txt").write_text("background:0,0,0::\ncar:255,0,0::\n")
    write_png(source / "JPEGImages" / "a.png", np.zeros((8, 8, 3), np.uint8))
    write_png(source / "SegmentationClass" / "a.png", np.zeros((8, 8, 3), np.uint8))
    write_png(source / "SegmentationClass" / "a.PNG", np.zeros((8, 8, 3), np.uint8))
    importer = Cvat(source)
    assert importer.tasks == []
    named = [str(problem) for problem in importer.problems if "are named" in problem.message]
    assert named == [f"{source / 'SegmentationClass' / name}: 2 masks are named a: which one to use is unknown "
                     "(image left out)" for name in ("a.PNG", "a.png")]  # fmt: skip
    kaggle_camvid(tmp_path / "camvid", counts=(("train", 1),))
    write_png(tmp_path / "camvid" / "train_labels" / "0001TP_000000_L.bmp", np.zeros((40, 48, 3), np.uint8))
    importer = CamvidKaggle(tmp_path / "camvid")
    assert importer.tasks == []
    assert sum("2 masks are named 0001TP_000000_L" in problem.message for problem in importer.problems) == 2

# -- Kaggle CamVid, and the round trip to training --------------------------------------------------

CAMVID = {"Void": (0, 0, 0), "Road": (128, 64, 128), "Car": (64, 0, 128), "Sky": (128, 128, 128)}



def test_a_kaggle_class_list_the_csv_module_cannot_read_is_one_error(tmp_path):
    from kseg.data.importers.colour_masks import CamvidKaggle

    os.makedirs(tmp_path / "camvid" / "train")
    (tmp_path / "camvid" / "class_dict.csv").write_text('name,r,g,b\n"' + "x" * 200000 + '",1,2,3\n')
    with pytest.raises(KsegError, match="class_dict.csv: not a readable CSV file .field larger than field limit"):
        CamvidKaggle(tmp_path / "camvid")

def kaggle_camvid(root, counts=(("train", 6), ("val", 2), ("test", 1)), size=(40, 48)):
    rng = np.random.default_rng(3)
    (root / "class_dict.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "class_dict.csv").write_text("name,r,g,b\n" + "".join(f"{n},{r},{g},{b}\n" for n, (r, g, b)
                                                                   in CAMVID.items()))  # fmt: skip
    palette = np.array(list(CAMVID.values()), np.uint8)
    truth = {}
    for split, count in counts:
        for index in range(count):
            stem = f"0001TP_{index:06d}"
            ids = np.zeros(size, np.uint8)
            ids[size[0] // 2:] = 1
            ids[: size[0] // 3] = 3
            ids[size[0] // 3: size[0] // 2 + 6, 5 + index: 25 + index] = 2
            write_png(root / split / f"{stem}.png", random_image(rng, *size))
            write_png(root / f"{split}_labels" / f"{stem}_L.png", palette[ids])
            truth[split, stem] = ids
    return truth


def test_camvid_kaggle_imports_verifies_and_trains(tmp_path):
    source = tmp_path / "CamVid"
    truth = kaggle_camvid(source)
    write_png(source / "test" / "lonely.png", np.zeros((40, 48, 3), np.uint8))
    out = tmp_path / "out"
    result = run("camvid-kaggle", source, out, "--ignore-class", "Void")
    assert result.exit_code == 0, result.output
    assert "test/lonely.png: no test_labels/lonely_L.png (image left out)" in result.output
    assert class_names(out) == ["Road", "Car", "Sky"]
    for (split, stem), ids in truth.items():
        expected = np.where(ids == 0, IGNORE_INDEX, ids - 1).astype(np.uint8)
        np.testing.assert_array_equal(mask_of(out, stem, split), expected)
    verify = CliRunner().invoke(cli, ["data", "verify", "--data", "folder", "--data-dir", str(out),
                                      "--no-progress"])  # fmt: skip
    assert verify.exit_code == 0, verify.output
    run_dir = tmp_path / "run"
    train = CliRunner().invoke(cli, [
        "train", "--data", "folder", "--data-dir", str(out), "--epochs", "1", "--run-dir", str(run_dir),
        "--weights", "none", "--width", "0.0625", "--batch-size", "4", "--crop", "32x32", "--optimizer", "adam",
        "--quiet"])  # fmt: skip
    assert train.exit_code == 0, train.output
    assert json.load(open(run_dir / "classes.json"))["class_names"] == ["Road", "Car", "Sky"]
    assert os.path.isfile(run_dir / "checkpoints" / "last.keras")


# -- pix2pix Cityscapes ---------------------------------------------------------------------------


def test_pix2pix_cityscapes_maps_jpeg_colours_to_the_nearest_class(tmp_path):
    from kseg.data.cityscapes import trained_classes

    colours = np.array([colour for _, colour in trained_classes()], np.uint8)
    rng = np.random.default_rng(4)
    ids = np.kron(rng.integers(0, 19, size=(8, 8)), np.ones((32, 32), int)).astype(np.uint8)  # 256x256
    pair = np.concatenate([random_image(rng, 256, 256), colours[ids]], axis=1)  # photo | label, 512x256
    os.makedirs(tmp_path / "pairs" / "train")
    os.makedirs(tmp_path / "pairs" / "val")
    for split in ("train", "val"):
        cv2.imwrite(str(tmp_path / "pairs" / split / "1.jpg"), pair[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 75])
    out = tmp_path / "out"
    result = import_dataset("pix2pix-cityscapes", str(tmp_path / "pairs"), str(out))
    mask = mask_of(out, "1", "train")
    assert mask.shape == (256, 256) and read_mask(out / "masks" / "val" / "1.png").shape == (256, 256)
    interior = np.zeros_like(ids, bool)
    interior[np.kron(np.ones((8, 8), bool), np.pad(np.ones((24, 24), bool), 4)).astype(bool)] = True
    assert (mask[interior] == ids[interior]).mean() > 0.99  # away from JPEG's ringing at block edges
    uncertain = sum(far for far, _, _ in result.uncertain.values())
    void = sum(void for _, void, _ in result.uncertain.values())
    assert uncertain + void == result.ignored_pixels  # every ignored pixel is counted as one or the other
    assert 0 < uncertain < 0.05 * 2 * 256 * 256
    strict = import_dataset("pix2pix-cityscapes", str(tmp_path / "pairs"), str(tmp_path / "tight"),
                            ImportOptions(tolerance=1))
    assert sum(far for far, _, _ in strict.uncertain.values()) > uncertain
    assert f"{uncertain:,} px uncertain (beyond the tolerance, ignored) in 2 of 2 image(s)" in "\n".join(
        result.summary())
    report = (out / "import-report.txt").read_text()
    assert f"train/1.jpg: {result.uncertain[str(tmp_path / 'pairs' / 'train' / '1.jpg')][0]} " in report
    assert class_names(out)[0] == "road" and len(class_names(out)) == 19


def test_an_unknown_class_to_ignore_and_a_missing_source_are_errors(tmp_path):
    with pytest.raises(KsegError, match="--ignore-class Nope: no such class"):
        kaggle_camvid(tmp_path / "c", counts=(("train", 1),))
        import_dataset("camvid-kaggle", str(tmp_path / "c"), str(tmp_path / "out"), ImportOptions(ignore=("Nope",)))
    result = run("labelme", tmp_path / "nowhere", tmp_path / "out")
    assert result.exit_code == 1 and "nowhere: not found" in result.output


def test_cvat_and_camvid_name_files_that_share_a_name_once_and_nothing_more_about_them(tmp_path):
    from kseg.data.importers.colour_masks import CamvidKaggle, Cvat

    source = tmp_path / "cvat"
    os.makedirs(source / "ImageSets" / "Segmentation")
    (source / "labelmap.txt").write_text("background:0,0,0::\ncar:255,0,0::\n")
    for folder, names in (("JPEGImages", ("a.png", "b.png", "b.bmp", "c.png")), ("SegmentationClass", (
            "a.png", "a.bmp", "b.png", "d.png", "d.bmp"))):
        for name in names:
            write_png(source / folder / name, np.zeros((8, 8, 3), np.uint8))
    pooled = Cvat(source)
    (source / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\nd\n")
    for importer in (pooled, Cvat(source)):
        assert importer.tasks == []
        assert sorted(os.path.basename(problem.path) for problem in importer.problems) == [
            "a.bmp", "a.png", "b.bmp", "b.png", "c.png", "d.bmp", "d.png"]
        assert all("are named" in problem.message for problem in importer.problems
                   if not problem.path.endswith("c.png"))
    kaggle_camvid(tmp_path / "camvid", counts=(("train", 2),))
    write_png(tmp_path / "camvid" / "train_labels" / "0001TP_000000_L.bmp", np.zeros((40, 48, 3), np.uint8))
    write_png(tmp_path / "camvid" / "train" / "0001TP_000001.bmp", np.zeros((40, 48, 3), np.uint8))
    importer = CamvidKaggle(tmp_path / "camvid")
    assert importer.tasks == []
    assert len(importer.problems) == 4 and all("2 " in problem.message for problem in importer.problems)


def test_labelme_labels_naming_background_twice_name_the_source_without_a_labels_file(tmp_path):
    source = tmp_path / "labelme"
    write_png(source / "a.png", np.zeros((8, 8, 3), np.uint8))
    labelme_file(source / "a.json", "a.png", [("background", "rectangle", [[1, 1], [3, 3]]),
                                              ("_background_", "rectangle", [[4, 4], [6, 6]])], (8, 8))
    with pytest.raises(KsegError) as caught:
        import_dataset("labelme", str(source), str(tmp_path / "out"))
    assert str(caught.value) == f"{source}: lists both _background_ and background: which is background?"


def test_an_id_or_shape_type_that_is_a_list_or_object_is_named_not_a_crash(tmp_path):
    write_png(tmp_path / "x.png", np.zeros((8, 10, 3), np.uint8))
    box = [[1, 1, 6, 1, 6, 6, 1, 6]]
    source = tmp_path / "instances.json"
    source.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "x.png", "width": 10, "height": 8}],
        "annotations": [{"id": 1, "image_id": [1], "category_id": 1, "segmentation": box},
                        {"id": 2, "image_id": 1, "category_id": {"id": 1}, "segmentation": box},
                        {"id": 3, "image_id": 1, "category_id": 1, "segmentation": box}],
        "categories": [{"id": 1, "name": "box"}]}))
    problems = [str(problem) for problem in import_dataset("coco", str(source), str(tmp_path / "coco")).problems]
    assert problems == [f"{source}: annotations[0] (id 1): image_id [1] is not in 'images' (annotation left out)",
                        f"{source}: annotations[1] (id 2, image x.png): category_id {{'id': 1}} is not in "
                        "'categories' (pixels ignored)"]  # fmt: skip
    labelme_file(tmp_path / "x.json", "x.png", [("car", "rectangle", [[1, 1], [3, 3]])], (8, 10))
    document = json.loads((tmp_path / "x.json").read_text())
    document["shapes"].append(dict(document["shapes"][0], shape_type=["rectangle"]))
    (tmp_path / "x.json").write_text(json.dumps(document))
    result = import_dataset("labelme", str(tmp_path / "x.json"), str(tmp_path / "labelme"))
    assert [problem.message for problem in result.problems] == [
        "shape 1 ('car'): unknown shape_type ['rectangle'] (LabelMe's: polygon, rectangle, circle, line, linestrip, "
        "point, mask)"]


@pytest.mark.parametrize("tolerance", [True, float("nan"), "40"])
def test_a_tolerance_that_is_not_a_distance_is_refused(tolerance):
    with pytest.raises(KsegError, match="tolerance must be an RGB distance"):
        ImportOptions(tolerance=tolerance)


def test_names_that_differ_only_in_case_clash_where_out_dirs_filesystem_ignores_case(tmp_path, monkeypatch):
    """On macOS and Windows a.png would be written over A.png, and "οδοσ" over "ΟΔΟΣ";
    "straße" and "STRASSE" stay two names there (filesystems map case letter by letter)."""
    source = tmp_path / "labelme"
    for stem in ("A", "a", "straße", "STRASSE", "ΟΔΟΣ", "οδοσ"):
        write_png(source / f"{stem}.png", np.zeros((6, 8, 3), np.uint8))
        labelme_file(source / f"{stem}.json", f"{stem}.png", [("car", "rectangle", [[1, 1], [3, 3]])], (6, 8))

    def samefile(first, second):  # a filesystem that folds case, as macOS does by default
        if first.lower() != second.lower():
            raise FileNotFoundError(second)
        return True

    monkeypatch.setattr(os.path, "samefile", samefile)
    out = tmp_path / "out"
    result = run("labelme", source, out)
    assert result.exit_code == 0, result.output
    assert f"{source / 'a.json'}: another image is already imported as 'a' (from {source / 'A.json'}); names " \
           "must differ (image left out)" in result.output
    assert f"{source / 'οδοσ.json'}: another image is already imported as 'οδοσ'" in result.output
    assert sorted(os.listdir(out / "masks")) == ["A.png", "STRASSE.png", "straße.png", "ΟΔΟΣ.png"]
