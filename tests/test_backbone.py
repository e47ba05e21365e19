"""Cached frozen-backbone features (issue 7, CPU path): stores of conv5 maps and spectrogram features.

Offline: the tests save randomly initialised backbones and point MER_WEIGHTS_<NAME> at them, the way
a user points at a local copy of the published weights; frames are 32 x 32 to stay fast.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torchvision

from mer_lib import weights
from mer_lib.data import manifest as mf
from mer_lib.data import synthetic
from mer_lib.errors import MerError
from mer_lib.features import backbone, store
from mer_lib.features.trunks import snippet_indices
from mer_lib.models.cross_attention import CrossAttentionConfig, CrossAttentionModel

SIZE = 32  # frames and spectrogram images: conv5 maps of 2 x 2


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Two synthetic clips of 2 s (a face that dlib finds, speech-like audio) in RAVDESS layout."""
    root = tmp_path_factory.mktemp("raw")
    synthetic.synthesize(root, actors=1, duration=2.0, limit=2, workers=1)
    return root


@pytest.fixture(scope="module")
def weight_env(tmp_path_factory) -> dict[str, str]:
    """Random r3d_18 (Kinetics layout, with its classifier) and resnet18 (3-channel conv1) weight files."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    files = {"R3D_18_KINETICS400": (torchvision.models.video.r3d_18(), "r3d_18.pth"),
             "RESNET18_IMAGENET": (torchvision.models.resnet18(), "resnet18.pth")}
    env = {"MER_CACHE": str(folder / "cache")}
    for name, (net, filename) in files.items():
        torch.save(net.state_dict(), folder / filename)
        env[f"MER_WEIGHTS_{name}"] = str(folder / filename)
    return env


def prepared(raw, out):
    mf.prepare("synthetic", raw, out, quiet=True)
    return out


@pytest.fixture(scope="module")
def extracted(raw, weight_env, tmp_path_factory):
    """Both stores of the two clips, extracted once for the module."""
    data = prepared(raw, tmp_path_factory.mktemp("data"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in weight_env.items():
            mp.setenv(key, value)
        paths = backbone.extract_backbone(data, frame_size=SIZE, spectrogram_size=SIZE, workers=1)
    return data, paths


@pytest.fixture
def offline(weight_env, monkeypatch):
    for key, value in weight_env.items():
        monkeypatch.setenv(key, value)
    return weight_env


def test_face_snippets_sample_the_clip_and_normalise_like_kinetics():
    chips = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    x = backbone.face_snippets(chips, "r3d_18")
    assert x.shape == (6, 3, 16, 8, 8)  # (N, 3, k, S, S)
    mean = torch.tensor([0.43216, 0.394666, 0.37645])  # torchvision's Kinetics-400 statistics
    std = torch.tensor([0.22803, 0.22145, 0.216989])
    frame = snippet_indices(40)[2, 5]
    expected = (torch.from_numpy(chips[frame]).float() / 255 - mean) / std  # (S, S, 3)
    torch.testing.assert_close(x[2, :, 5], expected.permute(2, 0, 1))


def test_spectrogram_images_are_six_standardised_one_second_segments():
    signal = np.random.default_rng(0).normal(0, 0.1, int(2.5 * 16000)).astype(np.float32)
    images = backbone.spectrogram_images(signal)
    assert images.shape == (6, 1, 256, 100)
    assert abs(images.mean().item()) < 1e-4 and images.std().item() == pytest.approx(1, abs=1e-3)


def test_stores_hold_maps_and_features_named_and_described(extracted, weight_env):
    data, paths = extracted
    assert paths["video"].name == "video-r3d_18_maps32-w1xT6.npz"
    assert paths["audio"].name == "audio-resnet18_spectrogram-w1xT6.npz"
    video = store.load_store(data, "video", "r3d_18_maps32")
    audio = store.load_store(data, "audio", "resnet18_spectrogram", window=1.0, count=6)
    assert video.X.shape == (2, 6, 512 * 2 * 2) and audio.X.shape == (2, 6, 512)
    assert video.mask.all() and audio.mask.all() and video.ids == audio.ids
    assert video.meta["map_shape"] == [512, 2, 2] and video.meta["frame_size"] == SIZE
    assert video.meta["dim"] == 2048 and video.meta["frames_per_snippet"] == 16 and not video.meta["failures"]
    assert audio.meta["spectrogram_size"] == SIZE and audio.meta["sample_rate"] == 16000
    assert video.meta["weights"] == "r3d_18_kinetics400" and audio.meta["weights"] == "resnet18_imagenet"
    assert video.meta["weights_sha256"] == weights.sha256_file(weight_env["MER_WEIGHTS_R3D_18_KINETICS400"])
    for x in (video.X, audio.X):  # conv5 after ReLU, averaged: non-negative; the two clips differ
        assert (x >= 0).all() and not np.allclose(x[0], x[1])


def test_stored_features_come_from_the_registered_weights(extracted, offline):
    data, _ = extracted
    config = backbone.backbone_config("audio", "resnet18", SIZE)
    trunk = backbone.trunk(config)
    state = torch.load(offline["MER_WEIGHTS_RESNET18_IMAGENET"], weights_only=True)
    torch.testing.assert_close(trunk.net.conv1.weight, state["conv1.weight"].mean(1, keepdim=True))
    audio = store.load_store(data, "audio")
    clip = mf.load_manifest(data).set_index("id").loc[audio.ids[1]].to_dict()
    np.testing.assert_allclose(backbone.audio_features(clip, config), audio.X[1], rtol=1e-5, atol=1e-6)


def test_rerun_reuses_the_stores(extracted, offline, monkeypatch, capsys):
    data, paths = extracted
    monkeypatch.setattr(backbone, "embed_clip", lambda *args: pytest.fail("an up-to-date store was recomputed"))
    capsys.readouterr()
    assert backbone.extract_backbone(data, frame_size=SIZE, spectrogram_size=SIZE, workers=1) == paths
    assert capsys.readouterr().out.count("is up to date") == 2


def test_model_trains_on_the_cached_maps(extracted):
    data, _ = extracted
    video, audio = store.load_store(data, "video"), store.load_store(data, "audio")
    settings = backbone.map_settings(video.meta)
    assert settings == {"d_video": 512, "frame_size": SIZE} and backbone.map_settings(audio.meta) == {}
    model = CrossAttentionModel(CrossAttentionConfig(n_classes=8, d_audio=audio.dim, d_model=16, heads=2,
                                                     d_embedding=8, **settings))
    out = model(audio=torch.from_numpy(audio.X), video=torch.from_numpy(video.X),
                audio_mask=torch.from_numpy(audio.mask), video_mask=torch.from_numpy(video.mask),
                return_internals=True)
    assert out.logits.shape == (2, 8) and out.attention["VS"].shape == (2, 6, 2, 4, 4)
    out.logits.sum().backward()
    assert model.visual_spatial_channel.spatial.w_qkv.weight.grad.abs().sum() > 0
    with pytest.raises(MerError, match="do not fit frame size 48"):
        backbone.map_settings(video.meta | {"frame_size": 48})


def test_missing_weights_name_the_fetch_command_before_any_work(raw, tmp_path, monkeypatch):
    data = prepared(raw, tmp_path / "data")
    monkeypatch.setenv("MER_CACHE", str(tmp_path / "empty_cache"))
    for name in ("r3d_18_kinetics400", "resnet18_imagenet"):
        monkeypatch.delenv(f"MER_WEIGHTS_{name.upper()}", raising=False)
    with pytest.raises(MerError, match="`mer weights fetch r3d_18_kinetics400`.*MER_WEIGHTS_R3D_18_KINETICS400="):
        backbone.extract_backbone(data)
    with pytest.raises(MerError, match="`mer weights fetch resnet18_imagenet`"):
        backbone.extract_backbone(data, video_backbone=None)
    assert not (data / "embeddings").exists()


def test_bad_choices_are_one_line_errors(raw, tmp_path, offline):
    data = prepared(raw, tmp_path / "data")
    with pytest.raises(MerError, match="unknown video backbone 'r3d_101'.*no registered Kinetics weights"):
        backbone.extract_backbone(data, video_backbone="r3d_101")
    with pytest.raises(MerError, match=r"frame_size \(--frame-size\) must be an integer >= 1, got 0"):
        backbone.extract_backbone(data, frame_size=0)
    with pytest.raises(MerError, match="nothing to extract"):
        backbone.extract_backbone(data, video_backbone=None, audio_backbone=None)
    with pytest.raises(MerError, match="weights 'resnet18_imagenet' do not fit this backbone"):
        backbone.extract_backbone(data, video_weights="resnet18_imagenet", frame_size=SIZE)
    assert not (data / "embeddings").exists()  # refused before any clip was started


def test_interrupted_run_resumes_and_a_corrupt_clip_is_recorded(raw, tmp_path, offline, monkeypatch):
    media_root = tmp_path / "raw"
    shutil.copytree(raw, media_root)
    data = prepared(media_root, tmp_path / "data")
    clips = mf.load_manifest(data)
    real_embed, done = backbone.embed_clip, []

    def crash_after_one(clip, config):
        if done:
            raise KeyboardInterrupt
        done.append(clip["id"])
        return real_embed(clip, config)

    monkeypatch.setattr(backbone, "embed_clip", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        backbone.extract_backbone(data, video_backbone=None, spectrogram_size=SIZE, workers=1)
    with open(clips.iloc[1]["audio_path"], "r+b") as handle:  # damaged after prepare, as a disk error would
        handle.truncate(600)
    monkeypatch.setattr(backbone, "embed_clip", lambda clip, config: (done.append(clip["id"]),
                                                                      real_embed(clip, config))[1])
    backbone.extract_backbone(data, video_backbone=None, spectrogram_size=SIZE, workers=1)
    assert done == clips["id"].tolist()  # the finished clip was not redone
    audio = store.load_store(data, "audio")
    assert audio.ids == [clips.iloc[0]["id"]] and list(audio.meta["failures"]) == [clips.iloc[1]["id"]]
