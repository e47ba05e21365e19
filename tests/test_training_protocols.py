"""The papers' training protocols: the cross-modal model's preset (Mocanu et al. 2023, section 4.2), the
metric loss alone with a nearest-class-centre readout, and MATER's inner-validation switch."""
from __future__ import annotations

import argparse
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from test_train import make_data_dir, toy_clip_data, toy_config

from mer_lib import cli, grids, run_folder, train
from mer_lib.config import PRESETS, SCHEDULES, make_config
from mer_lib.data import cremad
from mer_lib.errors import MerError
from mer_lib.models import registry
from mer_lib.models.cross_attention import CrossAttentionConfig, CrossAttentionModel
from mer_lib.models.losses import METRIC_LOSSES, emotion_metric_loss, make_loss, polarities, triplet_loss

SMALL = {"d_model": 16, "heads": 2, "layers": 1, "d_ff": 32, "device": "cpu"}


def test_mocanu_preset_is_the_published_protocol():
    config = make_config("mocanu", model="cross_attention", loss="emotion")
    assert (config.lr, config.batch_size, config.schedule, config.weight_decay) == (1e-4, 16, "constant", 0.0)
    assert (config.early_stopping, config.monitor, config.validation) == (20, "accuracy", "actors")
    assert config.metric_loss == "alone" and registry.centres_readout(config)
    assert not registry.centres_readout(make_config("mocanu", model="cross_attention"))  # softmax: classifier
    assert make_config("fast", model="cross_attention", loss="triplet").metric_loss == "with_softmax"


def test_every_preset_names_its_inner_validation():
    assert {name: preset["validation"] for name, preset in PRESETS.items()} == \
        {"paper": "actors", "fast": "actors", "audio": "none", "mocanu": "actors"}


def test_the_cli_offers_every_preset_schedule_and_metric_loss():
    parser = cli.build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = {a.dest: a.choices for a in subcommands.choices["train"]._actions}
    assert tuple(options["preset"]) == tuple(PRESETS)
    assert tuple(options["schedule"]) == SCHEDULES
    assert tuple(options["metric_loss"]) == METRIC_LOSSES


def test_the_metric_loss_alone_has_no_cross_entropy():
    torch.manual_seed(0)
    output = SimpleNamespace(logits=torch.randn(8, 6, requires_grad=True), embedding=torch.randn(8, 6))
    labels = torch.tensor([0, 0, 1, 1, 2, 3, 4, 5])
    classes = cremad.CLASSES
    triplet = make_loss("triplet", classes, alpha=0.3, metric_loss="alone")(output, labels)
    torch.testing.assert_close(triplet, triplet_loss(output.embedding, labels, 0.3))
    emotion = make_loss("emotion", classes, metric_loss="alone")(output, labels)
    torch.testing.assert_close(emotion, emotion_metric_loss(output.embedding, labels, polarities(classes)))
    softmax = make_loss("softmax", classes, metric_loss="alone")(output, labels)  # softmax is cross-entropy anyway
    torch.testing.assert_close(softmax, torch.nn.functional.cross_entropy(output.logits, labels))
    with pytest.raises(MerError, match="unknown metric loss combination 'sum'"):
        make_loss("triplet", classes, metric_loss="sum")


def test_nearest_centre_readout_predicts_the_class_of_the_nearest_training_centre():
    torch.manual_seed(0)
    config = CrossAttentionConfig(n_classes=3, modalities="a", d_audio=4, d_model=4, heads=2, d_embedding=5,
                                  dropout=0.0, readout="centres")
    model = CrossAttentionModel(config).eval()
    audio = torch.randn(6, 2, 4)
    out = model(audio=audio)
    assert out.embedding.shape == (6, 3)  # the metric space is the last layer: one output per class
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    model.set_class_centres(out.embedding, labels)
    unit = torch.nn.functional.normalize(out.embedding, dim=1)
    centres = torch.stack([unit[labels == k].mean(0) for k in range(3)])
    torch.testing.assert_close(model.class_centres, centres)
    logits = model(audio=audio).logits
    torch.testing.assert_close(logits, -torch.cdist(unit, centres) ** 2)
    model.set_class_centres(out.embedding[:4], labels[:4])  # class 2 has no training clip: never nearer
    assert model(audio=audio).logits[:, 2].eq(-4.0).all() and (model.centre_fitted == torch.tensor([1, 1, 0])).all()
    assert "class_centres" in model.state_dict()  # the centres travel with the checkpoint
    with pytest.raises(MerError, match="unknown readout 'knn'"):
        CrossAttentionConfig(readout="knn")


def test_the_metric_loss_alone_trains_the_centres_and_a_checkpoint_keeps_them(tmp_path):
    data_dir = make_data_dir(tmp_path / "data", actors=3, reps=3)
    config = make_config("mocanu", model="cross_attention", loss="triplet", epochs=3, **SMALL)
    metrics = train.cross_validate(data_dir, config, tmp_path / "run", folds="0")
    run = run_folder.load_trained(tmp_path / "run")
    model = run.models[0].model
    assert model.config.readout == "centres" and model.centre_fitted.all()
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    probabilities = train.predict(run.models[0], run.test_data(0)).logits.softmax(1).numpy()
    assert abs(probabilities - predictions[[f"p_{c}" for c in cremad.CLASSES]].to_numpy()).max() < 1e-5
    assert metrics["config"]["metric_loss"] == "alone" and grids.run_name(config) == "cross_attention-av-triplet"
    assert grids.run_name(make_config("fast", model="cross_attention", loss="triplet")) == \
        "cross_attention-av-triplet-withsoftmax"


def test_early_stopping_on_validation_accuracy_keeps_the_most_accurate_epoch(monkeypatch):
    data = toy_clip_data()
    scores = iter([(0.9, 0.5), (0.8, 0.7), (0.5, 0.6), (0.4, 0.6), (0.3, 0.65), (0.2, 0.4)])  # (loss, accuracy)
    monkeypatch.setattr(train, "evaluate", lambda model, val, task: next(scores))
    config = toy_config(epochs=6, early_stopping=3, monitor="accuracy", schedule="constant")
    _, history = train.train_fold(config, data.take(range(64)), data.take(range(64, 96)))
    assert len(history) == 5  # epoch 1 was the most accurate; three epochs later training stops
    assert [row["lr"] for row in history] == [config.lr] * 5  # constant: no plateau reduction
    scores = iter([(0.9, 0.5), (0.8, 0.7), (0.5, 0.6), (0.4, 0.6), (0.3, 0.65), (0.2, 0.4)])
    _, history = train.train_fold(toy_config(epochs=6, early_stopping=3), data.take(range(64)),
                                  data.take(range(64, 96)))
    assert len(history) == 6  # by the loss every epoch is better


def test_validation_none_trains_every_epoch_and_the_plateau_reads_the_training_loss(monkeypatch):
    config = make_config("paper", validation="none", epochs=4, patience=0, lr=1e-3, **SMALL)
    data = toy_clip_data()
    monkeypatch.setattr(train, "evaluate", lambda *a: pytest.fail("no validation clip is evaluated"))
    losses = iter([1.0, 1.0, 1.0, 1.0])  # a flat training loss: each epoch after the first is a plateau
    monkeypatch.setattr(train, "run_epoch", lambda *a, **k: (next(losses), 0.5))
    _, history = train.train_fold(config, data, None)
    assert [row["epoch"] for row in history] == [0, 1, 2, 3] and all(math.isnan(r["val_loss"]) for r in history)
    assert [row["lr"] for row in history] == pytest.approx([1e-3, 1e-4, 1e-5, 1e-6])
    with pytest.raises(MerError, match="fixed number of epochs"):
        make_config("paper", validation="none", early_stopping=5)

