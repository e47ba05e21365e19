"""`mer report`: the results of training runs, laid beside the numbers the papers publish.

For each run folder (written by `mer train`): accuracy mean and standard deviation over the folds,
per modality head, per class, and the confusion matrix (a heatmap). Across runs: MATER's Table 1
(windows x PE x MHSA, audio-visual) and Table 3 (A, V, AV with and without attention) with the
published accuracies of Ghaleb et al. (ICIP 2020, Tables 1-3; the journal version repeats them), and
the fusion models beside Mocanu et al.'s (2023, Table 3). Published rows whose configuration was not
run are shown with an empty "ours" column, so a student sees what is left to run.

"Baselines and models on the same folds" lists every run given, the baseline ladder (mer_lib.ladder)
beside the networks, with accuracy and unweighted average recall (UAR), and the human raters'
accuracy. Numbers are comparable only on the same test actors in the same folds, so the rows are
grouped by dataset and fold set (`fold_set`, read from each run's predictions.csv).

The embeddings matter: the papers used VGGish (audio) and VGG-M trained on FER2013 (faces); the
offline defaults here are eGeMAPS and the FER2013 mini-Xception. Every table names the stores used.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mer_lib import artifacts
from mer_lib.errors import MerError
from mer_lib.features.store import parse_store_name

# Ghaleb et al. 2020, Table 1: audio-visual accuracy (%) by (windows T, window seconds, PE, MHSA).
PUBLISHED_TABLE1 = {
    "ravdess": {(8, 0.5, True, True): 76.3, (8, 0.5, True, False): 70.6, (8, 0.5, False, True): 75.2,
                (8, 0.5, False, False): 69.4, (16, 0.25, True, True): 74.4, (16, 0.25, False, False): 66.2},
    "cremad": {(6, 0.5, True, True): 67.2, (6, 0.5, True, False): 64.4, (6, 0.5, False, True): 65.0,
               (6, 0.5, False, False): 61.8, (12, 0.25, True, True): 66.4, (12, 0.25, False, False): 58.3},
}
PAPER_WINDOWS = {"ravdess": (8, 0.5), "cremad": (6, 0.5)}  # MATER's main setting (Ghaleb et al. 2020, Table 2)
# Ghaleb et al. 2020, Table 3: accuracy (%) by modality, with (PE + MHSA) and without attention.
PUBLISHED_TABLE3 = {
    "ravdess": {True: {"a": 59.2, "v": 58.2, "av": 76.3}, False: {"a": 60.7, "v": 56.0, "av": 69.4}},
    "cremad": {True: {"a": 57.5, "v": 51.7, "av": 67.2}, False: {"a": 56.0, "v": 49.0, "av": 61.8}},
}
# Human raters: RAVDESS a / v / av from the MATER journal section 4 (Livingstone and Russo 2018);
# CREMA-D audio-visual from Ghaleb et al. 2020, Table 2.
HUMAN = {"ravdess": {"a": 62.0, "v": 72.0, "av": 80.0}, "cremad": {"av": 63.6}}
# Mocanu et al. 2023, Table 3: the full model (AT + VS + VC + VT) by loss.
PUBLISHED_FUSION = {"triplet": {"ravdess": 87.85, "cremad": 81.71},
                    "emotion": {"ravdess": 89.25, "cremad": 84.57}}


def load_run(run_dir: str | Path) -> dict:
    """metrics.json of a finished `mer train` run, plus its folder name as ``run``."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise MerError(f"{run_dir} has no metrics.json: not a finished `mer train` run folder")
    return artifacts.read_json(path) | {"run": Path(run_dir).name, "run_dir": str(run_dir)}


def run_row(metrics: dict) -> dict:
    """One line of the results table: the settings that identify a run and its accuracies (%)."""
    config, data = metrics["config"], metrics.get("data", {})
    stores = data.get("stores", {})
    layout = next(filter(None, map(parse_store_name, stores.values())), {})
    percent = lambda key: round(100 * metrics[key], 1) if key in metrics else None
    return {"run": metrics["run"], "dataset": data.get("dataset"), "model": config["model"],
            "modalities": config["modalities"], "pe": config["pe"], "mhsa": config["mhsa"],
            "fusion": config.get("fusion", True),
            "loss": config.get("loss", "softmax"), "train_noise": config.get("train_noise"),
            "windows": layout.get("count"), "window": layout.get("window"),
            "audio": stores.get("audio"), "video": stores.get("video"), "folds": len(metrics["per_fold"]),
            "clips": metrics["n_clips"], "accuracy": percent("accuracy_mean"), "std": percent("accuracy_std"),
            "uar": percent("uar_mean"), "uar_std": percent("uar_std"),
            "accuracy_a": percent("accuracy_a_mean"), "accuracy_v": percent("accuracy_v_mean")}


def results_table(runs: list[dict]) -> pd.DataFrame:
    """All runs, one row each (see `run_row`)."""
    return pd.DataFrame([run_row(m) for m in runs])


def _mater(results: pd.DataFrame) -> pd.DataFrame:
    """The MATER runs trained on clean data."""
    return results[(results["model"] == "mater") & results["train_noise"].isna()]


def table1(results: pd.DataFrame) -> pd.DataFrame:
    """Table 1: audio-visual MATER by windows x PE x MHSA, ours beside the published accuracy."""
    rows = []
    ours = _mater(results)
    ours = ours[ours["modalities"] == "av"]
    for dataset in sorted(set(ours["dataset"].dropna()) | set(PUBLISHED_TABLE1)):
        published = PUBLISHED_TABLE1.get(dataset, {})
        mine = {(r.windows, r.window, r.pe, r.mhsa): r for r in ours[ours["dataset"] == dataset].itertuples()}
        for key in sorted(set(published) | set(mine), key=lambda k: (k[0], not k[2], not k[3])):
            run = mine.get(key)
            rows.append({"dataset": dataset, "windows": key[0], "window": key[1], "pe": key[2], "mhsa": key[3],
                         "ours": None if run is None else run.accuracy, "std": None if run is None else run.std,
                         "published": published.get(key), "run": None if run is None else run.run})
    return pd.DataFrame(rows)


def table3(results: pd.DataFrame) -> pd.DataFrame:
    """Table 3: A, V and AV accuracy with attention (PE + MHSA) and without (neither), ours and published.

    Each modality comes from its own run (`--modalities a`, `v`, `av`), as in the paper; the
    per-head accuracies of an AV run are in the results table.
    """
    ours = _mater(results)
    ours = ours[ours["pe"] == ours["mhsa"]]
    rows = []
    for dataset in sorted(set(ours["dataset"].dropna()) | set(PUBLISHED_TABLE3)):
        for attention in (True, False):
            row = {"dataset": dataset, "attention": attention}
            picked = ours[(ours["dataset"] == dataset) & (ours["mhsa"] == attention)]
            for m in ("a", "v", "av"):
                run = picked[picked["modalities"] == m]
                row[m] = run["accuracy"].iloc[0] if len(run) else None
                row[f"{m} published"] = PUBLISHED_TABLE3.get(dataset, {}).get(attention, {}).get(m)
            rows.append(row)
        rows.append({"dataset": dataset, "attention": "human raters",
                     **{f"{m} published": HUMAN.get(dataset, {}).get(m) for m in ("a", "v", "av")}})
    return pd.DataFrame(rows)


def fusion_table(results: pd.DataFrame) -> pd.DataFrame:
    """Every audio-visual model on the same data, beside the published accuracy of the same model and
    settings on RAVDESS and CREMA-D (MATER at the papers' window layouts; the fusion model by loss)."""
    av = results[(results["modalities"] == "av") & results["train_noise"].isna()]
    table = av[["dataset", "model", "loss", "pe", "mhsa", "fusion", "accuracy", "std", "run"]].copy()
    for dataset, column in (("ravdess", "published RAVDESS"), ("cremad", "published CREMA-D")):
        table[column] = [_published(r, dataset) for r in table.itertuples()]
    return table.reset_index(drop=True)


def _published(run, dataset: str) -> float | None:
    """The published accuracy on `dataset` of the run's model and settings, where a paper gives one."""
    if run.model == "cross_attention":  # the full model only: every attention module and the fusion
        return PUBLISHED_FUSION.get(run.loss, {}).get(dataset) if run.mhsa and run.fusion else None
    if run.model == "mater":
        return PUBLISHED_TABLE1[dataset].get((*PAPER_WINDOWS[dataset], run.pe, run.mhsa))
    return None


def fold_set(run_dir: str | Path) -> str:
    """The folds a run was tested on, as a label: runs with the same label tested the same actors in the
    same folds ("6 folds, 12 actors (3f2a9c)", the digest of the (fold, actor) pairs of predictions.csv)."""
    path = Path(run_dir) / "predictions.csv"
    if not path.is_file():
        raise MerError(f"{run_dir} has no predictions.csv: not a finished `mer train` run folder")
    tested = pd.read_csv(path, usecols=["fold", "actor"]).drop_duplicates().astype(str)
    pairs = sorted(map(tuple, tested.to_numpy().tolist()))
    return (f"{tested['fold'].nunique()} folds, {tested['actor'].nunique()} actors "
            f"({artifacts.config_hash({'tested': pairs}, 6)})")


def _plus_minus(mean: float | None, std: float | None) -> str | None:
    """"57.3 ± 2.1" (percent), or None for a metric the run does not have."""
    return None if mean is None else f"{mean:.1f} ± {std:.1f}"


def baselines_table(runs: list[dict]) -> pd.DataFrame:
    """Every run (ladder baselines and networks) with accuracy and UAR (% mean ± std over folds),
    grouped by dataset and fold set; each group ends with the human raters' accuracy on its dataset
    for the modalities its runs use (report.HUMAN)."""
    groups: dict[tuple, list[dict]] = {}
    for metrics in runs:
        row = run_row(metrics)
        key = (row["dataset"], fold_set(metrics["run_dir"]))
        groups.setdefault(key, []).append({
            "dataset": key[0], "fold set": key[1], "model": row["model"], "modalities": row["modalities"],
            "features": ", ".join(metrics.get("data", {}).get("stores", {}).values()),
            "accuracy": _plus_minus(row["accuracy"], row["std"]), "UAR": _plus_minus(row["uar"], row["uar_std"]),
            "folds": row["folds"], "run": row["run"]})
    rows = []
    for (dataset, folds), members in groups.items():
        human = HUMAN.get(dataset, {})
        rows += members + [{"dataset": dataset, "fold set": folds, "model": "human raters", "modalities": m,
                            "accuracy": f"{human[m]:.1f}"}
                           for m in dict.fromkeys(r["modalities"] for r in members) if m in human]
    return pd.DataFrame(rows, columns=list(rows[0]))


def _grouped_markdown(table: pd.DataFrame) -> str:
    """One Markdown table per (dataset, fold set), under a heading that names them."""
    return "\n".join(f"### {dataset}: {folds}\n\n" + _markdown(group.drop(columns=["dataset", "fold set"]))
                     for (dataset, folds), group in table.groupby(["dataset", "fold set"], sort=False, dropna=False))


def per_class(runs: list[dict]) -> pd.DataFrame:
    """Per-class accuracy (%) of each run's fused prediction; rows are classes, columns runs."""
    return pd.DataFrame({m["run"]: {c: None if a is None else round(100 * a, 1)
                                    for c, a in m["per_class_accuracy"].items()} for m in runs})


def _markdown(table: pd.DataFrame) -> str:
    return artifacts.markdown_table(table.to_dict("records")) if len(table) else "(no runs of this kind)\n"


def _default_out(run_dirs: list[Path]) -> Path:
    """RUN/report for one run; <common parent>/report for several."""
    if len(run_dirs) == 1:
        return run_dirs[0] / "report"
    parents = [set(p.resolve().parents) for p in run_dirs]
    return max(set.intersection(*parents), key=lambda p: len(p.parts)) / "report"


def report(run_dirs: list[str | Path], out: str | Path | None = None, figures: bool = True) -> dict[str, pd.DataFrame]:
    """Read the runs, write results/table1/table3/fusion/baselines/per_class as CSV + report.md (+ confusion PNGs).

    Returns the tables by name; prints the Markdown report.
    """
    if not run_dirs:
        raise MerError("give at least one run folder")
    run_dirs = [Path(d) for d in run_dirs]
    runs = [load_run(d) for d in run_dirs]
    out = Path(out) if out is not None else _default_out(run_dirs)
    results = results_table(runs)
    tables = {"results": results, "table1": table1(results), "table3": table3(results),
              "fusion": fusion_table(results), "baselines": baselines_table(runs),
              "per_class": per_class(runs).reset_index(names="class")}
    for name, table in tables.items():
        artifacts.write_csv(out / f"{name}.csv", table)
    stores = sorted({s for s in results[["audio", "video"]].stack().dropna()})
    text = "\n\n".join([
        "# Results", f"Embeddings: {', '.join(stores)}. The papers used VGGish (audio) and VGG-M on FER2013 "
        "(faces); accuracies are % over subject-disjoint folds (mean and standard deviation).",
        "## Runs", _markdown(results.drop(columns=["audio", "video"])),
        "## MATER Table 1 (audio-visual; Ghaleb et al. 2020)", _markdown(tables["table1"]),
        "## MATER Table 3 (modalities, with and without attention; human raters)", _markdown(tables["table3"]),
        "## Fusion models (Mocanu et al. 2023 Table 3 for cross_attention)", _markdown(tables["fusion"]),
        "## Baselines and models on the same folds", "Accuracy and unweighted average recall (UAR), % mean ± "
        "standard deviation over the folds; compare rows only within a table (same dataset, same test actors "
        "in the same folds).", _grouped_markdown(tables["baselines"]),
        "## Per-class accuracy", _markdown(tables["per_class"])])
    artifacts.write_text(out / "report.md", text + "\n")
    if figures:
        _confusion_figures(runs, out)
    print(text)
    print(f"\nwrote {out}")
    return tables


def _confusion_figures(runs: list[dict], out: Path) -> None:
    """One normalised confusion-matrix heatmap per run: <out>/confusion_<run>.png."""
    from mer_lib import plots

    for m in runs:
        plots.save(plots.confusion_matrix(m["confusion_matrix"], m["classes"], title=m["run"]),
                   out / f"confusion_{m['run']}.png")
