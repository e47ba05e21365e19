"""Audio extractors (VGGish, eGeMAPS, ComParE, log-mel), their frontend, and window pooling."""
from __future__ import annotations

import math
import os
import signal

import numpy as np
import opensmile
import pytest
import torch

from mer_lib import weights
from mer_lib.errors import MerError
from mer_lib.features import audio
from mer_lib.features.pooling import l2_normalise, pool_windows

RATE = 16000
TORCHVGGISH_TRUNK = {f"features.{i}.{p}" for i in (0, 3, 6, 8, 11, 13) for p in ("weight", "bias")}


def voice(seconds: float, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: a gliding harmonic tone with amplitude modulation and some noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * RATE))) / RATE
    phase = 2 * np.pi * np.cumsum(140 + 40 * np.sin(2 * np.pi * 1.5 * t)) / RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.2 * tone + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def reference_log_mel(x: np.ndarray) -> np.ndarray:
    """VGGish's log-mel written out from its definition, one frame at a time (independent of mer_lib)."""
    def mel(hz):
        return 1127.0 * math.log(1.0 + hz / 700.0)

    edges = [mel(125.0) + (mel(7500.0) - mel(125.0)) * i / 65 for i in range(66)]
    filters = np.zeros((64, 257))
    for band in range(64):
        low, centre, high = edges[band:band + 3]
        for k in range(1, 257):  # the DC bin carries no weight
            m = mel(k * 8000.0 / 256)
            if low < m <= centre:
                filters[band, k] = (m - low) / (centre - low)
            elif centre < m < high:
                filters[band, k] = (high - m) / (high - centre)
    hann = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / 400) for n in range(400)])
    rows = []
    for start in range(0, len(x) - 400 + 1, 160):
        spectrum = np.abs(np.fft.rfft(x[start:start + 400].astype(np.float64) * hann, 512))
        rows.append(np.log(filters @ spectrum + 0.01))
    return np.array(rows)


# ----------------------------------------------------------------------------- frontend
def test_log_mel_matches_an_independent_computation():
    x = voice(0.5)
    ours = audio.log_mel(x)
    assert ours.shape == (48, 64) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference_log_mel(x), atol=2e-4)


def test_log_mel_frame_counts_and_patch_padding():
    x = voice(0.25)
    assert audio.log_mel(x).shape == (23, 64)  # (4000 - 400) // 160 + 1
    assert audio.log_mel(x[:399]).shape == (0, 64)
    patch = audio.log_mel_patches(x[None], 24)
    assert patch.shape == (1, 24, 64)
    np.testing.assert_allclose(patch[0, :23], audio.log_mel(x), atol=1e-6)  # padding only adds frame 24
    assert audio.log_mel_patches(voice(0.6)[None], 48).shape == (1, 48, 64)  # longer input is cut


def test_log_mel_of_a_tone_peaks_in_its_band():
    t = np.arange(RATE // 2) / RATE
    spectrum = audio.log_mel(0.5 * np.sin(2 * np.pi * 1000 * t)).mean(axis=0)
    centres = np.linspace(audio.hertz_to_mel(125), audio.hertz_to_mel(7500), 66)[1:-1]
    assert spectrum.argmax() == np.abs(centres - audio.hertz_to_mel(1000)).argmin()


def test_frontend_refuses_rates_below_the_mel_range():
    with pytest.raises(MerError, match="sample rate above 15000 Hz"):
        audio.log_mel(np.zeros(4000), sample_rate=8000)


# ----------------------------------------------------------------------------- VGGish
@pytest.fixture
def vggish_weights(tmp_path, monkeypatch):
    """Random VGGish weights saved like a torchvggish checkpoint (with an unused head), via the env."""
    monkeypatch.setenv("MER_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    state = {**audio.VGGishNet().state_dict(), "embeddings.0.weight": torch.zeros(4, 4)}
    torch.save(state, tmp_path / "vggish.pth")
    monkeypatch.setenv("MER_WEIGHTS_VGGISH", str(tmp_path / "vggish.pth"))
    return tmp_path / "vggish.pth", state


def test_vggish_layer_names_match_torchvggish():
    net = audio.VGGishNet()
    assert set(net.state_dict()) == TORCHVGGISH_TRUNK
    assert net.features[13].weight.shape == (512, 512, 3, 3)
    for frames, height in [(48, 3), (24, 1)]:
        assert net.features(torch.zeros(1, 1, frames, 64)).shape == (1, 512, height, 4)


def test_vggish_loads_the_saved_weights_through_the_registry(vggish_weights):
    path, state = vggish_weights
    extractor = audio.make_audio_extractor("vggish")
    assert torch.equal(extractor.net.state_dict()["features.13.weight"], state["features.13.weight"])
    assert extractor.weights_sha256 == weights.sha256_file(path)
    assert (extractor.dim, extractor.sample_rate) == (512, 16000)


@pytest.mark.parametrize("window,count", [(0.5, 8), (0.25, 16)])
def test_vggish_embeddings_shape_mask_and_unit_norm(vggish_weights, window, count):
    embeddings, mask = audio.VGGish().embed(voice(window * count), window, count)
    assert embeddings.shape == (count, 512) and embeddings.dtype == np.float32
    assert mask.all()
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_vggish_masks_windows_a_short_clip_lacks(vggish_weights):
    embeddings, mask = audio.VGGish().embed(voice(1.2), 0.5, 8)  # window 3 holds 0.2 s < half a window
    assert mask.tolist() == [True, True, False, False, False, False, False, False]
    assert not embeddings[~mask].any() and np.isfinite(embeddings).all()


def test_vggish_batch_equals_windows_one_by_one(vggish_weights):
    extractor = audio.VGGish()
    clip = voice(1.5, seed=3)
    together, _ = extractor.embed(clip, 0.5, 3)
    for k in range(3):
        alone, _ = extractor.embed(clip[k * 8000:(k + 1) * 8000], 0.5, 1)
        np.testing.assert_allclose(together[k], alone[0], atol=1e-5)
    assert not np.allclose(together[0], together[1])


def test_vggish_without_weights_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MER_CACHE", str(tmp_path))
    monkeypatch.delenv("MER_WEIGHTS_VGGISH", raising=False)
    with pytest.raises(MerError, match="`mer weights fetch vggish`.*MER_WEIGHTS_VGGISH="):
        audio.VGGish()


def test_vggish_rejects_unfit_weights_and_too_short_windows(vggish_weights, tmp_path, monkeypatch):
    extractor = audio.VGGish()
    with pytest.raises(MerError, match="at least 0.167 s"):
        extractor.embed(voice(1.0), 0.1, 4)
    torch.save({"features.0.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    monkeypatch.setenv("MER_WEIGHTS_VGGISH", str(tmp_path / "other.pth"))
    with pytest.raises(MerError, match="do not fit the VGGish network"):
        audio.VGGish()


# ----------------------------------------------------------------------------- log-mel statistics
def test_logmel_is_mean_and_std_of_the_frontend():
    clip = voice(1.0, seed=1)
    embeddings, mask = audio.make_audio_extractor("logmel").embed(clip, 0.5, 3)
    assert embeddings.shape == (3, 128) and mask.tolist() == [True, True, False]
    for k in range(2):
        frames = reference_log_mel(clip[k * 8000:(k + 1) * 8000])
        expected = np.concatenate([frames.mean(axis=0), frames.std(axis=0)])
        np.testing.assert_allclose(embeddings[k], expected / np.linalg.norm(expected), atol=1e-5)
    assert not embeddings[2].any()


# ----------------------------------------------------------------------------- openSMILE
def test_egemaps_88d_finite_unit_norm_and_masked_tail():
    extractor = audio.make_audio_extractor("egemaps")
    embeddings, mask = extractor.embed(voice(1.3), 0.5, 4)  # window 3 covers 0.3 s of 0.5: present
    assert embeddings.shape == (4, 88) and embeddings.dtype == np.float32
    assert mask.tolist() == [True, True, True, False]
    assert np.isfinite(embeddings).all() and not embeddings[3].any()
    np.testing.assert_allclose(np.linalg.norm(embeddings[:3], axis=1), 1.0, atol=1e-5)
    assert extractor.weights_sha256 is None


@pytest.mark.parametrize("name", ["egemaps", "compare"])
def test_window_functionals_are_those_of_a_fresh_opensmile_call_for_each_window(name):
    """One pipeline per process runs every window (reset in between): its functionals must be those of
    a new openSMILE extractor per window, in any order (no state left from the window before)."""
    extractor = audio.make_audio_extractor(name)
    segments = np.stack([voice(0.5, seed) for seed in range(3)] + [np.zeros(8000, np.float32)])
    segments[3, :800] = segments[0, :800]  # a window of a short burst, then silence
    order = [0, 1, 2, 3, 1, 0]
    described = extractor.describe(segments[order], 0.5)
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet[extractor.feature_set],
                            feature_level=opensmile.FeatureLevel.Functionals)
    reference = np.stack([smile.process_signal(s, RATE).to_numpy()[0] for s in segments[order]])
    assert described.shape == (6, extractor.dim) and not np.array_equal(described[0], described[1])
    np.testing.assert_array_equal(described, reference)


def test_ctrl_c_while_opensmile_calls_back_interrupts_after_the_window(monkeypatch):
    """A KeyboardInterrupt raised in openSMILE's sink callback (a ctypes callback) would be printed and
    dropped, the window left without features: the pipeline holds Ctrl-C back and raises it after the run."""
    pipeline = audio.SmilePipeline("eGeMAPSv02", RATE)
    register = pipeline.api.external_sink_set_callback_ex

    def interrupting(component, callback):
        def sink(data, meta):
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(1000))  # bytecode after the signal: where Python runs its handler
            callback(data, meta)
        register(component, sink)

    monkeypatch.setattr(pipeline.api, "external_sink_set_callback_ex", interrupting)
    with pytest.raises(KeyboardInterrupt):
        pipeline(voice(0.5))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.undo()
    assert not np.isnan(pipeline(voice(0.5))).any()  # the pipeline still works


def test_egemaps_masks_a_clip_shorter_than_one_window():
    embeddings, mask = audio.EGeMAPS().embed(voice(0.2), 0.5, 4)
    assert not mask.any() and not embeddings.any()


def test_egemaps_masks_windows_opensmile_fills_with_nan():
    embeddings, mask = audio.EGeMAPS().embed(voice(0.09), 0.03, 3)  # too short for openSMILE's frames
    assert mask.tolist() == [False, False, False] and np.isfinite(embeddings).all()


def test_compare_functionals_are_6373d():
    embeddings, mask = audio.make_audio_extractor("compare").embed(voice(1.0), 0.5, 2)
    assert embeddings.shape == (2, 6373) and mask.all() and np.isfinite(embeddings).all()


def test_bad_signals_and_names_are_clear_errors():
    extractor = audio.LogMel()
    with pytest.raises(MerError, match="mono 1-D signal, got shape \\(2, 8000\\)"):
        extractor.embed(np.zeros((2, 8000), np.float32), 0.5, 1)
    with pytest.raises(MerError, match="NaN"):
        extractor.embed(np.full(8000, np.nan, np.float32), 0.5, 1)
    with pytest.raises(MerError, match="unknown audio extractor 'mfcc'; known: vggish, egemaps"):
        audio.make_audio_extractor("mfcc")


# ----------------------------------------------------------------------------- pooling
def test_pool_windows_means_then_l2_normalises():
    features = np.array([[1.0, 0.0], [3.0, 0.0], [3.0, 4.0], [9.0, 9.0], [0.0, 2.0]])
    embeddings, mask = pool_windows(features, np.arange(4) == np.array([0, 0, 1, -1, 2])[:, None])
    expected = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.0, 0.0]]
    np.testing.assert_allclose(embeddings, expected, atol=1e-7)
    assert embeddings.dtype == np.float32 and mask.tolist() == [True, True, True, False]
    mixed, _ = pool_windows(np.array([[1.0, 1.0], [1.0, 3.0]]), np.ones((2, 1), bool))
    np.testing.assert_allclose(mixed[0], np.array([1.0, 2.0]) / math.sqrt(5), atol=1e-7)


def test_pool_windows_rejects_bad_input():
    with pytest.raises(MerError, match="\\(N, T\\) bool frame-window membership"):
        pool_windows(np.ones((2, 3)), np.ones((3, 2), bool))
    with pytest.raises(MerError, match="NaN"):
        pool_windows(np.array([[np.nan, 1.0]]), np.ones((1, 1), bool))
    with pytest.raises(MerError, match="\\(N, d\\) features"):
        pool_windows(np.ones(3), np.ones((3, 1), bool))


def test_l2_normalise_keeps_zero_vectors_zero():
    out = l2_normalise(np.array([[0.0, 0.0], [0.0, -5.0]], dtype=np.float32))
    assert out.dtype == np.float32 and out.tolist() == [[0.0, 0.0], [0.0, -1.0]]
