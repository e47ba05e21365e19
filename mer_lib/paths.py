"""Where things live: the repository root and paths relative to it.

Notebooks run with the notebooks folder as working directory (JupyterLab, papermill and nbval all
do), the CLI from wherever the user is; resolving relative paths against the repository root
makes `data/embedded` mean the same folder everywhere.
"""
from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository root (the folder with pyproject.toml above mer_lib), else the working directory."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else Path.cwd()


def resolve(path: str | Path) -> Path:
    """An absolute path: `path` itself when absolute (or ~), else relative to the repository root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def files_under(root: str | Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Sorted files below `root` whose suffix (any case) is one of `suffixes`, following symlinked folders.

    Dataset folders are often assembled from symlinks (``Actor_03 -> /elsewhere/Actor_03``); pathlib's
    ``rglob`` does not descend into them before Python 3.13, so the walk is os.walk(followlinks=True).
    """
    found = []
    for folder, _, names in os.walk(root, followlinks=True):
        found += [Path(folder) / n for n in names if Path(n).suffix.lower() in suffixes]
    return sorted(p for p in found if p.is_file())
