"""The backbones of the cross-modal attention model and their inputs (section 4.2 of Mocanu et al. 2023)."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import mer_lib
from mer_lib import weights as weights_mod
from mer_lib.errors import MerError
from mer_lib.features import trunks
from mer_lib.features.trunks import VideoTrunk, resnet3d_101, snippet_indices, spectrogram, spectrogram_segments
from mer_lib.models import cross_attention


def imported_modules(source: Path) -> set[str]:
    """The modules a Python file imports (at any depth: lazy imports count)."""
    nodes = list(ast.walk(ast.parse(source.read_text())))
    return ({node.module for node in nodes if isinstance(node, ast.ImportFrom) and node.module}
            | {alias.name for node in nodes if isinstance(node, ast.Import) for alias in node.names})


def test_features_import_nothing_from_models():
    # the layering of DESIGN.md: data -> features -> models; the model imports its backbones from here
    for source in Path(mer_lib.__file__).parent.joinpath("features").glob("*.py"):
        assert not {m for m in imported_modules(source) if m.startswith("mer_lib.models")}, source.name


def test_backbone_names_stay_importable_from_the_model_module():
    # mer_lib.bench and earlier code import them from mer_lib.models.cross_attention
    for name in ("N_SNIPPETS", "FRAMES_PER_SNIPPET", "FREQUENCY_BINS", "SEGMENT_SECONDS", "HOP_SECONDS",
                 "VIDEO_BACKBONES", "AUDIO_BACKBONES", "snippet_indices", "spectrogram_segments", "video_map_side",
                 "VideoTrunk", "AudioTrunk", "resnet3d_101"):
        assert getattr(cross_attention, name) is getattr(trunks, name), name


def test_resnet3d_101_layout():
    net = resnet3d_101()
    assert [len(layer) for layer in (net.layer1, net.layer2, net.layer3, net.layer4)] == [3, 4, 23, 3]
    assert net.layer4[-1].conv3[0].out_channels == 2048
    assert net.layer1[0].conv2[0].kernel_size == (3, 3, 3)


def test_backbone_weights_come_from_the_registry(tmp_path, monkeypatch):
    torch.manual_seed(0)
    source = VideoTrunk("r3d_18").net
    state = source.state_dict() | {"fc.weight": torch.zeros(400, 512), "fc.bias": torch.zeros(400)}
    torch.save(state, tmp_path / "r3d.pth")
    spec = weights_mod.WeightSpec("test_r3d", "r3d.pth", env="MER_TEST_R3D")
    monkeypatch.setitem(weights_mod.REGISTRY, "test_r3d", spec)
    monkeypatch.setenv("MER_TEST_R3D", str(tmp_path / "r3d.pth"))
    loaded = VideoTrunk("r3d_18", weights="test_r3d").net
    torch.testing.assert_close(loaded.stem[0].weight, source.stem[0].weight)
    with pytest.raises(MerError, match="weights 'test_r3d' do not fit this backbone"):
        VideoTrunk("mc3_18", weights="test_r3d")


def test_spectrogram_follows_section_4_2():
    sr = 16000
    t = torch.arange(sr) / sr
    image = spectrogram(torch.sin(2 * math.pi * 1000 * t), sr)
    assert image.shape == (256, 101)  # 256 bins; 1 s / 10 ms hops (+1 centred frame)
    assert image[:, 50].argmax().item() == 32  # 1000 Hz / (16000 Hz / 512) = bin 32
    with pytest.raises(MerError, match="resample the audio to at least 16 kHz"):
        spectrogram(torch.randn(8000), 8000)
    segments = spectrogram_segments(torch.randn(int(3.5 * sr)), sr)
    assert segments.shape == (6, 1, 256, 100)
    short = spectrogram_segments(torch.randn(sr // 2), sr)  # padded to 1 s
    assert short.shape == (6, 1, 256, 100)
    with pytest.raises(MerError, match="mono waveform"):
        spectrogram_segments(torch.randn(2, sr), sr)


def test_snippet_indices_cover_the_clip():
    picks = snippet_indices(115)
    assert picks.shape == (6, 16) and picks[0, 0] == 0 and picks[-1, -1] == 114
    assert (np.diff(picks.ravel()) >= 0).all() and np.diff(picks.ravel()).max() <= 2
    assert snippet_indices(10).max() == 9  # short clips repeat frames
    with pytest.raises(MerError, match="no frames"):
        snippet_indices(0)
