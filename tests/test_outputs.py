"""kseg's one output policy (`kseg.outputs`): the rules, the ledger, and a check that every
writer in the code goes through it and that docs/outputs.md lists every kind."""

import ast
import json
import os
import re

import pytest

from kseg import outputs
from kseg.errors import KsegError
from kseg.outputs import LEDGER, Outputs, check, seal_folder, write_together, writing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def _write_output(path, kind, data=b"kseg", force=False, inputs=()):
    with check(path, kind, inputs, force):
        outputs.write_bytes(path, data)


# -- rule 1: never over an input ------------------------------------------------------------


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "inside", "inside_through_link"])
def test_an_output_that_is_or_lies_in_an_input_is_refused(tmp_path, how):
    data = tmp_path / "data"
    image = _write(str(data / "images" / "a.png"), b"photo")
    out = {"same": image, "inside": str(data / "notes.json"),
           "inside_through_link": str(tmp_path / "alias" / "notes.json")}.get(how, str(tmp_path / "b.png"))
    if how == "symlink":
        os.symlink(image, out)
    elif how == "hardlink":
        os.link(image, out)
    elif how == "inside_through_link":
        os.symlink(data, tmp_path / "alias")
    # a hard link is recognised when the file itself is an input (its inode), a folder's
    # files by where they lie
    inputs = [image] if how == "hardlink" else [str(data)]
    with pytest.raises(KsegError, match="input"):
        check(out, "heatmap", inputs, force=True)
    assert open(image, "rb").read() == b"photo"


def test_a_folder_output_that_holds_an_input_is_refused(tmp_path):
    image = _write(str(tmp_path / "set" / "x.png"))
    with pytest.raises(KsegError, match="holds the input"):
        check(tmp_path, "synthetic dataset", [image], force=True, option="OUT", folder=True)


# -- rule 2 and 3: only kseg's own outputs, of the same kind, are replaced --------------------


def test_a_file_kseg_did_not_write_is_refused_even_with_force(tmp_path):
    mine = _write(str(tmp_path / "report.json"), b"my notes")
    for kind in ("metrics", "heatmap", "benchmark report"):
        with pytest.raises(KsegError, match="not written by kseg"):
            check(mine, kind, force=True)
    assert open(mine, "rb").read() == b"my notes"


def test_kseg_outputs_are_replaced_by_their_rule(tmp_path):
    metrics, heatmap = str(tmp_path / "m.json"), str(tmp_path / "h.png")
    _write_output(metrics, "metrics", b"1")
    _write_output(metrics, "metrics", b"2")  # a rerun refreshes it
    assert open(metrics, "rb").read() == b"2"
    _write_output(heatmap, "heatmap", b"1")
    with pytest.raises(KsegError, match="--force"):
        check(heatmap, "heatmap")
    _write_output(heatmap, "heatmap", b"2", force=True)
    assert open(heatmap, "rb").read() == b"2"
    with pytest.raises(KsegError, match="kseg wrote it as metrics, not as heatmap"):
        check(metrics, "heatmap", force=True)
    ledger = json.loads((tmp_path / LEDGER).read_text())
    assert ledger["files"] == {"m.json": "metrics", "h.png": "heatmap"}


def test_a_file_replaced_by_the_user_under_a_link_is_refused(tmp_path):
    target = _write(str(tmp_path / "elsewhere" / "precious.txt"), b"mine")
    out = str(tmp_path / "m.json")
    _write_output(out, "metrics")
    os.remove(out)
    os.symlink(target, out)  # the name kseg wrote is now a link to a user's file
    with pytest.raises(KsegError, match="symbolic link"):
        check(out, "metrics", force=True)
    assert open(target, "rb").read() == b"mine"


def test_a_never_kind_is_never_replaced_and_leaves_no_ledger(tmp_path):
    path = str(tmp_path / "classes.yaml")
    _write_output(path, "dataset classes")
    assert not (tmp_path / LEDGER).exists()
    with pytest.raises(KsegError, match="never replaces"):
        check(path, "dataset classes", force=True)


@pytest.mark.parametrize("change", ["added", "edited", "swapped_for_link"])
def test_a_folder_output_changed_since_kseg_wrote_it_is_not_replaced(tmp_path, change):
    out = str(tmp_path / "synthetic")
    with check(out, "synthetic dataset", option="OUT", folder=True), writing(out, directory=True) as temporary:
        _write(os.path.join(temporary, "images", "a.png"), b"scene")
        seal_folder(temporary, "synthetic dataset")
    check(out, "synthetic dataset", force=True, folder=True)  # unchanged: replaceable
    scene = os.path.join(out, "images", "a.png")
    if change == "added":
        _write(os.path.join(out, "images", "my_drawing.png"), b"mine")
    elif change == "edited":
        with open(scene, "ab") as handle:
            handle.write(b" and my edit")
    else:
        os.remove(scene)
        os.symlink(_write(str(tmp_path / "mine.png")), scene)
    with pytest.raises(KsegError, match="which kseg did not write there"):
        check(out, "synthetic dataset", force=True, option="OUT", folder=True)


@pytest.mark.parametrize("ledger", ["{not json", '{"files": ["a"]}', '{"written_by": "kseg", "files": 3}', "[]"])
def test_a_damaged_or_forged_ledger_is_refused(tmp_path, ledger):
    (tmp_path / LEDGER).write_text(ledger)
    _write(str(tmp_path / "a"))
    with pytest.raises(KsegError, match=LEDGER.replace(".", r"\.")):
        check(str(tmp_path / "a"), "metrics")


def test_two_outputs_on_one_path_and_kseg_names_are_refused(tmp_path):
    checked = Outputs()
    checked.add(str(tmp_path / "x.png"), "evaluation image", option="--sheet")
    with pytest.raises(KsegError, match="also given as --sheet"):
        checked.add(str(tmp_path / "x.png"), "evaluation image", option="--confusion-png")
    # An output named by no option (predict's files) is named by its path alone.
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "y.png")
    checked.add(str(tmp_path / "y.png"), "predictions", option=None)
    with pytest.raises(KsegError, match=re.escape(f"{link}: also given as {tmp_path / 'y.png'}; give")):
        checked.add(str(link), "predictions", option=None)
    for name in (LEDGER, ".x.png.abcd1234.tmp.png"):
        with pytest.raises(KsegError, match="bookkeeping"):
            check(str(tmp_path / name), "metrics")


# -- rule 4: all or none, nothing left behind ------------------------------------------------


def test_a_failure_while_writing_leaves_every_output_as_it_was(tmp_path):
    first, second = str(tmp_path / "a.png"), str(tmp_path / "deep" / "b.png")
    _write_output(first, "predictions", b"old")
    checked = check(first, "predictions")
    checked.add(second, "predictions", option=None, root=str(tmp_path))

    def fails(temporary):
        raise OSError(28, "No space left on device")

    with pytest.raises(KsegError, match="no space left"), checked:
        write_together([(first, outputs.bytes_writer(b"new")), (second, fails)])
    assert open(first, "rb").read() == b"old"
    assert sorted(os.listdir(tmp_path)) == [LEDGER, "a.png"]  # no temporary, no new folder
    assert json.loads((tmp_path / LEDGER).read_text())["files"] == {"a.png": "predictions"}


# -- every writer goes through the policy; the docs list every kind --------------------------


def test_docs_outputs_md_holds_the_table_of_every_kind():
    with open(os.path.join(ROOT, "docs", "outputs.md"), encoding="utf8") as handle:
        text = handle.read()
    table = text.split("<!-- table: kseg.outputs.markdown_table() -->\n", 1)[1].split("<!-- end of table -->")[0]
    assert table == outputs.markdown_table(), "regenerate the table of docs/outputs.md"


def _python_files():
    for top in ("kseg", "cli", "benchmarks"):
        for parent, _, names in os.walk(os.path.join(ROOT, top)):
            for name in names:
                if name.endswith(".py"):
                    yield os.path.join(parent, name)


# Calls that put bytes on disk, and the names of the blocks that make that safe: kseg.outputs'
# atomic `writing` (or a temporary folder removed however the block ends).
WRITES = {"savefig", "save", "imwrite", "tofile", "write_out", "dump", "write_bytes", "write_text",
          "write_bytes_atomic", "atomic_path", "mkdtemp", "mkstemp", "copyfile", "copy", "copy2", "copytree",
          "move", "save_weights", "export"}
SAFE_BLOCKS = {"writing", "scratch_beside", "TemporaryDirectory", "check", "Outputs"}
# Functions whose writes are safe for a reason the AST cannot see, with the reason.
SAFE_FUNCTIONS = {
    ("kseg/evaluation.py", "plot_confusion_matrix"): "writes the temporary write_together gives it",
    ("kseg/exporting.py", "write_savedmodel"): "writes the temporary folder export_model's `writing` gives it",
    ("kseg/exporting.py", "write_onnx"): "writes the temporary export_model's `writing` gives it",
    ("kseg/data/synthetic.py", "_write_png_plain"): "writes into the temporary dataset folder",
    ("kseg/outputs.py", "bytes_writer"): "writes the temporary write_together gives it",
    ("kseg/label_maps.py", "encode_png_with_text"): "saves into an in-memory buffer",
    ("kseg/export_metadata.py", "_export_labels"):
        "rewrites as UTF-8 the labels file MediaPipe's writer made in its own temporary folder",
    ("kseg/training/loop.py", "train"): "a worker's scratch folder, removed in `finally`",
    ("cli/export.py", "export"): "kseg.export, which writes inside its checked destination (kseg/exporting.py)",
}


def _is_write(call, own):
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if isinstance(func, ast.Name) and name in own:
        return False  # kseg.outputs' own writers
    if isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "outputs":
        return False
    if name == "copy" and len(call.args) < 2:
        return False  # numpy's or a dict's copy
    if name == "open":
        modes = [arg for arg in call.args[1:2]] + [kw.value for kw in call.keywords if kw.arg == "mode"]
        return any(isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+") for mode in modes)
    return name in WRITES


def _imported_from_outputs(tree):
    return {alias.asname or alias.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "kseg.outputs" for alias in node.names}


def _block_names(node):
    names = set()
    for item in node.items:
        for sub in ast.walk(item.context_expr):
            if isinstance(sub, ast.Call):
                func = sub.func
                names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None))
    return names


def _unsafe_writes(path):
    relative = os.path.relpath(path, ROOT)
    if relative == "kseg/outputs.py":
        return []
    with open(path, encoding="utf8") as handle:
        tree = ast.parse(handle.read())
    own = _imported_from_outputs(tree)
    found = []

    def visit(node, safe, function):
        if isinstance(node, (ast.With, ast.AsyncWith)) and _block_names(node) & SAFE_BLOCKS:
            safe = True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
            safe = safe or (relative, function) in SAFE_FUNCTIONS
        if isinstance(node, ast.Call) and _is_write(node, own) and not safe:
            found.append(f"{relative}:{node.lineno} in {function}")
        for child in ast.iter_child_nodes(node):
            visit(child, safe, function)

    visit(tree, False, "<module>")
    return found


def test_every_function_allowed_to_write_still_writes():
    """An entry of SAFE_FUNCTIONS whose function no longer writes would hide a later write."""
    stale = []
    for relative, function in SAFE_FUNCTIONS:
        with open(os.path.join(ROOT, relative), encoding="utf8") as handle:
            tree = ast.parse(handle.read())
        own = _imported_from_outputs(tree)
        bodies = [node for node in ast.walk(tree)
                  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function]
        if not any(isinstance(call, ast.Call) and _is_write(call, own) for body in bodies for call in ast.walk(body)):
            stale.append(f"{relative}: {function}")
    assert stale == [], "no longer writes; remove from SAFE_FUNCTIONS:\n" + "\n".join(stale)


def test_every_writer_goes_through_kseg_outputs():
    unsafe = [where for path in _python_files() for where in _unsafe_writes(path)]
    assert unsafe == [], "write through kseg.outputs (check + writing), or say why not:\n" + "\n".join(unsafe)


def test_every_kind_named_in_the_code_is_in_the_table_and_used():
    named = set()
    for path in _python_files():
        with open(path, encoding="utf8") as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name in ("add", "check", "seal_folder") and len(node.args) >= 2:
                    kind = node.args[1]
                    if isinstance(kind, ast.Constant) and isinstance(kind.value, str):
                        named.add(kind.value)
                    elif isinstance(kind, ast.JoinedStr):  # f"{format} export"
                        named.update(k for k in outputs.KINDS if k.endswith(" export"))
    assert named - set(outputs.KINDS) == set()
    unused = set(outputs.KINDS) - named - {"run", "downloaded weights"}  # owned by the run folder / keras
    assert unused == set(), f"kinds no writer names: {sorted(unused)}"


def test_an_output_on_a_drive_that_is_not_there_does_not_hang(monkeypatch):
    calls = []

    def nothing_exists(path):  # as on Windows for Q:\ when there is no drive Q:
        calls.append(path)
        if len(calls) > 100:
            raise RuntimeError("looped")
        return False

    monkeypatch.setattr(os.path, "lexists", nothing_exists)
    outputs._check_parents("--out /a/b.png", "/a/b.png", "choose another --out")  # nothing to refuse
    assert len(calls) <= 3


def test_a_ledger_that_cannot_be_written_undoes_the_ledgers_and_folders_before_it(tmp_path, monkeypatch):
    first, second = tmp_path / "new" / "metrics.json", tmp_path / "other" / "confusion.png"
    (tmp_path / "other").mkdir()
    checked = check(first, "metrics").add(second, "evaluation image", option="--confusion-png")
    real_write_ledger = outputs._write_ledger

    def refused(folder, files, stamps=None):
        if folder == str(tmp_path / "other"):
            raise PermissionError(13, "Permission denied")
        real_write_ledger(folder, files, stamps)

    monkeypatch.setattr(outputs, "_write_ledger", refused)
    with pytest.raises(KsegError, match=r"other: cannot write there \(Permission denied\)"), checked:
        pass
    assert os.listdir(tmp_path) == ["other"] and os.listdir(tmp_path / "other") == []


def test_a_temporary_of_a_name_with_a_line_break_is_known_as_one(tmp_path):
    from kseg.training.lock import sweep_temporaries

    with writing(tmp_path / "street\nnight.png") as temporary:
        assert outputs.is_temporary_name(os.path.basename(temporary))
        assert sweep_temporaries(str(tmp_path)) == [temporary]  # what a kill would leave
        open(temporary, "wb").close()
    with pytest.raises(KsegError, match="kept for kseg's own bookkeeping"):
        check(tmp_path / ".a\nb.png.abcd_123.tmp.png", "predictions")
