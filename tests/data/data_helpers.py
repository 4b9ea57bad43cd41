"""Tiny datasets written into tmp_path in each official layout, for the data tests."""

import os

import cv2
import numpy as np


def write_png(path, array):
    """Writes uint8/uint16 arrays as PNG (RGB(A) given in RGB(A) order)."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 3:
        array = array[:, :, ::-1]
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, [2, 1, 0, 3]]
    assert cv2.imwrite(str(path), np.ascontiguousarray(array)), path


def random_image(rng, height, width):
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def block_mask(rng, height, width, values, block=8):
    """A mask of constant blocks drawn from `values`."""
    small = rng.choice(np.asarray(values, np.uint8), size=(-(-height // block), -(-width // block)))
    return np.kron(small, np.ones((block, block), np.uint8))[:height, :width].astype(np.uint8)


def make_camvid(root, splits=(("train", 4), ("val", 2)), size=(24, 32), seed=0, list_files=True):
    """SegNet-layout CamVid: values 0..10 and 11 (void)."""
    rng = np.random.default_rng(seed)
    for split, count in splits:
        lines = []
        for index in range(count):
            name = f"{split}_{index:03d}.png"
            write_png(os.path.join(root, split, name), random_image(rng, *size))
            write_png(os.path.join(root, split + "annot", name), block_mask(rng, *size, values=range(12)))
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        if list_files:
            with open(os.path.join(root, f"{split}.txt"), "w") as handle:
                handle.write("\n".join(lines) + "\n")
    return str(root)


def make_folder(root, counts=(("train", 4), ("val", 2)), sizes=((24, 32),), seed=0, num_classes=3,
                with_colours=True, split_folders=True):
    """A folder dataset with classes.yaml and index masks; sizes cycle over images."""
    rng = np.random.default_rng(seed)
    names = [f"class{i}" for i in range(num_classes)]
    with open(os.path.join(str(root), "classes.yaml") if os.path.isdir(str(root)) else _mk(root), "w") as handle:
        handle.write("classes:\n")
        for index, name in enumerate(names):
            if with_colours:
                handle.write(f"  - {{name: {name}, color: [{index * 80}, {255 - index * 80}, 7]}}\n")
            else:
                handle.write(f"  - {name}\n")
    number = 0
    for split, count in counts:
        for index in range(count):
            height, width = sizes[number % len(sizes)]
            number += 1
            sub = split if split_folders else ""
            write_png(os.path.join(root, "images", sub, f"{split}{index}.png"), random_image(rng, height, width))
            write_png(os.path.join(root, "masks", sub, f"{split}{index}.png"),
                      block_mask(rng, height, width, values=list(range(num_classes)) + [255]))
    return str(root)


def _mk(root):
    os.makedirs(str(root), exist_ok=True)
    return os.path.join(str(root), "classes.yaml")
