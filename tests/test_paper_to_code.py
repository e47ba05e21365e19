"""docs/paper_to_code.md: every name, test and notebook section the map gives exists."""
from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "docs" / "paper_to_code.md"
COLUMNS = ["paper element", "implementation", "test", "notebook", "deviation and why"]


def rows() -> list[dict[str, str]]:
    """The rows of every table of the map, as column -> cell text."""
    found = []
    for line in MAP.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or cells == COLUMNS or set(line) <= set("|-"):
            continue
        assert len(cells) == len(COLUMNS), f"a row of {len(cells)} cells: {line}"
        found.append(dict(zip(COLUMNS, cells)))
    return found


ROWS = rows()


def resolve(dotted: str) -> object:
    """The object a dotted name such as mer_lib.models.mater.ModalityEncoder names (module, then attributes)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(dotted)


def test_the_map_covers_the_three_papers_and_the_readme_links_it():
    text = MAP.read_text()
    for heading in ("## MATER", "## The cross-modal model", "## Joint cross-attention"):
        assert heading in text
    assert len(ROWS) >= 50
    assert "docs/paper_to_code.md" in (ROOT / "README.md").read_text()


IMPLEMENTATIONS = sorted({n for r in ROWS for n in re.findall(r"`(mer_lib[\w.]*)`", r["implementation"])})


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_every_named_implementation_is_importable(name):
    assert resolve(name) is not None


def test_every_row_names_an_implementation_or_says_why_not():
    for row in ROWS:
        named = re.findall(r"`(mer_lib[\w.]*)`", row["implementation"])
        assert named or (row["implementation"] == "—" and row["deviation and why"] not in ("", "—")), row


def _test_names(path: Path) -> set[str]:
    return {node.name for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("reference", sorted({t for r in ROWS for t in re.findall(r"`(tests/[\w/]+\.py::\w+)`",
                                                                                   r["test"])}))
def test_every_named_test_exists(reference):
    path, name = reference.split("::")
    assert (ROOT / path).is_file(), path
    assert name in _test_names(ROOT / path), reference


def _headings(notebook: Path) -> set[str]:
    """The Markdown headings of a notebook's cells, without their #s."""
    cells = json.loads(notebook.read_text())["cells"]
    return {line.lstrip("#").strip() for cell in cells if cell["cell_type"] == "markdown"
            for line in "".join(cell["source"]).splitlines() if line.startswith("#")}


@pytest.mark.parametrize("reference", sorted({m for r in ROWS for m in re.findall(r"`\d\d_\w+` § [^;|]+|`\d\d_\w+`",
                                                                                   r["notebook"])}))
def test_every_named_notebook_section_exists(reference):
    name, _, heading = reference.partition(" § ")
    notebook = ROOT / "notebooks" / f"{name.strip('`')}.ipynb"
    assert notebook.is_file(), notebook
    if heading:
        assert heading.strip() in _headings(notebook), reference
