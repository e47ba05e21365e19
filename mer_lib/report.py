"""`mer report`: the results of training runs, laid beside the numbers the papers publish.

For each run folder (written by `mer train`): accuracy mean and standard deviation over the folds,
per modality head, per class, and the confusion matrix (a heatmap). Across runs: MATER's Table 1
(windows x PE x MHSA, audio-visual) and Table 3 (A, V, AV with and without attention) with the
published accuracies of Ghaleb et al. (ICIP 2020, Tables 1-3; the journal version repeats them), the
cross-modal model beside Mocanu et al.'s Tables 1-3, and every audio-visual model on the same data.

Like with like. A published number sits beside a run only when the run repeats the experiment behind
it (`comparability`; the "comparable" column says "yes" or why not):
- dataset: RAVDESS or CREMA-D. The embedded corpus is named "synthetic (embedded corpus)" in every
  table and never sits beside a published figure.
- protocol: the paper's subject-disjoint folds, every actor tested once (MATER: RAVDESS 12 folds of
  24 actors, CREMA-D 10 of 91, Ghaleb et al. 2020 section 3.1; the cross-modal model: 10 folds with
  validation actors, Mocanu et al. section 4.1), counted in the run's predictions.csv; clean training.
- window layout: MATER's T windows of w seconds back to back from 0 s (the `fixed` layout) with the
  published row's T x w (Table 3: RAVDESS 8 x 0.5 s, CREMA-D 6 x 0.5 s); the cross-modal model's
  N = 6 snippets (section 4.2).
- model variant: MATER's PE and MHSA as in the row. For the cross-modal model the attention modules of
  the row (Tables 1-2: AT; VS; VS + VC; VS + VC + VT; AT + VS + VC + VT with the fusion). VS and VC
  attend over the cached backbone maps, so runs on window embeddings are another variant; the triplet
  or emotion loss trained alone, as the paper does (mer_lib.models.losses).
Published rows without a comparable run keep an empty "ours", so a student sees what is left to run;
runs that are not comparable get rows of their own without a published number. Each table also names
the run's stores (the papers used VGGish and VGG-M on FER2013 for MATER, 3D ResNet-101 and ResNet-18
for the cross-modal model; other extractors differ in their features only) and its inner validation
("actors": the epoch chosen on held-out actors; "none": every non-test actor trains, mer_lib.train).

"Baselines and models on the same folds" lists every run given, the baseline ladder (mer_lib.ladder)
beside the networks, with accuracy and unweighted average recall (UAR), and the human raters'
accuracy. Numbers are comparable only on the same test actors in the same folds, so the rows are
grouped by dataset and fold set (`fold_set`, read from each run's predictions.csv).

Models are named as the registry labels them (mer_lib.models.registry.label: "MATER", "LSTM baseline";
a ladder rung by its name) wherever the report shows them to a reader; the results table and
results.csv keep the `mer train --model` name, which the tables are selected by.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mer_lib import artifacts
from mer_lib.data.windows import FIXED
from mer_lib.errors import MerError
from mer_lib.features.store import parse_store_name
from mer_lib.models.registry import label

EMBEDDED = "synthetic (embedded corpus)"  # the embedded corpus, as every table names it
MATER, CROSS_ATTENTION = "mater", "cross_attention"  # the networks (registry names) whose papers publish figures
COMPARABLE = "yes"
# Ghaleb et al. 2020, Table 1: audio-visual accuracy (%) by (windows T, window seconds, PE, MHSA).
PUBLISHED_TABLE1 = {
    "ravdess": {(8, 0.5, True, True): 76.3, (8, 0.5, True, False): 70.6, (8, 0.5, False, True): 75.2,
                (8, 0.5, False, False): 69.4, (16, 0.25, True, True): 74.4, (16, 0.25, False, False): 66.2},
    "cremad": {(6, 0.5, True, True): 67.2, (6, 0.5, True, False): 64.4, (6, 0.5, False, True): 65.0,
               (6, 0.5, False, False): 61.8, (12, 0.25, True, True): 66.4, (12, 0.25, False, False): 58.3},
}
PAPER_WINDOWS = {"ravdess": (8, 0.5), "cremad": (6, 0.5)}  # MATER's main setting (Ghaleb et al. 2020, Tables 1, 3)
# Ghaleb et al. 2020, Table 3: accuracy (%) by modality, with (PE + MHSA) and without attention.
PUBLISHED_TABLE3 = {
    "ravdess": {True: {"a": 59.2, "v": 58.2, "av": 76.3}, False: {"a": 60.7, "v": 56.0, "av": 69.4}},
    "cremad": {True: {"a": 57.5, "v": 51.7, "av": 67.2}, False: {"a": 56.0, "v": 49.0, "av": 61.8}},
}
# Human raters: RAVDESS a / v / av from the MATER journal section 4 (Livingstone and Russo 2018);
# CREMA-D audio-visual from Ghaleb et al. 2020, Table 2.
HUMAN = {"ravdess": {"a": 62.0, "v": 72.0, "av": 80.0}, "cremad": {"av": 63.6}}
# Mocanu et al. 2023: average accuracy (%) by (attention modules, loss); Tables 1 (RAVDESS) and 2 (CREMA-D)
# with the triplet loss, Table 3 for the full model with the emotion loss.
PUBLISHED_FUSION = {
    "ravdess": {("AT", "triplet"): 76.42, ("VS", "triplet"): 77.54, ("VS + VC", "triplet"): 79.17,
                ("VS + VC + VT", "triplet"): 82.02, ("AT + VS + VC + VT", "triplet"): 87.85,
                ("AT + VS + VC + VT", "emotion"): 89.25},
    "cremad": {("AT", "triplet"): 62.77, ("VS", "triplet"): 76.14, ("VS + VC", "triplet"): 77.12,
               ("VS + VC + VT", "triplet"): 79.51, ("AT + VS + VC + VT", "triplet"): 81.71,
               ("AT + VS + VC + VT", "emotion"): 84.57},
}
ACTORS = {"ravdess": 24, "cremad": 91}  # Ghaleb et al. 2020 section 3; Mocanu et al. section 4.1
PAPER_FOLDS = {MATER: {"ravdess": 12, "cremad": 10},  # Ghaleb et al. 2020 section 3.1
               CROSS_ATTENTION: {"ravdess": 10, "cremad": 10}}  # Mocanu et al. section 4.1
SNIPPETS = 6  # N, the cross-modal model's snippets and audio segments (Mocanu et al. section 4.2)


def load_run(run_dir: str | Path) -> dict:
    """metrics.json of a finished `mer train` run, plus its folder name as ``run``."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise MerError(f"{run_dir} has no metrics.json: not a finished `mer train` run folder")
    return artifacts.read_json(path) | {"run": Path(run_dir).name, "run_dir": str(run_dir)}


def dataset_label(dataset: str | None) -> str | None:
    """The dataset as the tables name it: the embedded corpus says what it is."""
    return EMBEDDED if dataset == "synthetic" else dataset


def run_row(metrics: dict) -> dict:
    """One line of the results table: the settings that identify a run, what it was tested on, and its
    accuracies (%)."""
    config, data = metrics["config"], metrics.get("data", {})
    stores = data.get("stores", {})
    layout = next(filter(None, map(parse_store_name, stores.values())), {})
    tested = _tested(metrics["run_dir"])
    def percent(key):
        return round(100 * metrics[key], 1) if key in metrics else None
    return {"run": metrics["run"], "dataset": dataset_label(data.get("dataset")), "model": config["model"],
            "modalities": config["modalities"], "pe": config["pe"], "mhsa": config["mhsa"],
            "fusion": config.get("fusion", True), "vs": config.get("vs", True), "vc": config.get("vc", True),
            "maps": config.get("frame_size") is not None,
            "loss": config.get("loss", "softmax"), "metric_loss": config.get("metric_loss", "with_softmax"),
            "train_noise": config.get("train_noise"),
            "windows": layout.get("count"), "window": layout.get("window"), "layout": layout.get("layout"),
            "audio": stores.get("audio"), "video": stores.get("video"), "preset": config.get("preset"),
            "validation": config.get("validation", "actors"), "folds": tested["fold"].nunique(),
            "actors": tested["actor"].nunique(), "fold set": _fold_set_label(tested),
            "clips": metrics["n_clips"], "accuracy": percent("accuracy_mean"), "std": percent("accuracy_std"),
            "uar": percent("uar_mean"), "uar_std": percent("uar_std"),
            "accuracy_a": percent("accuracy_a_mean"), "accuracy_v": percent("accuracy_v_mean")}


def results_table(runs: list[dict]) -> pd.DataFrame:
    """All runs, one row each (see `run_row`), with the published figure of the experiment each repeats
    where the run is comparable with it (`comparability`)."""
    rows = [run_row(m) for m in runs]
    for row in rows:
        row["comparable"] = comparability(row)
        row["published"] = published_figure(row) if row["comparable"] == COMPARABLE else None
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- comparability with the papers

def fusion_method(row: dict) -> str:
    """The cross-modal run's attention modules as Mocanu et al.'s Tables 1-2 name them ("AT + VS + VC + VT");
    VS and VC only on cached backbone maps; ", concatenated" when both streams skip the cross-modal fusion."""
    m = row["modalities"]
    visual = "v" in m and row["maps"]
    modules = [name for name, on in (("AT", "a" in m and row["mhsa"]), ("VS", visual and row["vs"]),
                                     ("VC", visual and row["vc"]), ("VT", "v" in m and row["mhsa"])) if on]
    return (" + ".join(modules) or "no attention") + (", concatenated" if m == "av" and not row["fusion"] else "")


def published_figure(row: dict) -> float | None:
    """The published accuracy (%) of the experiment the run repeats (model, dataset, modalities, windows,
    variant, loss), or None where no paper publishes one."""
    dataset = row["dataset"]
    if row["model"] == MATER and row["modalities"] == "av":
        return PUBLISHED_TABLE1.get(dataset, {}).get((row["windows"], row["window"], row["pe"], row["mhsa"]))
    if row["model"] == MATER and (row["windows"], row["window"]) == PAPER_WINDOWS.get(dataset):
        return PUBLISHED_TABLE3[dataset][row["mhsa"]][row["modalities"]] if row["pe"] == row["mhsa"] else None
    if row["model"] == CROSS_ATTENTION:
        return PUBLISHED_FUSION.get(dataset, {}).get((fusion_method(row), row["loss"]))
    return None


def comparability(row: dict) -> str:
    """"yes" when the run repeats a published experiment (dataset, protocol, window layout, model variant;
    see the module docstring), else "no: " and every difference."""
    dataset, model = row["dataset"], row["model"]
    if dataset == EMBEDDED:
        return "no: embedded corpus"
    if model not in PAPER_FOLDS or dataset not in ACTORS:
        return f"no: no paper publishes {label(model)} on {dataset}"
    reasons = [] if published_figure(row) is not None else [f"no published figure for {_variant(row)}"]
    if row["train_noise"]:
        reasons.append(f"trained with noise in {row['train_noise']}")
    folds, actors = PAPER_FOLDS[model][dataset], ACTORS[dataset]
    if (row["folds"], row["actors"]) != (folds, actors):
        reasons.append(f"tested {row['folds']} folds of {row['actors']} actors, the paper {folds} of {actors}")
    reasons += _mater_differences(row) if model == MATER else _fusion_differences(row)
    return "no: " + "; ".join(reasons) if reasons else COMPARABLE


def _variant(row: dict) -> str:
    """The run's model variant in a few words, for the reasons of `comparability`."""
    if row["model"] == MATER:
        def switch(on):
            return "on" if on else "off"
        return (f"{row['modalities']} with {row['windows']} x {row['window']} s windows, PE {switch(row['pe'])}, "
                f"MHSA {switch(row['mhsa'])}")
    hint = " (VS and VC need the cached backbone maps)" if "v" in row["modalities"] and not row["maps"] else ""
    return f"{fusion_method(row)} with the {row['loss']} loss{hint}"


def _mater_differences(row: dict) -> list[str]:
    """How MATER's run departs from the papers' windows (Ghaleb et al. 2020 section 2.1: from the start)."""
    return [] if row["layout"] == FIXED else [f"{row['layout']} windows (the paper's lie back to back from 0 s)"]


def _fusion_differences(row: dict) -> list[str]:
    """How the cross-modal run departs from Mocanu et al.'s protocol (sections 3.4, 4.1, 4.2)."""
    reasons = []
    if row["windows"] != SNIPPETS:
        reasons.append(f"{row['windows']} snippets (the paper {SNIPPETS})")
    if row["loss"] != "softmax" and row["metric_loss"] != "alone":
        reasons.append("metric loss added to cross-entropy (the paper trains it alone)")
    if row["validation"] != "actors":
        reasons.append("no validation actors (the paper splits 80/10/10)")
    return reasons


# ---------------------------------------------------------------- the papers' tables

def _features(row: dict) -> str:
    """The stores a run read, audio first."""
    return ", ".join(s for s in (row.get("audio"), row.get("video")) if isinstance(s, str))


def _ours(row: dict) -> dict:
    """The columns a run fills in a paper's table."""
    return {"ours": row["accuracy"], "std": row["std"], "features": _features(row), "validation": row["validation"],
            "run": row["run"], "comparable": row["comparable"]}


def _datasets(published: dict, runs: pd.DataFrame) -> list[str]:
    """The papers' datasets in their order, then the others of `runs` (the embedded corpus among them)."""
    return list(published) + sorted(set(runs["dataset"].dropna()) - set(published))


def _beside_published(published: dict, runs: pd.DataFrame, keys: tuple[str, ...], key_of) -> pd.DataFrame:
    """A paper's rows (`published`: dataset -> key -> accuracy) with the comparable runs whose `key_of(row)`
    is the key beside them (one line each, or an empty "ours"), then the other runs of each dataset."""
    rows = []
    for dataset in _datasets(published, runs):
        mine = runs[runs["dataset"] == dataset].to_dict("records")
        for key, value in published.get(dataset, {}).items():
            base = {"dataset": dataset, **dict(zip(keys, key)), "published": value}
            rows += [base | _ours(r) for r in mine if r["comparable"] == COMPARABLE and key_of(r) == key] or [base]
        rows += [{"dataset": dataset, **dict(zip(keys, key_of(r))), "published": None} | _ours(r)
                 for r in mine if r["comparable"] != COMPARABLE]
    return pd.DataFrame(rows, columns=["dataset", *keys, "published", "ours", "std", "features", "validation",
                                       "run", "comparable"])


def _mater(results: pd.DataFrame) -> pd.DataFrame:
    """The MATER runs trained on clean data."""
    return results[(results["model"] == MATER) & results["train_noise"].isna()]


def table1(results: pd.DataFrame) -> pd.DataFrame:
    """Table 1: audio-visual MATER by windows x PE x MHSA; published rows with the comparable runs beside
    them, then the other audio-visual MATER runs."""
    ours = _mater(results)
    return _beside_published(PUBLISHED_TABLE1, ours[ours["modalities"] == "av"], ("windows", "window", "pe", "mhsa"),
                             lambda r: (r["windows"], r["window"], r["pe"], r["mhsa"]))


def mocanu_tables(results: pd.DataFrame) -> pd.DataFrame:
    """Mocanu et al.'s Tables 1-3: the cross-modal model by attention modules and loss; published rows with
    the comparable runs beside them, then the other cross-modal runs."""
    ours = results[(results["model"] == CROSS_ATTENTION) & results["train_noise"].isna()]
    return _beside_published(PUBLISHED_FUSION, ours, ("method", "loss"), lambda r: (fusion_method(r), r["loss"]))


def table3(results: pd.DataFrame) -> pd.DataFrame:
    """Table 3: A, V and AV accuracy with attention (PE + MHSA) and without (neither), ours and published.

    Each modality comes from its own run (`--modalities a`, `v`, `av`), as in the paper; a row joins the
    runs tested on the same folds whose stores agree (the av run's audio store is the a run's, its video
    store the v run's), so one row never mixes window layouts or extractors. Published numbers sit beside
    a row only when all its runs are comparable at the paper's windows (RAVDESS 8 x 0.5 s, CREMA-D 6 x 0.5 s).
    """
    ours = _mater(results)
    groups = _modality_groups(ours[ours["pe"] == ours["mhsa"]].to_dict("records"))
    rows = []
    for dataset in _datasets(PUBLISHED_TABLE3, ours):
        for attention in (True, False):
            published = PUBLISHED_TABLE3.get(dataset, {}).get(attention, {})
            mine = [g for g in groups if (g["dataset"], g["attention"]) == (dataset, attention)]
            comparable = [g for g in mine if _group_comparability(g) == COMPARABLE]
            rows += [_table3_row(dataset, attention, g, published) for g in comparable or ([{}] if published else [])]
            rows += [_table3_row(dataset, attention, g, {}) for g in mine if _group_comparability(g) != COMPARABLE]
        if dataset in HUMAN:
            rows.append({"dataset": dataset, "attention": "human raters",
                         **{f"{m} published": HUMAN[dataset].get(m) for m in ("a", "v", "av")}})
    return pd.DataFrame(rows, columns=["dataset", "attention", "a", "v", "av", "a published", "v published",
                                       "av published", "features", "validation", "runs", "comparable"])


def _modality_groups(runs: list[dict]) -> list[dict]:
    """The runs of Table 3 joined into rows: each av run with the a run of its audio store and the v run of its
    video store (same dataset, attention and fold set); a and v runs left over get rows of their own.
    Each group: dataset, attention, and the runs by modality."""
    left = {m: [r for r in runs if r["modalities"] == m] for m in ("a", "v")}
    def same(r, av, store):
        return (r["dataset"], r["mhsa"], r["fold set"], r[store]) == \
            (av["dataset"], av["mhsa"], av["fold set"], av[store])
    groups = []
    for av in (r for r in runs if r["modalities"] == "av"):
        group = {"av": av}
        for m, store in (("a", "audio"), ("v", "video")):
            match = next((r for r in left[m] if same(r, av, store)), None)
            if match is not None:
                group[m] = match
                left[m].remove(match)
        groups.append(group)
    groups += [{m: r} for m in ("a", "v") for r in left[m]]
    return [{"dataset": next(iter(g.values()))["dataset"], "attention": next(iter(g.values()))["mhsa"], "runs": g}
            for g in groups]


def _group_comparability(group: dict) -> str:
    """"yes" when every run of a Table 3 group is comparable at the paper's windows for its dataset (Table 1's
    other windows do not count here), else the reasons."""
    runs = group["runs"].values()
    reasons = [r["comparable"] for r in runs if r["comparable"] != COMPARABLE]
    reasons += [f"no: {r['modalities']} at {r['windows']} x {r['window']} s (Table 3: "
                f"{' x '.join(map(str, PAPER_WINDOWS[r['dataset']]))} s)" for r in runs
                if r["comparable"] == COMPARABLE and (r["windows"], r["window"]) != PAPER_WINDOWS[r["dataset"]]]
    return "; ".join(dict.fromkeys(reasons)) or COMPARABLE


def _table3_row(dataset: str, attention: bool, group: dict, published: dict) -> dict:
    """One Table 3 row: our accuracy per modality run of `group` (none for a published row left to run)
    beside `published`."""
    runs = group.get("runs", {})
    row = {"dataset": dataset, "attention": attention}
    for m in ("a", "v", "av"):
        row[m] = runs[m]["accuracy"] if m in runs else None
        row[f"{m} published"] = published.get(m)
    if runs:
        def joined(key):
            return ", ".join(dict.fromkeys(str(r[key]) for r in runs.values()))
        stores = (s for r in runs.values() for s in (r["audio"], r["video"]) if isinstance(s, str))
        row |= {"features": ", ".join(dict.fromkeys(stores)),
                "validation": joined("validation"), "runs": joined("run"), "comparable": _group_comparability(group)}
    return row


def fusion_table(results: pd.DataFrame) -> pd.DataFrame:
    """Every audio-visual model trained on clean data, one row each, with the published accuracy of the
    experiment it repeats where it is comparable (MATER: Table 1 at its windows; the cross-modal model:
    Mocanu et al. Tables 1-3)."""
    av = results[(results["modalities"] == "av") & results["train_noise"].isna()]
    columns = ["dataset", "model", "loss", "pe", "mhsa", "fusion", "accuracy", "std", "published", "comparable",
               "validation", "run"]
    named = av.assign(model=av["model"].map(label), features=[_features(r) for r in av.to_dict("records")])
    return named[columns + ["features"]].reset_index(drop=True)


def fold_set(run_dir: str | Path) -> str:
    """The folds a run was tested on, as a label: runs with the same label tested the same actors in the
    same folds ("6 folds, 12 actors (3f2a9c)", the digest of the (fold, actor) pairs of predictions.csv)."""
    return _fold_set_label(_tested(run_dir))


def _tested(run_dir: str | Path) -> pd.DataFrame:
    """The (fold, actor) pairs a run tested, from its predictions.csv, as strings."""
    path = Path(run_dir) / "predictions.csv"
    if not path.is_file():
        raise MerError(f"{run_dir} has no predictions.csv: not a finished `mer train` run folder")
    return pd.read_csv(path, usecols=["fold", "actor"]).drop_duplicates().astype(str)


def _fold_set_label(tested: pd.DataFrame) -> str:
    """See `fold_set`."""
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
        key = (row["dataset"], row["fold set"])
        groups.setdefault(key, []).append({
            "dataset": key[0], "fold set": key[1], "model": label(row["model"]), "modalities": row["modalities"],
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
    """Per-class accuracy (%) of each run's fused prediction; rows are classes, columns runs (those on the
    embedded corpus say so)."""
    def name(m):
        return f"{m['run']} ({EMBEDDED})" if m.get("data", {}).get("dataset") == "synthetic" else m["run"]
    return pd.DataFrame({name(m): {c: None if a is None else round(100 * a, 1)
                                   for c, a in m["per_class_accuracy"].items()} for m in runs})


def _markdown(table: pd.DataFrame) -> str:
    """`table` as Markdown; published numbers keep all their digits (87.85, not 87.8)."""
    if not len(table):
        return "(no runs of this kind)\n"
    exact = {c: table[c].map(lambda v: v if pd.isna(v) else f"{v:g}") for c in table if "published" in str(c)}
    return artifacts.markdown_table(table.assign(**exact).to_dict("records"))


def _default_out(run_dirs: list[Path]) -> Path:
    """RUN/report for one run; <common parent>/report for several."""
    if len(run_dirs) == 1:
        return run_dirs[0] / "report"
    parents = [set(p.resolve().parents) for p in run_dirs]
    return max(set.intersection(*parents), key=lambda p: len(p.parts)) / "report"


def report(run_dirs: list[str | Path], out: str | Path | None = None, figures: bool = True) -> dict[str, pd.DataFrame]:
    """Read the runs, write results/table1/table3/mocanu/fusion/baselines/per_class as CSV + report.md (+ confusion
    PNGs).

    Returns the tables by name; prints the Markdown report.
    """
    if not run_dirs:
        raise MerError("give at least one run folder")
    run_dirs = [Path(d) for d in run_dirs]
    runs = [load_run(d) for d in run_dirs]
    out = Path(out) if out is not None else _default_out(run_dirs)
    results = results_table(runs)
    tables = {"results": results, "table1": table1(results), "table3": table3(results),
              "mocanu": mocanu_tables(results), "fusion": fusion_table(results), "baselines": baselines_table(runs),
              "per_class": per_class(runs).reset_index(names="class")}
    for name, table in tables.items():
        artifacts.write_csv(out / f"{name}.csv", table)
    stores = sorted({s for s in results[["audio", "video"]].stack().dropna()})
    mater, cross = label(MATER), label(CROSS_ATTENTION)
    text = "\n\n".join([
        "# Results", f"Embeddings: {', '.join(stores)}. The papers used VGGish (audio) and VGG-M on FER2013 "
        f"(faces) for {mater}, 3D ResNet-101 and ResNet-18 for the {cross} model; accuracies are % over "
        "subject-disjoint folds (mean and standard deviation). A published number sits beside a run only when "
        "the run repeats its experiment (dataset, protocol, window layout, model variant); the column "
        f"`comparable` says why not otherwise. Runs on the embedded corpus are named \"{EMBEDDED}\": a "
        "teaching fixture, never comparable with a published figure.",
        "## Runs", _markdown(results.drop(columns=["audio", "video"])),
        f"## {mater} Table 1 (audio-visual; Ghaleb et al. 2020)", _markdown(tables["table1"]),
        f"## {mater} Table 3 (modalities, with and without attention; human raters)", _markdown(tables["table3"]),
        f"## The {cross} model (Mocanu et al. 2023, Tables 1-3)", _markdown(tables["mocanu"]),
        "## Audio-visual models on the same data", _markdown(tables["fusion"]),
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
