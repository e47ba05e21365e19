"""mer_lib.checkpoints: a checkpoint of another model revision is refused, not reread with another meaning;
one of other data is trained again."""
from __future__ import annotations

import pytest
import torch

from mer_lib import checkpoints
from mer_lib.config import make_config
from mer_lib.errors import MerError


def test_a_checkpoint_of_an_older_model_revision_is_refused_not_reread(tmp_path):
    """Weights trained before the PE rescaling mean something else: loading them is a one-line error."""
    path = tmp_path / "fold0.pt"
    torch.save({"config": {}, "finished": True, "model": {}}, path)  # no revision: written before it existed
    with pytest.raises(MerError, match="older version of the models"):
        checkpoints.read(path)
    torch.save({"config": {}, "finished": True, "model": {}, "revision": checkpoints.MODEL_REVISION}, path)
    assert checkpoints.read(path)["finished"]


def test_a_checkpoint_of_other_data_is_not_resumed(tmp_path):
    """A fold trained on other clips or embeddings (another fingerprint) is trained again; one written before
    fingerprints were recorded is resumed as before."""
    config, path = make_config("fast"), tmp_path / "fold0.pt"
    checkpoints.save(path, config, True, model={}, data="abc")
    assert checkpoints.resume(path, config, "abc")["finished"]
    assert checkpoints.resume(path, config, "def") is None
    assert checkpoints.resume(path, config)["finished"]  # no fingerprint asked: not compared
    checkpoints.save(path, config, True, model={})
    assert checkpoints.resume(path, config, "def")["finished"]
