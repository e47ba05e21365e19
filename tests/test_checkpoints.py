"""mer_lib.checkpoints: a checkpoint of another model revision is refused, not reread with another meaning."""
from __future__ import annotations

import pytest
import torch

from mer_lib import checkpoints
from mer_lib.errors import MerError


def test_a_checkpoint_of_an_older_model_revision_is_refused_not_reread(tmp_path):
    """Weights trained before the PE rescaling mean something else: loading them is a one-line error."""
    path = tmp_path / "fold0.pt"
    torch.save({"config": {}, "finished": True, "model": {}}, path)  # no revision: written before it existed
    with pytest.raises(MerError, match="older version of the models"):
        checkpoints.read(path)
    torch.save({"config": {}, "finished": True, "model": {}, "revision": checkpoints.MODEL_REVISION}, path)
    assert checkpoints.read(path)["finished"]
