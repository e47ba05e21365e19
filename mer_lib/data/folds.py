"""Subject-disjoint cross-validation folds: every actor's clips are in exactly one test fold.

Schemes:
- ``mater``: the MATER protocol (Ghaleb et al. 2023, section 4.1): RAVDESS 12 folds of 2 actors,
  CREMA-D 10 folds. Actors are stratified by sex and dealt round-robin in actor-id order, so each
  RAVDESS fold is one male and one female actor (1-2, 3-4, ...) and CREMA-D folds are balanced.
- ``hicmae``: blocks of consecutive actor ids, as in recent work (HiCMAE): RAVDESS 6 folds of 4
  actors, CREMA-D 5 folds.
- ``mocanu``: the cross-modal model's protocol (Mocanu et al. 2023, section 4.1): 10 folds split by
  actor on both datasets, dealt like ``mater``; with the next fold as validation set that is the
  paper's 80/10/10 split of train, validation and test actors.

With fewer actors than the scheme needs (the embedded corpus, the real samples), the number of
folds shrinks to one per pair of actors, and never below 2. A single actor gets a single fold:
enough to extract embeddings, not to train (split() says so).

Inside a training split, the actors of the next fold are the inner validation set (for the
learning-rate scheduler and early stopping); with only 2 folds there is none to spare, and the
trainer falls back to a split of the training actors' clips.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mer_lib.errors import MerError

SCHEMES = {"mater": {"ravdess": 12, "cremad": 10, "synthetic": 12},
           "hicmae": {"ravdess": 6, "cremad": 5, "synthetic": 6},
           "mocanu": {"ravdess": 10, "cremad": 10, "synthetic": 10}}


def n_folds_for(scheme: str, dataset: str, n_actors: int) -> int:
    """The scheme's fold count, shrunk to one fold per 2 actors for small actor sets (at least 2)."""
    if scheme not in SCHEMES:
        raise MerError(f"unknown fold scheme {scheme!r} (choose from {', '.join(SCHEMES)})")
    if n_actors < 1:
        raise MerError("no actors to put in folds")
    if n_actors == 1:
        return 1
    return min(SCHEMES[scheme][dataset], max(2, n_actors // 2))


def make_folds(actors: pd.DataFrame, scheme: str, dataset: str, n_folds: int | None = None) -> pd.DataFrame:
    """Assign each actor (columns ``actor`` and ``sex``) a test fold; deterministic.

    Returns a DataFrame with columns actor, sex, fold, sorted by actor.
    """
    actors = actors[["actor", "sex"]].drop_duplicates("actor").sort_values("actor").reset_index(drop=True)
    k = n_folds or n_folds_for(scheme, dataset, len(actors))
    if not min(2, len(actors)) <= k <= len(actors):
        raise MerError(f"cannot make {k} subject-disjoint folds from {len(actors)} actors")
    if scheme == "hicmae":
        blocks = np.array_split(np.arange(len(actors)), k)
        fold = np.concatenate([np.full(len(b), i) for i, b in enumerate(blocks)])
        return actors.assign(fold=fold)
    order = actors.assign(_sex=actors["sex"].fillna("unknown")).sort_values(["_sex", "actor"], kind="stable")
    order["fold"] = np.arange(len(order)) % k
    return order.drop(columns="_sex").sort_values("actor").reset_index(drop=True)


def split(folds: pd.DataFrame, test_fold: int) -> tuple[list[int], list[int], list[int]]:
    """(train, validation, test) actors for one outer fold; validation is the next fold's actors.

    With only 2 folds the validation list is empty (see the module docstring).
    """
    k = int(folds["fold"].max()) + 1
    if k < 2:
        raise MerError(f"subject-disjoint training needs at least 2 actors, found {len(folds)}")
    if not 0 <= test_fold < k:
        raise MerError(f"fold {test_fold} does not exist (folds 0..{k - 1})")
    val_fold = (test_fold + 1) % k if k > 2 else None
    test = folds.loc[folds["fold"] == test_fold, "actor"].tolist()
    val = folds.loc[folds["fold"] == val_fold, "actor"].tolist() if val_fold is not None else []
    train = folds.loc[~folds["actor"].isin(test + val), "actor"].tolist()
    return train, val, test


def describe(folds: pd.DataFrame) -> str:
    """A printable table: one line per fold with its actors."""
    lines = [f"{len(folds)} actors in {folds['fold'].nunique()} subject-disjoint folds:"]
    for fold, group in folds.groupby("fold"):
        members = ", ".join(f"{a} ({s[0] if isinstance(s, str) and s else '?'})"
                            for a, s in zip(group["actor"], group["sex"]))
        lines.append(f"  fold {fold:2d}: {members}")
    return "\n".join(lines)
