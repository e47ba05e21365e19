"""The model registry: one entry per network, configs built from the training settings by field name."""
from __future__ import annotations

import dataclasses

import pytest

from mer_lib import ladder
from mer_lib.config import CHOICES, MODELS, TrainConfig, make_config
from mer_lib.errors import MerError
from mer_lib.models import registry
from mer_lib.models.standardized import build_model

SIZES = {"d_model": 16, "heads": 2, "layers": 1, "d_ff": 32, "dropout": 0.2}
DIMS = {"a": 6, "v": 5}


@pytest.mark.parametrize("name", list(registry.NETWORKS))
def test_every_network_takes_the_settings_it_shares_by_name(name):
    settings = make_config(model=name, **SIZES)
    config = registry.model_config(settings, 3, DIMS, 4)
    shared = {f.name for f in dataclasses.fields(config)} & {f.name for f in dataclasses.fields(TrainConfig)}
    assert {"d_model", "dropout"} <= shared
    assert all(getattr(config, f) == getattr(settings, f) for f in shared)
    assert (config.n_classes, config.d_audio, config.d_video) == (3, 6, 5)
    model = build_model(settings, 3, DIMS, 4)
    assert isinstance(model.model, registry.NETWORKS[name].model) and model.config == config


def test_what_the_cross_attention_entry_derives():
    settings = make_config("mocanu", model="cross_attention", mhsa=False, loss="emotion", **SIZES)
    config = registry.model_config(settings, 8, DIMS, 4)
    assert (config.at, config.vt, config.d_embedding, config.readout) == (False, False, 16, "centres")
    maps = dataclasses.replace(settings, frame_size=32, map_channels=7)
    assert registry.model_config(maps, 8, {"a": 6, "v": 7 * 2 * 2}, 4).d_video == 7  # VS and VC see m channels


def test_the_command_and_the_config_offer_the_registry():
    assert registry.MODELS == tuple(registry.NETWORKS) + ladder.LADDER == CHOICES["model"] == MODELS
    with pytest.raises(MerError, match="'svm' is not a network"):
        registry.network("svm")


def test_tables_name_a_network_by_its_label_and_other_runs_by_their_name():
    assert [registry.label(name) for name in registry.NETWORKS] == [n.label for n in registry.NETWORKS.values()]
    assert registry.label("lstm") == "LSTM baseline"
    assert [registry.label(rung) for rung in registry.LADDER] == list(registry.LADDER)
