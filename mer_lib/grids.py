"""Experiment grids: the papers' ablations and comparisons as lists of settings, and
`cross_validate_grid`, which cross-validates every entry of a grid into a run folder named after its
settings (`run_name`), so that the notebooks, `make bench` and `mer report` find the same runs.

An entry is a dict of training settings (mer_lib.config.TrainConfig fields) on top of the grid's
common settings and a preset (the entry's own "preset", or the grid's); `grid_config` makes it.
"""
from __future__ import annotations

from pathlib import Path

from mer_lib import distributed
from mer_lib.config import DEFAULT_PRESET, TrainConfig, make_config
from mer_lib.train import plan_run, run_plans

# MATER's ablations: Table 3 (A, V, AV with PE + MHSA and with neither) and the rest of Table 1 (AV with one).
MATER_ABLATIONS = [{"modalities": m, "pe": on, "mhsa": on} for on in (True, False) for m in ("a", "v", "av")] + \
    [{"modalities": "av", "pe": True, "mhsa": False}, {"modalities": "av", "pe": False, "mhsa": True}]


# Mocanu et al.'s ablations on window embeddings, JCA, and the MATER and LSTM models on the same inputs and
# folds. The cross-modal runs follow that paper's protocol (preset "mocanu"): the ablations of its Tables 1-2
# (AT alone, VT alone, no cross-modal fusion, no temporal attention) and the full model with the triplet loss,
# the full model with the emotion loss (Table 3), and with softmax (Figures 6a, 7a). VS and VC need spatial
# maps (frozen-backbone mode).
_MOCANU = {"model": "cross_attention", "preset": "mocanu"}


FUSION_COMPARISON = [_MOCANU | {"modalities": "a", "loss": "triplet"}, _MOCANU | {"modalities": "v", "loss": "triplet"},
                     _MOCANU | {"fusion": False, "loss": "triplet"}, _MOCANU | {"mhsa": False, "loss": "triplet"},
                     _MOCANU, _MOCANU | {"loss": "triplet"}, _MOCANU | {"loss": "emotion"},
                     {"model": "jca"}, {"model": "mater"}, {"model": "lstm"}]


def run_name(config: TrainConfig) -> str:
    """A readable run folder name:
    model-modalities[-nope][-nomhsa][-nofusion][-novs][-novc][-loss[-withsoftmax]][-noise<m>]."""
    parts = [config.model, config.modalities]
    parts += ["nope"] if not config.pe and config.model == "mater" else []
    parts += ["nomhsa"] if not config.mhsa else []
    if config.model == "cross_attention":
        switches = (("nofusion", config.fusion), ("novs", config.vs), ("novc", config.vc))
        parts += [name for name, on in switches if not on]
    parts += [config.loss] if config.loss != "softmax" else []
    parts += ["withsoftmax"] if config.loss != "softmax" and config.metric_loss == "with_softmax" else []
    parts += [f"noise{config.train_noise}"] if config.train_noise else []
    return "-".join(parts)


def grid_config(settings: dict, preset: str = DEFAULT_PRESET, **common) -> TrainConfig:
    """The TrainConfig of one grid entry: `common` and the entry's settings on top of the entry's own
    "preset", or `preset` when it names none."""
    settings = dict(settings)
    return make_config(settings.pop("preset", preset), **(common | settings))


def cross_validate_grid(data_dir: str | Path, out_root: str | Path, grid: list[dict], preset: str = DEFAULT_PRESET,
                        folds: str | list[int] = "all", audio: str | None = None, video: str | None = None,
                        window: float | None = None, windows: int | None = None, scheduler=None,
                        **common) -> dict[str, Path]:
    """Cross-validate every settings dict of `grid` (on top of `common` and the preset, or the entry's own
    "preset") into <out_root>/<run_name>; finished folds are reused, so a rerun only loads.
    Returns name -> run folder.

    On Dask `scheduler` (mer_lib.distributed) every (configuration, fold, seed) of the grid is one task,
    all submitted at once."""
    runs, corpora = {}, {}
    with distributed.connect(scheduler) as client:
        plans = []
        for settings in grid:
            config = grid_config(settings, preset, **common)
            out = Path(out_root) / run_name(config)
            plans.append(plan_run(data_dir, config, out, folds, audio, video, window, windows, corpora=corpora))
            runs[out.name] = out
        run_plans(plans, client)
    return runs
