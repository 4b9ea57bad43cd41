"""Hostile files on the data path: each class of trap is refused by name, quickly.

Classes covered (one or more cases each):

- not a regular file: a FIFO, a symlink to /dev/zero, a folder or a socket named like an
  image, mask, classes.yaml or split list. Verbs run in a subprocess with a timeout, so a
  hang fails the test instead of blocking the suite;
- decompression bombs: headers claiming far more pixels than the file holds (PNG IHDR,
  JPEG SOF, WebP VP8X, BMP, GIF), refused before decoding;
- decoder failures: OpenCV's own errors become one line naming the file;
- masks by stored index: 1-, 2- and 4-bit grayscale and palette PNGs;
- lossy masks: JPEG content under a .png name, a .jpg mask in a CamVid list, lossy WebP,
  JPEG 2000;
- EXIF orientation: applied alike by every reader; verify reports a mask drawn on the
  stored pixels of a turned image, and warns about a mirrored one;
- a split where no pixel is labelled (verify and stats);
- malformed classes.yaml (alias bomb, deep nesting, binary, huge name, wrong types) and
  split lists (NUL bytes, huge entries);
- numeric options of `kseg data synth` / `verify`.
"""

import io
import os
import socket
import struct
import subprocess
import sys
import time
import zlib

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from kseg.cli.main import cli
from PIL import Image, ImageOps

from kseg.data import get_dataset_spec
from kseg.data.readers import read_colour_or_index_mask, read_index_mask, read_rgb_image
from kseg.data.verify import verify_dataset
from kseg.errors import KsegError
from kseg.images import ImageError, probe, read_image, read_mask

SIZE = (24, 32)
TIMEOUT = 60  # seconds for a subprocess verb; a hang fails instead of blocking
CLASSES = "classes:\n  - background\n  - thing\n  - other\n"


# -- helpers ---------------------------------------------------------------------------


def _png(array, **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", **options)
    return buffer.getvalue()


def _jpeg(array, **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=95, **options)
    return buffer.getvalue()


def _write(path, data):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return str(path)


def _rgb(seed=0, size=SIZE):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _index(seed=0, size=SIZE, classes=3):
    return np.random.default_rng(seed).integers(0, classes, size, dtype=np.uint8)


def _folder(root, count=2, classes=CLASSES):
    """A pooled folder dataset: images/good{i}.png + masks/good{i}.png + classes.yaml."""
    root = str(root)
    for number in range(count):
        _write(os.path.join(root, "images", f"good{number}.png"), _png(_rgb(number)))
        _write(os.path.join(root, "masks", f"good{number}.png"), _png(_index(number)))
    with open(os.path.join(root, "classes.yaml"), "w") as handle:
        handle.write(classes)
    return root


def _patch_ihdr(data, width, height):
    """A PNG whose IHDR claims width x height (CRC fixed), pixel data unchanged."""
    ihdr = bytearray(data[12:29])  # type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", width, height)
    return data[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr))) + data[33:]


def _verb(*args):
    """Runs `kseg ARGS` in a subprocess; returns (exit code, stdout + stderr)."""
    command = [sys.executable, "-c", "import sys; from kseg.cli.main import cli; sys.exit(cli())", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"kseg {' '.join(args)} did not finish within {TIMEOUT} s (blocked on a file?)")
    return done.returncode, done.stdout + done.stderr


def _cli(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _error_lines(output):
    return [line for line in output.splitlines() if line.startswith("error:")]


def _one_error(code, output, *words):
    assert code == 1, output
    assert "Traceback" not in output, output
    lines = _error_lines(output)
    assert len(lines) == 1, output
    for word in words:
        assert word in lines[0], output
    assert len(lines[0]) < 600, lines[0]
    return lines[0]


# -- not a regular file ----------------------------------------------------------------


def _make_special(path, kind):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.remove(path)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        os.symlink("/dev/zero", path)
    elif kind == "folder":
        os.makedirs(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        try:
            server.bind(path)
        except OSError as error:  # path too long for a socket address
            pytest.skip(f"cannot bind a socket here: {error}")
        return server
    return None


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "folder", "socket"])
@pytest.mark.parametrize("role", ["image", "mask"])
def test_verify_names_non_regular_files_and_goes_on(tmp_path, kind, role):
    root = _folder(tmp_path / "d")
    bad = os.path.join(root, "images" if role == "image" else "masks", "bad.png")
    if role == "mask":
        _write(os.path.join(root, "images", "bad.png"), _png(_rgb(5)))
    else:
        _write(os.path.join(root, "masks", "bad.png"), _png(_index(5)))
    server = _make_special(bad, kind)
    try:
        code, output = _verb("data", "verify", "--data", "folder", "--data-dir", root, "--no-progress")
    finally:
        if server is not None:
            server.close()
    assert code == 1 and "Traceback" not in output, output
    assert "3 pairs checked" in output, output
    assert f"{bad}: {role} file is" in output and "not a regular file" in output, output
    assert f"{role}: not a regular file" in output  # the kind is counted too


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_stats_names_a_fifo_mask(tmp_path, kind):
    root = _folder(tmp_path / "d")
    _write(os.path.join(root, "images", "bad.png"), _png(_rgb(5)))
    bad = os.path.join(root, "masks", "bad.png")
    _make_special(bad, kind)
    code, output = _verb("data", "stats", "--data", "folder", "--data-dir", root, "--no-progress")
    assert code == 1 and "Traceback" not in output, output
    assert any(bad in line and "not a regular file" in line for line in _error_lines(output)), output


def test_fifo_classes_yaml_is_one_line(tmp_path):
    root = _folder(tmp_path / "d")
    classes = os.path.join(root, "classes.yaml")
    _make_special(classes, "fifo")
    code, output = _verb("data", "verify", "--data", "folder", "--data-dir", root, "--no-progress")
    _one_error(code, output, classes, "FIFO")


@pytest.mark.parametrize("dataset", ["camvid", "voc"])
@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_non_regular_split_list_is_one_line(tmp_path, dataset, kind):
    root = str(tmp_path / dataset)
    if dataset == "camvid":
        _write(os.path.join(root, "train", "a.png"), _png(_rgb()))
        _write(os.path.join(root, "trainannot", "a.png"), _png(_index()))
        listed = os.path.join(root, "train.txt")
    else:
        _write(os.path.join(root, "JPEGImages", "a.jpg"), _jpeg(_rgb()))
        _write(os.path.join(root, "SegmentationClass", "a.png"), _png(_index()))
        listed = os.path.join(root, "ImageSets", "Segmentation", "train.txt")
    _make_special(listed, kind)
    code, output = _verb("data", "verify", "--data", dataset, "--data-dir", root, "--split", "train",
                         "--no-progress")
    assert code == 1 and "Traceback" not in output, output
    assert listed in output and "not a regular file" in output, output


def test_readers_refuse_special_files_without_reading(tmp_path):
    for kind in ("fifo", "dev_zero", "folder"):
        path = str(tmp_path / f"{kind}.png")
        _make_special(path, kind)
        for reader in (read_image, read_rgb_image, read_mask, read_index_mask,
                       read_colour_or_index_mask):
            started = time.monotonic()
            with pytest.raises(KsegError, match="not a regular file") as error:
                reader(path)
            assert path in str(error.value) and time.monotonic() - started < 5


# -- decompression bombs ---------------------------------------------------------------


def _bombs(tmp_path):
    png = _patch_ihdr(_png(np.zeros((8, 8), np.uint8)), 100000, 100000)
    jpeg = bytearray(_jpeg(np.zeros((8, 8, 3), np.uint8)))
    sof = jpeg.find(b"\xff\xc0")
    jpeg[sof + 5: sof + 9] = struct.pack(">HH", 60000, 60000)
    vp8x = bytearray(10)
    vp8x[4:7] = (99999).to_bytes(3, "little")
    vp8x[7:10] = (99999).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + bytes(vp8x)
    webp = b"RIFF" + struct.pack("<I", len(body)) + body
    bmp = bytearray(cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    bmp[18:26] = struct.pack("<ii", 50000, 50000)
    gif = bytearray(b"GIF89a" + struct.pack("<HH", 65000, 65000) + b"\x00" * 20)
    files = {"png": (png, "100000x100000"), "jpg": (bytes(jpeg), "60000x60000"),
             "webp": (webp, "100000x100000"), "bmp": (bytes(bmp), "50000x50000"), "gif": (bytes(gif), "65000x65000")}
    return {name: (_write(tmp_path / f"bomb.{name}", data), claim) for name, (data, claim) in files.items()}


def test_headers_claiming_huge_sizes_are_refused_before_decoding(tmp_path):
    for name, (path, claim) in _bombs(tmp_path).items():
        for reader in (read_image, read_rgb_image, read_mask, read_colour_or_index_mask):
            started = time.monotonic()
            with pytest.raises(ImageError) as error:
                reader(path)
            message = str(error.value)
            if reader in (read_mask, read_colour_or_index_mask) and name == "jpg":
                assert "lossy" in message  # a JPEG mask is refused for that first
                continue
            assert message.startswith(path) and claim in message and "limit of 268 Mpx" in message, message
            assert time.monotonic() - started < 2, name


def test_sizes_pillow_would_not_read_are_still_checked(tmp_path):
    bmp = bytearray(cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    bmp[14:26] = struct.pack("<Iii", 48, 50000, 50000)  # an info-header size Pillow refuses
    png = _patch_ihdr(_png(np.zeros((8, 8), np.uint8)), 100000, 100000)[:40]  # cut after IHDR
    for name, data in (("odd.bmp", bytes(bmp)), ("cut.png", png)):
        with pytest.raises(ImageError, match="limit of 268 Mpx"):
            read_image(_write(tmp_path / name, data))
    buffer = io.BytesIO()
    try:
        Image.fromarray(_rgb()).save(buffer, "AVIF")
    except (KeyError, OSError):
        return  # Pillow without AVIF
    header = probe(buffer.getvalue())
    assert (header.format, header.width, header.height, header.lossy) == ("avif", 32, 24, "AVIF/HEIF")


def test_verify_reports_a_bomb_and_goes_on(tmp_path):
    root = _folder(tmp_path / "d")
    _write(os.path.join(root, "images", "bad.png"), _patch_ihdr(_png(_rgb(5)), 100000, 100000))
    _write(os.path.join(root, "masks", "bad.png"), _patch_ihdr(_png(_index(5)), 70000, 70000))
    code, output = _cli("data", "verify", "--data", "folder", "--data-dir", root, "--no-progress")
    assert code == 1 and "3 pairs checked, 2 problem(s)" in output, output
    assert "image: too many pixels" in output and "mask: too many pixels" in output, output
    assert "100000x100000" in output and "70000x70000" in output


def test_opencv_errors_become_one_line_naming_the_file(tmp_path, monkeypatch):
    path = _write(tmp_path / "a.png", _png(_rgb()))

    def broken(*args, **kwargs):
        raise cv2.error("OpenCV(5.0) /src/loadsave.cpp:123: error: (-215:Assertion failed) size.width>0")

    monkeypatch.setattr(cv2, "imdecode", broken)
    for reader in (read_image, read_rgb_image, read_mask):
        with pytest.raises(ImageError) as error:
            reader(path)
        assert str(error.value) == f"{path}: not a readable image (corrupt, truncated or unknown format)"


def test_damaged_headers_do_not_escape_as_python_errors(tmp_path):
    cases = {
        "short.png": b"\x89PNG\r\n\x1a\n\x00\x00",
        "short.jpg": b"\xff\xd8\xff\xe1\xff\xff",
        "short.webp": b"RIFF\x04\x00\x00\x00WEBPVP8X",
        "short.bmp": b"BM\x00",
        "short.gif": b"GIF89a\x01",
        "exif.jpg": b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II*\x00\xff\xff\xff\xff\xff\xd9",
        "empty.png": b"",
        "fill.jpg": b"\xff\xd8" + b"\xff" * 10_000_000,
        "segments.jpg": b"\xff\xd8" + b"\xff\xfe\x00\x02" * 2_000_000,
        "chunks.webp": b"RIFF\x00\x00\x00\x00WEBP" + b"JUNK\x00\x00\x00\x00" * 1_000_000,
        "exif_spam.png": _png(np.zeros((4, 4), np.uint8))[:33] + b"eXIf" * 2_000_000,
    }
    for name, data in cases.items():
        path = _write(tmp_path / name, data)
        for reader in (read_image, read_rgb_image, read_mask):
            started = time.monotonic()
            with pytest.raises(ImageError) as error:
                reader(path)
            assert str(error.value).startswith(path)
            assert time.monotonic() - started < 5, name


# -- masks by stored index -------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_low_bit_grayscale_masks_read_as_stored_indices(tmp_path, bits):
    stored = np.resize(np.arange(2**bits, dtype=np.uint8), SIZE)
    data = _png(stored.astype(bool)) if bits == 1 else _png(stored, bits=bits) if bits < 8 else _png(stored)
    assert data[24] == bits and data[25] == 0  # IHDR: bit depth, grayscale
    path = _write(tmp_path / f"m{bits}.png", data)
    for reader in (read_mask, read_index_mask, read_colour_or_index_mask):
        np.testing.assert_array_equal(reader(path), stored)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_palette_masks_of_any_depth_read_as_indices(tmp_path, bits):
    stored = np.resize(np.arange(2**bits, dtype=np.uint8), SIZE)
    image = Image.fromarray(stored, "P")
    image.putpalette([value for index in range(2**bits) for value in (index * 7 % 256, 200, 30)])
    buffer = io.BytesIO()
    image.save(buffer, "PNG", bits=bits)
    assert buffer.getvalue()[25] == 3
    path = _write(tmp_path / f"p{bits}.png", buffer.getvalue())
    for reader in (read_mask, read_index_mask, read_colour_or_index_mask):
        np.testing.assert_array_equal(reader(path), stored)


def test_one_bit_mask_trains_as_class_one_not_ignore(tmp_path):
    root = _folder(tmp_path / "d")
    stored = np.zeros(SIZE, bool)
    stored[:, 10:] = True
    _write(os.path.join(root, "masks", "good0.png"), _png(stored))
    spec = get_dataset_spec("folder", data_dir=root)
    _, mask = spec.read_pair(*spec.pairs("all")[0])  # the pool: "train" holds one image out
    assert set(np.unique(mask)) == {0, 1}
    assert verify_dataset(spec, "all").ok


def test_sixteen_bit_masks_stay_refused(tmp_path):
    path = _write(tmp_path / "m16.png", cv2.imencode(".png", np.ones(SIZE, np.uint16))[1].tobytes())
    with pytest.raises(ImageError, match="uint16"):
        read_index_mask(path)


# -- lossy masks -----------------------------------------------------------------------


def test_jpeg_content_is_refused_as_a_mask_whatever_its_name(tmp_path):
    for name in ("mask.png", "mask.jpg", "mask.bmp"):
        path = _write(tmp_path / name, _jpeg(np.zeros(SIZE, np.uint8)))
        for reader in (read_mask, read_index_mask, read_colour_or_index_mask):
            with pytest.raises(ImageError) as error:
                reader(path)
            message = str(error.value)
            assert message.startswith(path) and "JPEG" in message and "lossy" in message
            assert "store masks as PNG" in message
    read_image(path)  # as an image it is fine


def test_lossy_webp_and_jpeg2000_masks_refused_lossless_webp_accepted(tmp_path):
    stored = _index(3)
    lossy = io.BytesIO()
    Image.fromarray(np.dstack([stored] * 3)).save(lossy, "WEBP", quality=90)
    path = _write(tmp_path / "lossy.webp", lossy.getvalue())
    with pytest.raises(ImageError, match="lossy"):
        read_index_mask(path)
    lossless = io.BytesIO()
    Image.fromarray(np.dstack([stored] * 3)).save(lossless, "WEBP", lossless=True)
    path = _write(tmp_path / "lossless.webp", lossless.getvalue())
    np.testing.assert_array_equal(read_index_mask(path), stored)
    ok, jp2 = cv2.imencode(".jp2", stored)
    if ok:
        path = _write(tmp_path / "mask.jp2", jp2.tobytes())
        with pytest.raises(ImageError, match="JPEG 2000"):
            read_index_mask(path)


def test_verify_and_training_refuse_a_jpeg_mask_listed_by_camvid(tmp_path):
    root = str(tmp_path / "camvid")
    lines = []
    for number in range(2):
        _write(os.path.join(root, "train", f"a{number}.png"), _png(_rgb(number)))
        _write(os.path.join(root, "trainannot", f"a{number}.png"), _png(_index(number)))
        lines.append(f"/x/train/a{number}.png /x/trainannot/a{number}.png")
    bad = _write(os.path.join(root, "trainannot", "b.jpg"), _jpeg(_index(2)))
    _write(os.path.join(root, "train", "b.png"), _png(_rgb(2)))
    lines.append("/x/train/b.png /x/trainannot/b.jpg")
    with open(os.path.join(root, "train.txt"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    code, output = _cli("data", "verify", "--data", "camvid", "--data-dir", root, "--split", "train",
                        "--no-progress")
    assert code == 1 and "mask: lossy format" in output and bad in output, output
    spec = get_dataset_spec("camvid", data_dir=root)
    with pytest.raises(KsegError, match="store masks as PNG"):
        spec.read_pair(os.path.join(root, "train", "b.png"), bad)


def test_folder_verify_counts_a_jpeg_mask_under_png_name(tmp_path):
    root = _folder(tmp_path / "d")
    _write(os.path.join(root, "images", "bad.png"), _png(_rgb(5)))
    bad = _write(os.path.join(root, "masks", "bad.png"), _jpeg(_index(5)))
    report = verify_dataset(get_dataset_spec("folder", data_dir=root), "train")
    assert report.kinds["mask: lossy format"] == 1 and report.problems[0].path == bad


# -- EXIF orientation ------------------------------------------------------------------


def _exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_reader_applies_exif_orientation_like_pillow(tmp_path, orientation):
    rgb = _rgb(4, (5, 7))
    for fmt, extension, options in (("PNG", "png", {}), ("WEBP", "webp", {"lossless": True}), ("TIFF", "tif", {})):
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, fmt, exif=_exif(orientation), **options)
        path = _write(tmp_path / f"o.{extension}", buffer.getvalue())
        with Image.open(path) as image:
            expected = np.array(ImageOps.exif_transpose(image).convert("RGB"))
        np.testing.assert_array_equal(read_image(path), expected, err_msg=fmt)
        np.testing.assert_array_equal(read_rgb_image(path), expected, err_msg=fmt)
    path = _write(tmp_path / "o.jpg", _jpeg(rgb, exif=_exif(orientation)))
    np.testing.assert_array_equal(read_image(path), read_rgb_image(path))
    assert read_image(path).shape[:2] == ((7, 5) if orientation >= 5 else (5, 7))
    mask = _index(4, (5, 7))
    mask_path = _write(tmp_path / "m.png", _png(mask, exif=_exif(orientation)))
    with Image.open(mask_path) as image:
        expected = np.array(ImageOps.exif_transpose(image))
    np.testing.assert_array_equal(read_index_mask(mask_path), expected)


def test_png_exif_after_the_pixel_data_is_applied_after_the_size_check(tmp_path):
    rgb = _rgb(4, (5, 7))
    data = _png(rgb, exif=_exif(6))
    start = data.find(b"eXIf") - 4
    chunk = data[start: start + 12 + struct.unpack_from(">I", data, start)[0]]
    late = data[:start] + data[start + len(chunk): -12] + chunk + data[-12:]  # just before IEND
    assert late.find(b"eXIf") > late.find(b"IDAT")
    np.testing.assert_array_equal(read_image(_write(tmp_path / "late.png", late)), np.rot90(rgb, -1))
    with pytest.raises(ImageError, match="100000x100000"):
        read_image(_write(tmp_path / "bomb.png", _patch_ihdr(late, 100000, 100000)))


def test_predict_and_training_readers_agree_on_a_rotated_jpeg(tmp_path):
    path = _write(tmp_path / "r.jpg", _jpeg(_rgb(1, (20, 30)), exif=_exif(6)))
    predicted, trained = read_image(path), read_rgb_image(path)
    assert predicted.shape == trained.shape == (30, 20, 3)
    np.testing.assert_array_equal(predicted, trained)


def test_verify_reports_a_mask_that_fits_the_stored_pixels_of_a_rotated_image(tmp_path):
    root = _folder(tmp_path / "d")
    image = _write(os.path.join(root, "images", "turned.jpg"), _jpeg(_rgb(5), exif=_exif(6)))
    _write(os.path.join(root, "masks", "turned.png"), _png(_index(5)))  # stored size 32x24
    report = verify_dataset(get_dataset_spec("folder", data_dir=root), "train")
    assert report.kinds == {"image: EXIF orientation": 1}, report.summary()
    (problem,) = report.problems
    path, message = problem.path, problem.message
    assert path == image and "EXIF orientation 6" in message and "every verb" in message
    assert "rotate the mask" in message and "strip the orientation tag" in message
    # The mask drawn on the turned image (24x32 -> 32x24) is fine.
    _write(os.path.join(root, "masks", "turned.png"), _png(np.rot90(_index(5), -1).copy()))
    assert verify_dataset(get_dataset_spec("folder", data_dir=root), "train").ok


def test_verify_warns_about_a_mirrored_image(tmp_path):
    root = _folder(tmp_path / "d")
    image = _write(os.path.join(root, "images", "flip.png"), _png(_rgb(5), exif=_exif(3)))
    _write(os.path.join(root, "masks", "flip.png"), _png(_index(5)))
    report = verify_dataset(get_dataset_spec("folder", data_dir=root), "train")
    assert report.ok and len(report.warnings) == 1 and report.warnings[0][0] == image
    code, output = _cli("data", "verify", "--data", "folder", "--data-dir", root, "--no-progress")
    assert code == 0 and "warning:" in output and "EXIF orientation 3" in output, output


# -- no labelled pixel -----------------------------------------------------------------


def test_split_without_labelled_pixels_is_reported_by_verify_and_stats(tmp_path):
    root = _folder(tmp_path / "d")
    for number in range(2):
        _write(os.path.join(root, "masks", f"good{number}.png"), _png(np.full(SIZE, 255, np.uint8)))
    report = verify_dataset(get_dataset_spec("folder", data_dir=root), "train")
    assert report.labelled_pixels == 0 and report.kinds == {"split: no labelled pixel": 1}
    code, output = _cli("data", "verify", "--data", "folder", "--data-dir", root, "--no-progress")
    assert code == 1 and "no labelled pixel" in output, output
    code, output = _cli("data", "stats", "--data", "folder", "--data-dir", root, "--no-progress")
    _one_error(code, output, "no labelled pixel")
    assert "NO LABELLED PIXEL" in output


def test_labelled_pixels_counts_class_pixels_only(tmp_path):
    root = _folder(tmp_path / "d", count=1)
    mask = np.zeros(SIZE, np.uint8)
    mask[:4] = 255
    mask[4:6] = 1  # two classes: a split of one class is a problem of its own
    _write(os.path.join(root, "masks", "good0.png"), _png(mask))
    report = verify_dataset(get_dataset_spec("folder", data_dir=root), "train")
    assert report.ok and report.labelled_pixels == (SIZE[0] - 4) * SIZE[1]


def test_camvid_void_only_split_has_no_labelled_pixel(tmp_path):
    root = str(tmp_path / "camvid")
    _write(os.path.join(root, "train", "a.png"), _png(_rgb()))
    _write(os.path.join(root, "trainannot", "a.png"), _png(np.full(SIZE, 11, np.uint8)))
    report = verify_dataset(get_dataset_spec("camvid", data_dir=root), "train")
    assert report.labelled_pixels == 0 and "split: no labelled pixel" in report.kinds


# -- classes.yaml and split lists --------------------------------------------------------


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
) + "classes: *i\n"

BAD_CLASSES = {
    "alias_bomb": (ALIAS_BOMB, "aliases"),
    "deep_nesting": ("classes: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    "deep_mapping": ("classes:\n" + "".join("  " * i + "a:\n" for i in range(1, 200)), "nested"),
    "binary": ("\x00\x01\x02\xff\xfe", None),
    "huge_file": ("classes: [a, " + "b" * 10_000_000 + "]\n", "more than"),
    "long_name": ("classes: [a, " + "b" * 100_000 + "]\n", "class name"),
    "newline_name": ('classes: [a, "b\\nc"]\n', "control character"),
    "wrong_type": ("classes: 17\n", "classes:"),
    "entry_type": ("classes: [a, [1, 2]]\n", "class 1"),
    "huge_int": ("classes: [a, b]\nignore_colors: [[" + "9" * 6000 + ", 0, 0]]\n", "more than 4300 digits"),
    "colour_type": ("classes:\n  - {name: a, color: abc}\n  - b\n", "[r, g, b]"),
    "ignore_type": ("classes: [a, b]\nignore_colors: " + "x" * 5000 + "\n", "ignore_colors"),
    "too_many": ("classes: [" + ", ".join(f"c{i}" for i in range(300)) + "]\n", "at most 255"),
    "not_utf8": (None, "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_CLASSES))
def test_malformed_classes_yaml_is_one_bounded_line(tmp_path, case):
    text, word = BAD_CLASSES[case]
    root = _folder(tmp_path / "d")
    classes = os.path.join(root, "classes.yaml")
    with open(classes, "wb") as handle:
        handle.write(b"classes: [a, \xff\xfe]\n" if text is None else text.encode("utf-8", "surrogatepass"))
    started = time.monotonic()
    code, output = _cli("data", "verify", "--data", "folder", "--data-dir", root, "--no-progress")
    assert time.monotonic() - started < 10
    line = _one_error(code, output, classes)
    if word:
        assert word in line, line


@pytest.mark.parametrize("entry", ["a\x00b.png b.png", "x" * 100000 + " b.png", "\xff\xfe"])
def test_damaged_camvid_list_is_one_bounded_line(tmp_path, entry):
    root = str(tmp_path / "camvid")
    _write(os.path.join(root, "train", "a.png"), _png(_rgb()))
    _write(os.path.join(root, "trainannot", "a.png"), _png(_index()))
    listed = os.path.join(root, "train.txt")
    with open(listed, "wb") as handle:
        handle.write(entry.encode("latin-1") if entry == "\xff\xfe" else entry.encode())
    code, output = _cli("data", "stats", "--data", "camvid", "--data-dir", root, "--split", "train",
                        "--no-progress")
    _one_error(code, output, listed)


def test_damaged_voc_list_is_one_bounded_line(tmp_path):
    root = str(tmp_path / "voc")
    _write(os.path.join(root, "JPEGImages", "a.jpg"), _jpeg(_rgb()))
    _write(os.path.join(root, "SegmentationClass", "a.png"), _png(_index()))
    listed = _write(os.path.join(root, "ImageSets", "Segmentation", "train.txt"), b"a\x00b\n")
    code, output = _cli("data", "stats", "--data", "voc", "--data-dir", root, "--split", "train",
                        "--no-progress")
    _one_error(code, output, listed, "NUL")
    code, output = _cli("data", "verify", "--data", "voc", "--data-dir", root, "--split", "train",
                        "--no-progress")
    assert code == 1 and f"{listed}:1: entry holds a NUL byte" in output, output


# -- numeric options -------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["--num-train", "inf"], ["--num-train", "nan"], ["--num-train", "-1"], ["--num-train", "1e12"],
    ["--num-val", "0"], ["--num-val", "2.5"], ["--seed", "-1"], ["--seed", "nan"],
    ["--size", "10x10"], ["--size", "99999999x64"], ["--size", "nanx64"], ["--size", "64"],
    ["--size", "²x64"], ["--size", "64x64x64"],
])
def test_synth_refuses_absurd_numbers_at_parse_time(tmp_path, args):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["data", "synth", str(out), *args], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert len(_error_lines(result.output)) == 1 and "Traceback" not in result.output
    assert not out.exists()


def test_verify_refuses_negative_max_problems(tmp_path):
    root = _folder(tmp_path / "d")
    result = CliRunner().invoke(cli, ["data", "verify", "--data", "folder", "--data-dir", root,
                                      "--max-problems", "-1"], catch_exceptions=False)
    assert result.exit_code == 2 and len(_error_lines(result.output)) == 1, result.output


@pytest.mark.parametrize("split", ["x" * 100000, "tr\x00ain", "a\nb"])
def test_absurd_split_names_are_one_bounded_line(tmp_path, split):
    root = _folder(tmp_path / "d")
    code, output = _cli("data", "stats", "--data", "folder", "--data-dir", root, "--split", split, "--no-progress")
    _one_error(code, output, "split must be")
