"""The benchmark scripts: the report writer they share (what `--out` may replace, and how),
and their calls into kseg."""

import ast
import importlib.util
import inspect
import json
import os

import pytest

from kseg.errors import KsegError

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "reports.py")
_spec = importlib.util.spec_from_file_location("benchmark_reports", _PATH)
reports = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reports)


def test_a_report_is_written_marked_and_replaced_by_the_same_benchmark(tmp_path):
    out = tmp_path / "sub" / "report.json"
    reports.check_out(str(out), "bench_x")
    reports.write_report(str(out), "bench_x", {"figure": 1.5})
    assert json.loads(out.read_text()) == {"benchmark": "bench_x", "figure": 1.5}
    reports.check_out(str(out), "bench_x")  # its own earlier report may be replaced
    reports.write_report(str(out), "bench_x", {"figure": 2.5})
    assert json.loads(out.read_text())["figure"] == 2.5
    # no temporary left behind; the folder's list of kseg's outputs names the report
    assert sorted(os.listdir(out.parent)) == [".kseg-outputs.json", "report.json"]


@pytest.mark.parametrize(
    "content",
    [
        '{"benchmark": "bench_other", "figure": 1}',  # another script's report
        '{"figure": 1}',  # someone's JSON
        "[1, 2, 3]",
        "not json at all",
        "",
    ],
)
def test_an_existing_file_kseg_did_not_write_is_refused(tmp_path, content):
    out = tmp_path / "report.json"
    out.write_text(content)
    with pytest.raises(KsegError, match="not written by kseg"):
        reports.check_out(str(out), "bench_x")
    assert out.read_text() == content


def test_an_out_that_is_or_lies_in_an_input_is_refused(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    model = tmp_path / "model.keras"
    model.write_bytes(b"weights")
    link = tmp_path / "alias"
    link.symlink_to(data)
    for out in (data, data / "images" / "report.json", model, link / "report.json"):
        with pytest.raises(KsegError, match="input"):
            reports.check_out(str(out), "bench_x", [str(model), str(data)])
    assert model.read_bytes() == b"weights"
    assert os.listdir(data / "images") == []


def test_an_out_that_is_not_a_regular_file_is_refused(tmp_path):
    target = tmp_path / "precious.json"
    target.write_text('{"benchmark": "bench_x"}')
    link = tmp_path / "link.json"
    link.symlink_to(target)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    for out in (link, fifo, folder):
        with pytest.raises(KsegError, match="kseg did not write|not written by kseg"):
            reports.check_out(str(out), "bench_x")


def _keyword_mismatches(path):
    """Calls in a benchmark script to a function imported from kseg that pass a keyword
    the function does not take (the scripts run on real data only, so no test runs them)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    imported = {alias.asname or alias.name: (node.module, alias.name) for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kseg")
                for alias in node.names}  # fmt: skip
    problems = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported):
            continue
        module, name = imported[node.func.id]
        parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
        if any(parameter.kind == parameter.VAR_KEYWORD for parameter in parameters.values()):
            continue
        problems += [f"{os.path.basename(path)}:{node.lineno}: {name}() takes no {keyword.arg}="
                     for keyword in node.keywords if keyword.arg and keyword.arg not in parameters]
    return problems


def test_the_benchmark_scripts_call_kseg_with_keywords_it_takes():
    folder = os.path.dirname(_PATH)
    scripts = sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".py"))
    assert [problem for script in scripts for problem in _keyword_mismatches(script)] == []
