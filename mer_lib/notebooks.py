"""`mer notebooks run`: papermill over the course notebooks, in order, the way `make run` does it.

One YAML parameter file serves every notebook: each notebook receives only the parameters its
`parameters` cell declares, so a key that one notebook does not know is no error. Each run leaves
an executed copy and an HTML export (failed runs too, so the error is visible) in a fixed output
folder, `runs/notebooks/` by default, plus a `summary.json` of what ran, how long it took and where
it failed. A failing notebook is reported with its failing cell, and the rest still run.
"""
from __future__ import annotations

import ast
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from mer_lib import artifacts
from mer_lib.errors import MerError
from mer_lib.paths import project_root

DEFAULT_PARAMS = "configs/embedded.yaml"
DEFAULT_OUT = "runs/notebooks"
NOTEBOOKS = "notebooks"


@dataclass
class NotebookResult:
    """How one notebook run went.

    `failing_cell` is the execution count of the cell that raised, as shown (`In [n]`) in the
    executed copy and its HTML, where papermill's injected-parameters cell is counted too.
    """

    name: str
    ok: bool
    seconds: float
    output: Path
    html: Path | None = None
    error: str | None = None
    failing_cell: int | None = None
    parameters: list[str] = field(default_factory=list)  # the parameter names passed to the notebook


def discover(notebooks_dir: Path, only: str | None = None) -> list[Path]:
    """The numbered notebooks (NN_topic.ipynb) in order; with `only` ("01,3"), just those numbers."""
    found = sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise MerError(f"no numbered notebooks (NN_topic.ipynb) in {notebooks_dir}")
    if only is None:
        return found
    wanted = sorted({n.strip().zfill(2) for n in only.split(",") if n.strip()})
    by_number = {p.name[:2]: p for p in found}
    unknown = [n for n in wanted if n not in by_number]
    if unknown or not wanted:
        raise MerError(f"no notebook numbered {', '.join(unknown) or repr(only)} in {notebooks_dir} "
                       f"(have {', '.join(by_number)})")
    return [by_number[n] for n in wanted]


def load_params(params_file: Path) -> dict:
    """The YAML mapping of notebook parameters; MerError when missing, unreadable or not a mapping."""
    if not params_file.is_file():
        raise MerError(f"{params_file}: parameter file not found")
    try:
        params = yaml.safe_load(params_file.read_text()) or {}
    except yaml.YAMLError as err:
        raise MerError(f"{params_file}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(params, dict):
        raise MerError(f"{params_file}: expected a mapping of parameter names to values")
    return params


def declared(notebook: Path, params: dict) -> dict:
    """The subset of `params` that the notebook's `parameters` cell declares."""
    names = parameter_names(notebook)
    return {k: v for k, v in params.items() if k in names}


def parameter_names(notebook: Path) -> set[str]:
    """The names assigned at the top level of the notebook's `parameters` cell (none without one).

    Read with Python's own parser: papermill.inspect_notebook skips every line holding a second
    '=' (in a comment or a string), which would silently keep such a parameter at its default.
    """
    import nbformat
    from IPython.core.inputtransformer2 import TransformerManager

    cells = [c for c in nbformat.read(notebook, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    if not cells:
        return set()
    tree = ast.parse(TransformerManager().transform_cell(cells[0].source))
    targets = [t for node in tree.body if isinstance(node, ast.Assign) for t in node.targets]
    targets += [node.target for node in tree.body if isinstance(node, ast.AnnAssign)]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def execute(notebook: Path, output: Path, parameters: dict, kernel_name: str | None = None) -> tuple[int, str] | None:
    """Run `notebook` with papermill into `output`; (failing cell, error) when a cell raised, else None.

    The working directory is the notebook's folder, so relative paths behave as in JupyterLab. A
    notebook whose cell raised is still written whole, error included; a run that produced no
    notebook at all (kernel died, unreadable input) raises and leaves no file behind.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    with artifacts.atomic_path(output) as tmp:
        try:
            papermill.execute_notebook(str(notebook), str(tmp), parameters=parameters, cwd=str(notebook.parent),
                                       kernel_name=kernel_name, progress_bar=True)
        except PapermillExecutionError as err:
            return err.exec_count, f"{err.ename}: {err.evalue}".strip()
    return None


def export_html(notebook: Path) -> Path:
    """Write the HTML export next to an executed notebook."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    return artifacts.write_text(notebook.with_suffix(".html"), body)


def run_one(notebook: Path, out_dir: Path, params: dict, kernel_name: str | None = None) -> NotebookResult:
    """Execute one notebook with its declared parameters and export HTML; never raises on failure.

    The previous copies of this notebook in `out_dir` are removed first, so what is left there
    always belongs to this run.
    """
    output = out_dir / notebook.name
    for stale in (output, output.with_suffix(".html")):
        stale.unlink(missing_ok=True)
    result = NotebookResult(notebook.stem, ok=False, seconds=0.0, output=output)
    start = time.perf_counter()
    try:
        passed = declared(notebook, params)
        result.parameters = sorted(passed)
        failure = execute(notebook, output, passed, kernel_name)
        result.html = export_html(output)
        result.ok = failure is None
        result.failing_cell, result.error = failure or (None, None)
    except Exception as err:  # a batch run reports any failure (kernel died, bad notebook) and goes on
        result.error = f"{type(err).__name__}: {err}"
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def run_all(params_file: str | Path | None = None, out_dir: str | Path | None = None, only: str | None = None,
            notebooks_dir: str | Path | None = None, kernel_name: str | None = None) -> list[NotebookResult]:
    """Run the course notebooks in order; print a summary table and write summary.json in `out_dir`.

    Defaults are in the repository: configs/embedded.yaml, notebooks/, and the fixed output folder
    runs/notebooks/ (each run replaces the copies there). Paths given are taken as usual, relative
    to the working directory. `kernel_name` None uses each notebook's own kernelspec.
    """
    root = project_root()
    params_file = Path(params_file or root / DEFAULT_PARAMS).expanduser().absolute()
    out_dir = Path(out_dir or root / DEFAULT_OUT).expanduser().absolute()
    params = load_params(params_file)
    notebooks = discover(Path(notebooks_dir or root / NOTEBOOKS).expanduser().absolute(), only)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for notebook in notebooks:
        print(f"running {notebook.name} ...", flush=True)
        results.append(run_one(notebook, out_dir, params, kernel_name))
    ignored = sorted(set(params) - {name for r in results for name in r.parameters})
    print(summary(results, out_dir, ignored))
    artifacts.write_json(out_dir / "summary.json", {
        "ok": all(r.ok for r in results), "params_file": str(params_file), "params": params,
        "ignored_params": ignored, "notebooks": [asdict(r) for r in results]})
    return results


def summary(results: list[NotebookResult], out_dir: Path, ignored: list[str]) -> str:
    """A table of notebook, status, seconds and failing cell with its error (first line), then
    where the outputs are and which parameters no notebook took (a typo shows up here)."""
    lines = [f"{'notebook':32s} {'status':6s} {'seconds':>8s}  failing cell / error"]
    for r in results:
        error = r.error.splitlines()[0] if r.error else ""
        where = f"cell [{r.failing_cell}]: {error}" if r.failing_cell is not None else error
        lines.append(f"{r.name:32s} {'ok' if r.ok else 'FAILED':6s} {r.seconds:8.1f}  {where}")
    lines.append(f"{sum(r.ok for r in results)} of {len(results)} notebooks ran; "
                 f"executed copies, HTML and summary.json in {out_dir}")
    if ignored:
        lines.append(f"parameters no notebook declared (ignored): {', '.join(ignored)}")
    return "\n".join(lines)
