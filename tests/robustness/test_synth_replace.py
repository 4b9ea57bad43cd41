"""`kseg data synth --force` replaces only a synthetic dataset kseg wrote, never a user's folder."""

import hashlib
import os

import pytest
from click.testing import CliRunner
from kseg.cli.main import cli

SMALL = ["--num-train", "2", "--num-val", "1", "--size", "32x32"]


def snapshot(folder):
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def one_error(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code in (1, 2) and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("layout", ["photos", "dataset_plus_notes", "edited_classes", "file"])
def test_force_refuses_what_kseg_did_not_write(layout, tmp_path):
    out = tmp_path / "out"
    if layout == "file":
        out.write_text("my notes")
    elif layout == "photos":
        (out / "holiday").mkdir(parents=True)
        (out / "holiday" / "beach.jpg").write_bytes(b"\xff\xd8\xff photo")
    else:
        assert CliRunner().invoke(cli, ["data", "synth", str(out), *SMALL]).exit_code == 0
        if layout == "dataset_plus_notes":
            (out / "images" / "train" / "my_drawing.png").write_bytes(b"mine")
        else:
            (out / "classes.yaml").write_text("classes: [a, b]\n")
    before = snapshot(out) if out.is_dir() else out.read_bytes()
    line = one_error(CliRunner().invoke(cli, ["data", "synth", str(out), *SMALL, "--force"]))
    assert str(out) in line
    assert (snapshot(out) if out.is_dir() else out.read_bytes()) == before
    assert sorted(os.listdir(tmp_path)) in (["out"], [".kseg-outputs.json", "out"])


def test_force_replaces_a_synthetic_dataset_and_plain_refuses(tmp_path):
    out = tmp_path / "synthetic"
    assert CliRunner().invoke(cli, ["data", "synth", str(out), *SMALL]).exit_code == 0
    first = snapshot(out)
    assert "--force" in one_error(CliRunner().invoke(cli, ["data", "synth", str(out), *SMALL]))
    result = CliRunner().invoke(cli, ["data", "synth", str(out), *SMALL, "--seed", "3", "--force"])
    assert result.exit_code == 0, result.output
    assert snapshot(out).keys() == first.keys() and snapshot(out) != first
