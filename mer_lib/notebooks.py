"""`mer notebooks run`: papermill over the course notebooks, in order, the way `make run` does it.

One YAML parameter file serves every notebook: each notebook receives only the parameters its
`parameters` cell declares. Each run leaves an executed copy and an HTML export (failed runs too,
so the error is visible) in the output folder, and a summary.json of what succeeded and how long
it took. A failing notebook is reported with its failing cell; the rest still run.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from mer_lib import artifacts, paths
from mer_lib.errors import MerError


@dataclass
class NotebookResult:
    """How one notebook run went."""

    name: str
    ok: bool
    seconds: float
    output: Path
    html: Path | None = None
    error: str | None = None
    failing_cell: int | None = None


def discover(notebooks_dir: Path, only: str | None = None) -> list[Path]:
    """The numbered notebooks (NN_topic.ipynb) in order, optionally only the numbers in `only`."""
    found = sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if only is None:
        return found
    wanted = [n.strip().zfill(2) for n in only.split(",") if n.strip()]
    by_number = {p.name[:2]: p for p in found}
    unknown = [n for n in wanted if n not in by_number]
    if unknown:
        raise MerError(f"no notebook numbered {', '.join(unknown)} in {notebooks_dir} "
                       f"(have {', '.join(by_number) or 'none'})")
    return [by_number[n] for n in sorted(wanted)]


def load_params(params_file: Path) -> dict:
    """The YAML mapping of notebook parameters; MerError when missing or not a mapping."""
    if not params_file.is_file():
        raise MerError(f"{params_file}: parameter file not found")
    params = yaml.safe_load(params_file.read_text()) or {}
    if not isinstance(params, dict):
        raise MerError(f"{params_file}: expected a mapping of parameter names to values")
    return params


def declared(notebook: Path, params: dict) -> dict:
    """The subset of `params` that the notebook's parameters cell declares."""
    import papermill

    names = papermill.inspect_notebook(str(notebook))
    return {k: v for k, v in params.items() if k in names}


def export_html(notebook: Path) -> Path:
    """Write the HTML export next to an executed notebook."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    return artifacts.write_text(notebook.with_suffix(".html"), body)


def run_one(notebook: Path, out_dir: Path, params: dict, kernel_name: str | None = None) -> NotebookResult:
    """Execute one notebook with papermill (cwd = its folder, as in JupyterLab) and export HTML."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = out_dir / notebook.name
    start = time.perf_counter()
    result = NotebookResult(notebook.stem, True, 0.0, output)
    try:
        with artifacts.atomic_path(output) as tmp:
            try:
                papermill.execute_notebook(str(notebook), str(tmp), parameters=declared(notebook, params),
                                           cwd=str(notebook.parent), kernel_name=kernel_name, progress_bar=True)
            except PapermillExecutionError as err:
                result.ok, result.failing_cell = False, err.exec_count
                result.error = f"{err.ename}: {err.evalue}".strip()
    except Exception as err:  # kernel died, bad notebook JSON: report it and go on with the next one
        result.ok, result.error = False, f"{type(err).__name__}: {err}"
    result.seconds = time.perf_counter() - start
    if output.is_file():
        result.html = export_html(output)
    return result


def run_all(params_file: str | Path | None = None, out_dir: str | Path | None = None, only: str | None = None,
            notebooks_dir: str | Path | None = None, kernel_name: str | None = None) -> list[NotebookResult]:
    """Run the notebooks in order; print a summary table and write summary.json in `out_dir`.

    Defaults: configs/embedded.yaml, runs/notebooks/ and notebooks/ of the repository.
    """
    params_file = paths.resolve(params_file or "configs/embedded.yaml")
    out_dir = paths.resolve(out_dir or "runs/notebooks")
    notebooks = discover(paths.resolve(notebooks_dir or "notebooks"), only)
    params = load_params(params_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for notebook in notebooks:
        print(f"running {notebook.name} ...", flush=True)
        results.append(run_one(notebook, out_dir, params, kernel_name))
    print(summary(results))
    artifacts.write_json(out_dir / "summary.json", {"params_file": str(params_file), "params": params,
                                                    "notebooks": [asdict(r) for r in results]})
    return results


def summary(results: list[NotebookResult]) -> str:
    """A table of notebook, status, seconds and the failing cell's error."""
    lines = [f"{'notebook':40s} {'status':7s} {'seconds':>8s}  error"]
    for r in results:
        where = f"cell {r.failing_cell}: {r.error}" if r.failing_cell else (r.error or "")
        lines.append(f"{r.name:40s} {'ok' if r.ok else 'FAILED':7s} {r.seconds:8.1f}  {where}")
    lines.append(f"{sum(r.ok for r in results)} of {len(results)} notebooks ran; outputs in "
                 f"{results[0].output.parent if results else '-'}")
    return "\n".join(lines)
