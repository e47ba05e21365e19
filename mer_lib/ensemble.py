"""Ensembles of finished runs: their test probabilities averaged clip by clip.

Two models trained on the same folds make partly different mistakes; averaging their class
probabilities is decision-level fusion, the rule MATER applies to its audio and video heads (eq. 3
of the 2023 paper), here across runs: different audio views of the same clips (learned log-mel
windows and eGeMAPS windows), or the same model trained with different seeds. The members are
weighted equally, so nothing is fitted and no actor's labels choose anything. `combine` writes an
ordinary run folder (config.yaml naming the members, predictions.csv, metrics.json) that `mer
report` and `mer protocol` read like any other; predicting a new recording needs the members' own
run folders (`mer predict` on each).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from mer_lib import artifacts
from mer_lib.errors import MerError
from mer_lib.metrics import summarize

KEYS = ["id", "fold", "actor", "emotion", "label"]


def _member(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    """(metrics, predictions sorted by clip id) of a finished run folder."""
    if not (run_dir / "metrics.json").is_file() or not (run_dir / "predictions.csv").is_file():
        raise MerError(f"{run_dir} is not a finished `mer train` run (no metrics.json or predictions.csv)")
    predictions = pd.read_csv(run_dir / "predictions.csv", dtype={"id": str})
    return artifacts.read_json(run_dir / "metrics.json"), predictions.sort_values("id").reset_index(drop=True)


def combine(run_dirs: list[str | Path], out: str | Path) -> dict:
    """Average the fused probabilities of `run_dirs` (same clips, folds and classes); write and return metrics."""
    run_dirs = [Path(r) for r in run_dirs]
    if len(run_dirs) < 2:
        raise MerError("an ensemble needs at least two run folders")
    members = [_member(r) for r in run_dirs]
    (first, reference), out = members[0], Path(out)
    classes = tuple(first["classes"])
    columns = [f"p_{c}" for c in classes]
    for run_dir, (metrics, predictions) in zip(run_dirs[1:], members[1:]):
        if tuple(metrics["classes"]) != classes:
            raise MerError(f"{run_dir} predicts other classes than {run_dirs[0]}")
        if not predictions[KEYS].equals(reference[KEYS]):
            raise MerError(f"{run_dir} and {run_dirs[0]} were not tested on the same clips and folds")
    probabilities = sum(predictions[columns].to_numpy() for _, predictions in members) / len(members)
    predictions = reference[KEYS].assign(predicted=[classes[i] for i in probabilities.argmax(1)])
    predictions = pd.concat([predictions, pd.DataFrame(probabilities, columns=columns)], axis=1)
    modalities = "".join(sorted(set("".join(m["config"]["modalities"] for m, _ in members))))
    names = [str(r.resolve()) for r in run_dirs]
    config = {"model": "ensemble", "modalities": modalities, "pe": None, "mhsa": None, "members": names}
    metrics = summarize(predictions, classes, modalities) | {
        "config": config, "data": {"dataset": first.get("data", {}).get("dataset"), "stores": {}},
        "members": [{"run": n, "accuracy_mean": m["accuracy_mean"], "stores": m.get("data", {}).get("stores", {})}
                    for n, (m, _) in zip(names, members)]}
    artifacts.write_text(out / "config.yaml", yaml.safe_dump({"ensemble": {"members": names}}, sort_keys=False))
    artifacts.write_csv(out / "predictions.csv", predictions)
    artifacts.write_json(out / "metrics.json", metrics)
    return metrics
