"""`kseg data verify | stats | synth` through the real Click application."""

import json
import os

import numpy as np
from click.testing import CliRunner
from data_helpers import make_camvid, write_png
from kseg.cli.main import cli


def _run(*args):
    return CliRunner().invoke(cli, ["data", *args], catch_exceptions=False)


def test_verify_exit_codes(tmp_path):
    root = make_camvid(str(tmp_path), splits=(("train", 3), ("val", 2)))
    clean = _run("verify", "--data", "camvid", "--data-dir", root, "--no-progress")
    assert clean.exit_code == 0, clean.output
    assert "camvid / train: 3 pairs checked, OK" in clean.output
    assert "camvid / val: 2 pairs checked, OK" in clean.output
    bad_mask = os.path.join(root, "valannot", "val_001.png")
    write_png(bad_mask, np.full((24, 32), 99, np.uint8))
    dirty = _run("verify", "--data", "camvid", "--data-dir", root, "--split", "val", "--no-progress")
    assert dirty.exit_code == 1
    assert "99" in dirty.output and bad_mask in dirty.output and "train" not in dirty.output


def test_verify_missing_root_is_one_line_error(tmp_path):
    result = _run("verify", "--data", "folder", "--data-dir", str(tmp_path / "none"), "--no-progress")
    assert result.exit_code == 1
    assert "error:" in result.output and "root not found" in result.output


def test_synth_then_stats_and_verify(tmp_path):
    out = str(tmp_path / "synth")
    made = _run("synth", out, "--num-train", "4", "--num-val", "2", "--size", "40x48", "--seed", "1")
    assert made.exit_code == 0, made.output
    assert sorted(os.listdir(os.path.join(out, "images", "train"))) == [f"{i:05d}.png" for i in range(4)]
    again = _run("synth", out)
    assert again.exit_code == 1 and "--force" in again.output
    bad_size = _run("synth", str(tmp_path / "other"), "--size", "40by48")
    assert bad_size.exit_code == 2 and "HEIGHTxWIDTH" in bad_size.output
    verified = _run("verify", "--data", "synthetic", "--data-dir", out, "--no-progress")
    assert verified.exit_code == 0, verified.output
    report = str(tmp_path / "stats.json")
    stats = _run("stats", "--data", "folder", "--data-dir", out, "--split", "train", "--json", report,
                 "--no-progress")
    assert stats.exit_code == 0, stats.output
    assert "median frequency balancing" in stats.output and "40x48" in stats.output
    with open(report) as handle:
        payload = json.load(handle)
    assert payload["train"]["num_images"] == 4 and len(payload["train"]["classes"]) == 6


def test_help_explains_options():
    for verb in ("verify", "stats", "synth"):
        result = _run(verb, "--help")
        assert result.exit_code == 0
    assert "--data-dir" in _run("verify", "--help").output
    assert "median frequency" in _run("stats", "--help").output
