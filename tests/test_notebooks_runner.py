"""`mer notebooks run`: parameters injected, failures reported with their cell, the rest still run.

The tiny notebooks run on the standard "python3" kernel, which inside the project venv is the
venv's own python. Only two notebooks are executed in the whole file (kernel start-up is slow).
"""
from __future__ import annotations

import ast
import contextlib
import inspect
import io
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from mer_lib import notebooks
from mer_lib.errors import MerError
from mer_lib.features import extract
from mer_lib.paths import project_root

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def write_notebook(path, *sources):
    """A notebook whose first code cell is the papermill `parameters` cell, then `sources`."""
    nb = new_notebook(metadata={"kernelspec": KERNELSPEC})
    # the '=' in the comment hides `greeting` from papermill.inspect_notebook, not from the runner
    parameters = 'greeting = "default"  # default = "default"\nunused = 1'
    nb.cells = [new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    nb.cells += [new_code_cell(src) for src in sources]
    nbformat.write(nb, path)


def printed(cells) -> str:
    """All stream output and error text of executed cells."""
    outputs = [o for c in cells if c.cell_type == "code" for o in c.get("outputs", [])]
    return "".join(o.get("text", "") + o.get("evalue", "") for o in outputs)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """01 raises in its second code cell, 02 prints its parameters, 03 must not run under --only 01,02."""
    tmp_path = tmp_path_factory.mktemp("course")
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "01_broken.ipynb", "raise ValueError('broken on purpose')", "print('never reached')")
    write_notebook(folder / "02_greet.ipynb", "import os\nprint('hello', greeting, unused)\nprint('cwd', os.getcwd())")
    write_notebook(folder / "03_extra.ipynb", "print('extra')")
    (folder / "scratch.ipynb").write_text("{}")  # not numbered: never picked up
    params = tmp_path / "params.yaml"
    params.write_text("greeting: from-yaml\nnot_declared: 5\n")
    return folder, params


@pytest.fixture(scope="module")
def ran(course, tmp_path_factory):
    """One run of notebooks 01 and 02 (02 after the failing 01): results, output folder, printout.

    Module-scoped so that the whole file starts only two kernels.
    """
    folder, params = course
    out = tmp_path_factory.mktemp("runs") / "notebooks"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        results = notebooks.run_all(params, out, only="02,1", notebooks_dir=folder)
    return results, out, stdout.getvalue()


def test_failing_notebook_is_reported_and_the_next_still_runs(ran):
    results, out, _ = ran
    assert [(r.name, r.ok) for r in results] == [("01_broken", False), ("02_greet", True)]
    broken, greet = results
    # cells: parameters (1), papermill's injected parameters (2), the raising cell (3)
    assert broken.failing_cell == 3
    assert broken.error == "ValueError: broken on purpose"
    assert greet.failing_cell is None and greet.error is None
    executed = nbformat.read(out / "01_broken.ipynb", as_version=4)
    failing = [c for c in executed.cells if c.cell_type == "code" and c.execution_count == 3]
    assert "broken on purpose" in printed(failing)
    assert "never reached" not in printed(executed.cells)


def test_executed_copies_carry_only_declared_parameters(ran, course):
    results, out, _ = ran
    folder, _ = course
    assert results[1].output == out / "02_greet.ipynb"
    executed = nbformat.read(results[1].output, as_version=4)
    # the YAML value replaced the default; `unused` kept its default; the notebook ran in its own folder
    assert "hello from-yaml 1" in printed(executed.cells)
    assert f"cwd {folder.resolve()}" in printed(executed.cells)
    injected = [c.source for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'greeting = "from-yaml"' in injected[0]
    assert "not_declared" not in injected[0] and "unused" not in injected[0]
    assert [r.parameters for r in results] == [["greeting"], ["greeting"]]


def test_html_exports_exist_for_failed_runs_too(ran):
    results, out, _ = ran
    assert [r.html for r in results] == [out / "01_broken.html", out / "02_greet.html"]
    assert "broken on purpose" in (out / "01_broken.html").read_text()
    assert "from-yaml" in (out / "02_greet.html").read_text()
    assert not (out / "03_extra.ipynb").exists()  # filtered out by `only`


def test_summary_table_and_json(ran, course):
    results, out, stdout = ran
    _, params = course
    assert "cell [3]: ValueError: broken on purpose" in stdout
    assert "1 of 2 notebooks ran" in stdout
    assert "(ignored): not_declared" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is False
    assert summary["params_file"] == str(params)
    assert summary["params"] == {"greeting": "from-yaml", "not_declared": 5}
    assert summary["ignored_params"] == ["not_declared"]
    rows = summary["notebooks"]
    assert [(n["name"], n["ok"], n["failing_cell"]) for n in rows] == [("01_broken", False, 3),
                                                                        ("02_greet", True, None)]
    assert rows[0]["html"] == str(out / "01_broken.html")
    assert all(n["seconds"] == r.seconds > 0 for n, r in zip(rows, results))


def test_parameter_names_are_the_top_level_assignments(tmp_path):
    path = tmp_path / "01_params.ipynb"
    nb = new_notebook(cells=[new_code_cell("%matplotlib inline\na, (b, c) = 1, (2, 3)\nd: int = 4  # d = 4\n"
                                           "e[0] = 5\nif a:\n    f = 6", metadata={"tags": ["parameters"]}),
                             new_code_cell("g = 7")])
    nbformat.write(nb, path)
    assert notebooks.parameter_names(path) == {"a", "b", "c", "d"}
    assert notebooks.declared(path, {"a": 0, "d": 1, "g": 2}) == {"a": 0, "d": 1}
    nb.cells[0].metadata = {}
    nbformat.write(nb, path)
    assert notebooks.parameter_names(path) == set()


def test_selection_by_number(course):
    folder, _ = course
    def names(only):
        return [p.name for p in notebooks.discover(folder, only)]
    assert names(None) == ["01_broken.ipynb", "02_greet.ipynb", "03_extra.ipynb"]
    assert names("3, 01") == ["01_broken.ipynb", "03_extra.ipynb"]
    assert names("1,01") == ["01_broken.ipynb"]


def test_bad_input_is_a_mer_error_before_anything_runs(course, tmp_path):
    folder, params = course
    out = tmp_path / "out"
    with pytest.raises(MerError, match=r"no notebook numbered 07 .*\(have 01, 02, 03\)"):
        notebooks.run_all(params, out, only="01,07", notebooks_dir=folder)
    with pytest.raises(MerError, match="no notebook numbered ','"):
        notebooks.run_all(params, out, only=",", notebooks_dir=folder)
    with pytest.raises(MerError, match="missing.yaml: parameter file not found"):
        notebooks.run_all(tmp_path / "missing.yaml", out, notebooks_dir=folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MerError, match="no numbered notebooks"):
        notebooks.run_all(params, out, notebooks_dir=empty)
    assert not out.exists()


def test_load_params_rejects_non_mappings_and_bad_yaml(tmp_path):
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(MerError, match="expected a mapping"):
        notebooks.load_params(listing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("dataset: [unclosed\n")
    with pytest.raises(MerError, match="broken.yaml: not valid YAML"):
        notebooks.load_params(broken)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# only a comment\n")
    assert notebooks.load_params(empty) == {}


def test_shipped_configs_carry_the_paper_settings():
    configs = {name: notebooks.load_params(project_root() / "configs" / f"{name}.yaml")
               for name in ["embedded", "ravdess", "cremad"]}
    common = {"dataset", "data_root", "data_dir", "preset", "epochs", "device", "folds", "window", "windows"}
    for params in configs.values():
        assert common <= set(params)
    assert {k: configs["embedded"][k] for k in ["dataset", "data_root", "data_dir", "preset", "folds"]} == {
        "dataset": "synthetic", "data_root": None, "data_dir": "data/embedded", "preset": "fast", "folds": "all"}
    # MATER journal, section 4: T = 8 (RAVDESS) and 6 (CREMA-D) windows of 0.5 s, paper training preset
    for name, windows in [("ravdess", 8), ("cremad", 6)]:
        params = configs[name]
        assert (params["dataset"], params["window"], params["windows"]) == (name, 0.5, windows)
        assert params["preset"] == "paper"
        assert (params["data_root"], params["data_dir"]) == (f"data/{name}/raw", f"data/{name}")


def test_notebook_02_extracts_the_stores_the_later_notebooks_train_on():
    """Notebook 02's frame step is what course.setup extracts with (extract's default): another would make
    notebook 03 rebuild the video store, and notebook 02 would show a store nothing trains on."""
    notebook = nbformat.read(project_root() / "notebooks" / "02_embedding_extraction.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    values = {node.targets[0].id: ast.literal_eval(node.value)
              for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)}
    assert values["frame_step"] == inspect.signature(extract.extract).parameters["frame_step"].default
