"""The parameter files of `mer notebooks run` fit the notebooks they drive."""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from mer_lib import notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def defaults(notebook: Path) -> dict:
    """The literal values of a notebook's `parameters` cell."""
    cell = next(c for c in nbformat.read(notebook, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body
            if isinstance(node, ast.Assign)}


@pytest.mark.parametrize("name", ["embedded", "ravdess", "cremad", "ravdess_audio"])
def test_every_setting_reaches_a_notebook(name):
    params = notebooks.load_params(ROOT / "configs" / f"{name}.yaml")
    declared = set().union(*(notebooks.parameter_names(nb) for nb in NOTEBOOKS))
    assert set(params) <= declared, f"settings no notebook declares: {set(params) - declared}"


def test_the_embedded_config_is_what_the_notebooks_default_to():
    """`make run` (configs/embedded.yaml) and nbval (the notebooks' own defaults) run the same thing."""
    params = notebooks.load_params(ROOT / "configs" / "embedded.yaml")
    for notebook in NOTEBOOKS:
        own = defaults(notebook)
        differing = {k: (own[k], v) for k, v in params.items() if k in own and own[k] != v}
        assert not differing, f"{notebook.name}: {differing}"


def test_the_paper_configs_use_the_papers_model():
    for name in ("ravdess", "cremad"):
        params = notebooks.load_params(ROOT / "configs" / f"{name}.yaml")
        assert (params["d_model"], params["layers"], params["heads"], params["d_ff"]) == (512, 6, 8, 2048)
        assert params["preset"] == "paper" and params["repetitions"] == 10


def test_the_audio_only_config_runs_the_course_on_audio():
    """configs/ravdess_audio.yaml: RAVDESS's audio-only release, no video, the real-audio windows, and
    the course-size model with the fast preset of configs/embedded.yaml so that a CPU runs it."""
    params = notebooks.load_params(ROOT / "configs" / "ravdess_audio.yaml")
    embedded = notebooks.load_params(ROOT / "configs" / "embedded.yaml")
    assert (params["dataset"], params["video"], params["audio"]) == ("ravdess", "none", "egemaps")
    assert (params["window"], params["windows"]) == (0.5, 8)
    assert params["retrain_modalities"] == []  # Algorithm 1's two extra runs are opt-in: [a]
    size = ("d_model", "layers", "heads", "d_ff", "preset")
    assert {k: params[k] for k in size} == {k: embedded[k] for k in size}
    assert params["data_dir"] != embedded["data_dir"] and params["data_root"]
    assert set(params) == set(embedded), "the same settings as the other parameter sets"
