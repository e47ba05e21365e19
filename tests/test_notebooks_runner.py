"""`mer notebooks run`: parameters injected, failures reported with their cell, the rest still run."""
from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from mer_lib import notebooks
from mer_lib.errors import MerError


def write_notebook(path, *sources):
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [new_code_cell('greeting = "default"\nunused = 1', metadata={"tags": ["parameters"]})]
    nb.cells += [new_code_cell(src) for src in sources]
    nbformat.write(nb, path)


@pytest.fixture()
def course(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "01_first.ipynb", "print('hello', greeting)")
    write_notebook(folder / "02_broken.ipynb", "x = 1", "raise ValueError('broken on purpose')", "print('never')")
    write_notebook(folder / "03_last.ipynb", "print('last', greeting)")
    (folder / "scratch.ipynb").write_text("{}")  # not numbered: ignored
    params = tmp_path / "params.yaml"
    params.write_text("greeting: from-yaml\nnot_declared: 5\n")
    return folder, params


def test_runs_in_order_and_reports_failures(course, tmp_path):
    folder, params = course
    out = tmp_path / "out"
    results = notebooks.run_all(params, out, notebooks_dir=folder)
    assert [r.name for r in results] == ["01_first", "02_broken", "03_last"]
    assert [r.ok for r in results] == [True, False, True]
    broken = results[1]
    # the execution count in the executed copy, which holds papermill's injected cell too
    assert broken.failing_cell == 4 and "broken on purpose" in broken.error
    first = nbformat.read(out / "01_first.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in first.cells for o in c.get("outputs", []))
    assert "hello from-yaml" in printed
    injected = "".join(c.source for c in first.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "greeting" in injected and "not_declared" not in injected
    for name in ["01_first", "02_broken", "03_last"]:
        assert (out / f"{name}.html").is_file()
    assert "broken on purpose" in (out / "02_broken.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert [n["ok"] for n in summary["notebooks"]] == [True, False, True]


def test_selection_and_errors(course, tmp_path):
    folder, params = course
    assert [p.name for p in notebooks.discover(folder, "3,01")] == ["01_first.ipynb", "03_last.ipynb"]
    with pytest.raises(MerError, match="no notebook numbered 07"):
        notebooks.discover(folder, "07")
    with pytest.raises(MerError, match="parameter file not found"):
        notebooks.run_all(tmp_path / "missing.yaml", tmp_path / "out", notebooks_dir=folder)
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(MerError, match="expected a mapping"):
        notebooks.load_params(bad)


def test_shipped_configs_are_valid():
    from mer_lib import paths

    for name in ["embedded", "ravdess", "cremad"]:
        params = notebooks.load_params(paths.resolve(f"configs/{name}.yaml"))
        assert {"dataset", "data_root", "data_dir", "window", "windows", "preset"} <= set(params)
    assert notebooks.load_params(paths.resolve("configs/ravdess.yaml"))["windows"] == 8
