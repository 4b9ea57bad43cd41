"""The bad-input corpus: every case is generated into a folder by the tests themselves.

A case is one thing that can go wrong with what a user hands kseg: a damaged or odd image,
a mask that does not fit its image, an empty or unreadable folder, a model file that is
not a model (or holds code), a training config that does not parse. `CASES` maps each
case name to a one-line description; `write_dataset(root, case)` writes a small folder
dataset (two good pairs plus the case's pair) and `Case` tells the tests where the bad
file is.
"""

import dataclasses
import os

import cv2
import numpy as np

# case name -> what it is (the README of this folder lists the same table)
CASES = {
    "truncated_png": "a PNG cut off in the middle of its image data",
    "truncated_jpeg": "a JPEG cut off in the middle of its scan data",
    "zero_byte": "an empty file named .png",
    "text_as_png": "a text file named .png",
    "png_16bit": "a 16-bit RGB PNG",
    "rgba": "an RGBA PNG (alpha channel)",
    "grayscale": "a one-channel grayscale PNG",
    "one_pixel": "a 1x1 image",
    "very_wide": "a 10x10000 image (10000 wide, 10 high)",
    "mask_wrong_size": "a mask of another size than its image",
    "mask_value_200": "a mask holding value 200, no class of the dataset",
    "colour_mask": "an RGB colour mask where an index mask is expected",
    "missing_mask": "an image without its mask",
    "empty_folder": "a folder with no images at all",
    "unreadable": "a file its reader has no permission to read",
    "odd_path": "a path with spaces and non-ASCII characters (valid data)",
    "missing_model": "a model path that does not exist",
    "not_a_model": "a .keras file that is not a keras model (random bytes)",
    "lambda_model": "a .keras model with a Lambda layer (code inside the file)",
    "config_unknown_key": "a training config YAML with a key kseg does not know",
    "config_wrong_type": "a training config YAML with a value of the wrong type",
    "config_python_tag": "a training config YAML with a !!python/object tag",
}

SIZE = (32, 32)  # (height, width) of the good images
NUM_CLASSES = 3
GOOD_STEMS = ("good0", "good1")
ODD_DIR = "dossier été ü"  # spaces and non-ASCII


def rng(seed=0):
    return np.random.default_rng(seed)


def random_rgb(height, width, seed=0):
    return rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def index_mask(height, width, seed=0):
    return rng(seed).integers(0, NUM_CLASSES, (height, width), dtype=np.uint8)


def encode(extension, array, params=()):
    ok, data = cv2.imencode(extension, np.ascontiguousarray(array), list(params))
    assert ok, extension
    return data.tobytes()


def write_bytes(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def bad_image_bytes(case):
    """(extension, file content) of the image cases, or None for cases of another kind."""
    image = random_rgb(*SIZE, seed=7)
    if case == "truncated_png":
        data = encode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 0])
        return ".png", data[: len(data) // 2]
    if case == "truncated_jpeg":
        data = encode(".jpg", random_rgb(64, 64, seed=7), [cv2.IMWRITE_JPEG_QUALITY, 95])
        return ".jpg", data[: len(data) // 3]
    if case == "zero_byte":
        return ".png", b""
    if case == "text_as_png":
        return ".png", b"this is a text file, not an image\n"
    if case == "png_16bit":
        return ".png", encode(".png", image.astype(np.uint16) * 257)
    if case == "rgba":
        return ".png", encode(".png", np.dstack([image, np.full(SIZE, 200, np.uint8)]))
    if case == "grayscale":
        return ".png", encode(".png", image[:, :, 0])
    if case == "one_pixel":
        return ".png", encode(".png", random_rgb(1, 1, seed=7))
    if case == "very_wide":
        return ".png", encode(".png", random_rgb(10, 10000, seed=7))
    return None


def image_shape(case):
    """(height, width) of the case's image when it is readable."""
    return {"one_pixel": (1, 1), "very_wide": (10, 10000)}.get(case, SIZE)


@dataclasses.dataclass
class Case:
    """Where a case's files are.

    Attributes:
        name: str. The case.
        root: str. The dataset root (images/, masks/, classes.yaml).
        bad: str or None. The file (or folder) the case is about.
        images: str. The images folder.
    """

    name: str
    root: str
    bad: str
    images: str


def write_classes(root):
    with open(os.path.join(root, "classes.yaml"), "w") as handle:
        handle.write("classes: [background, thing, other]\n")


def write_dataset(root, case):
    """Writes a pooled folder dataset for `case` under `root`; returns a Case.

    Two good 32x32 pairs plus, for image and mask cases, one pair holding the problem.
    The classes have no colours, so a colour mask cannot be mapped and is refused.
    """
    root = os.fspath(root)
    if case == "odd_path":
        root = os.path.join(root, ODD_DIR)
    images, masks = os.path.join(root, "images"), os.path.join(root, "masks")
    os.makedirs(images, exist_ok=True)
    os.makedirs(masks, exist_ok=True)
    write_classes(root)
    if case == "empty_folder":
        return Case(case, root, images, images)
    for number, stem in enumerate(GOOD_STEMS):
        write_bytes(os.path.join(images, stem + ".png"), encode(".png", random_rgb(*SIZE, seed=number)[:, :, ::-1]))
        write_bytes(os.path.join(masks, stem + ".png"), encode(".png", index_mask(*SIZE, seed=number)))
    bad = None
    content = bad_image_bytes(case)
    if content is not None:
        extension, data = content
        bad = write_bytes(os.path.join(images, "bad" + extension), data)
        write_bytes(os.path.join(masks, "bad.png"), encode(".png", index_mask(*image_shape(case), seed=9)))
    elif case in ("mask_wrong_size", "mask_value_200", "colour_mask", "missing_mask", "unreadable",
                  "odd_path"):
        write_bytes(os.path.join(images, "bad.png"), encode(".png", random_rgb(*SIZE, seed=9)))
        mask = index_mask(*SIZE, seed=9)
        if case == "mask_wrong_size":
            mask = index_mask(SIZE[0] + 8, SIZE[1], seed=9)
        elif case == "mask_value_200":
            mask[5:9, 5:9] = 200
        elif case == "colour_mask":
            mask = random_rgb(*SIZE, seed=9)
        bad = os.path.join(masks, "bad.png")
        if case != "missing_mask":
            write_bytes(bad, encode(".png", mask))
        if case == "unreadable" or case == "odd_path":
            bad = os.path.join(images, "bad.png")
    return Case(case, root, bad, images)


def write_not_a_model(path):
    """A .keras file holding random bytes."""
    return write_bytes(os.fspath(path), rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def write_lambda_model(path):
    """A tiny keras model (3 classes, images -> logits) with a Lambda layer, saved as .keras."""
    import keras

    inputs = keras.Input((None, None, 3), dtype="uint8")
    scaled = keras.layers.Lambda(lambda x: keras.ops.cast(x, "float32") / 255.0, name="scale",
                                 output_shape=(None, None, 3))(inputs)
    logits = keras.layers.Conv2D(NUM_CLASSES, 1, name="score")(scaled)
    model = keras.Model(inputs, logits, name="lambda_model")
    os.makedirs(os.path.dirname(os.fspath(path)), exist_ok=True)
    model.save(os.fspath(path))
    return os.fspath(path)


CONFIG_TEXT = {
    "config_unknown_key": "model: fcn8s\nlearning_rate: 0.1\n",
    "config_wrong_type": "model: fcn8s\nepochs: three\n",
    "config_python_tag": "model: !!python/object/apply:os.system ['echo owned > {marker}']\n",
}
