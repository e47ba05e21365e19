"""Faces in video frames: dlib detection, 68-point landmark tracking and aligned face chips.

MATER (Ghaleb et al. 2023, section 3.1.1) detects and tracks faces with an Ensemble of Regression
Trees (ERT, Kazemi and Sullivan 2014) and crops them to 96 x 96 before the CNN. Here: dlib's HOG
frontal face detector finds the face, dlib's 68-point ERT shape predictor fits the landmarks, and
``dlib.get_face_chip`` cuts a chip aligned on them (eyes level, fixed scale).

Running the HOG detector on every full frame is the slow part (about 80 ms for a 1280 x 720 frame),
so `FaceTracker` detects rarely and cheaply and tracks in between:

1. *start*: detect on a copy of the frame downscaled to `detect_max_side`, then refine that coarse
   box by detecting again at full resolution inside a crop around it (precise and still cheap);
2. *calibrate*: fit the landmarks inside the detected box and remember where the box lies relative
   to them (centre offset and size in units of the landmarks' spread): the shape predictor was
   trained on boxes of this detector, so later boxes must follow the same convention;
3. *track*: on the next frame fit the landmarks inside the previous box, and place the new box
   from the new landmarks with the calibration; a box that jumps or changes size implausibly from
   one frame to the next means the fit is lost: the face is detected afresh;
4. *confirm*: every `detect_every` frames a coarse detection must still see a face under the
   tracked box, or the track is dropped: a face that left the picture is noticed at the latest
   `detect_every` frames later (the shape predictor itself always returns some shape). It searches
   only the tracked box grown by `CONFIRM_MARGIN` per side (any face centred in the box and no
   larger than it lies inside), shrunk as for the coarse detections or further, until the face is
   `CONFIRM_FACE_SIDE` pixels wide: on a 720p frame with a 370 px face, 5 ms instead of 18.

Frames are RGB (H, W, 3) or video-range luma (H, W) (mer_lib.media's `colour="luma"`): the detector and
the shape predictor work on grey as well (faster: no channels to combine), and the chips of luma frames
are stretched to full-range grey (`media.full_range`), what grey extractors (FER2013 networks) expect.

Frames without a face are reported in ``found`` (False) and hold a copy of the last track (zeros
before the first face): callers keep only ``found`` frames and record clips with none at all.

Several faces in the picture: the tracker follows one. At the first detection it takes the largest
(or the leftmost or rightmost, `face`); once the track is lost it takes up only a face near where the
followed one was last seen (its centre within `REACQUIRE_WIDTHS` face widths), so it never jumps to
another person: while the followed face is away, frames have no face.
`update` takes one frame at a time and keeps the state between calls, so a long recording or a live
stream is tracked without holding its frames (`track` is `reset` and `update` over an array).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import dlib
import numpy as np

from mer_lib import media, weights
from mer_lib.errors import MerError

N_LANDMARKS = 68
MAX_CENTRE_SHIFT = 0.3  # a tracked box whose centre moves more than this fraction of its width is lost
MAX_SCALE_CHANGE = 1.25  # ... or whose size changes by more than this factor between two frames
REFINE_MARGIN = 0.5  # the full-resolution refinement searches the coarse box grown by this much per side
CONFIRM_MARGIN = 0.5  # the confirming detection searches the tracked box grown by this much per side
CONFIRM_FACE_SIDE = 120  # ... shrunk until the face is at most this wide (dlib's detector finds faces from 80 px)
HOG_CELL = 8  # dlib's HOG cell size: refinement crops start on this grid, so boxes match full-frame ones
FACE_CHOICES = ("largest", "left", "right")  # which face to follow when several are in the first detection
REACQUIRE_WIDTHS = 1.5  # a lost face is taken up again only this many of its widths from where it was last seen


@dataclass
class FaceTrack:
    """Per-frame faces of one clip.

    boxes: (N, 4) float32 (left, top, right, bottom) in full-frame pixels, in the convention of
    dlib's detector; landmarks: (N, 68, 2) float32 (x, y) in full-frame pixels (iBUG 300-W order);
    found: (N,) bool, True where a face was detected or tracked; chips: (N, S, S, 3) uint8 RGB face
    crops aligned on the landmarks, (N, S, S) full-range grey ones when tracked in luma frames.
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    found: np.ndarray
    chips: np.ndarray

    @staticmethod
    def empty(count: int, chip_size: int, grey: bool = False) -> FaceTrack:
        """A track of `count` frames with no face found yet (all zeros); `grey`: chips without channels."""
        chips = (count, chip_size, chip_size) + (() if grey else (3,))
        return FaceTrack(np.zeros((count, 4), np.float32), np.zeros((count, N_LANDMARKS, 2), np.float32),
                         np.zeros(count, bool), np.zeros(chips, np.uint8))

    def record(self, i: int, box: np.ndarray, landmarks: np.ndarray, chip: np.ndarray) -> None:
        """Frame `i` has a face."""
        self.found[i] = True
        self.boxes[i], self.landmarks[i], self.chips[i] = box, landmarks, chip

    def keep_previous(self, i: int) -> None:
        """Frame `i` has no face: it keeps the previous frame's values (zeros at the start), not found."""
        if i:
            for array in (self.boxes, self.landmarks, self.chips):
                array[i] = array[i - 1]


@dataclass(frozen=True)
class BoxModel:
    """Where the detector's box lies relative to the landmarks of one face, in units of their spread.

    The spread is the RMS distance of the 68 points to their centroid: it does not change when the
    head rolls, so the box keeps its size when the landmark bounding box would not.
    """

    offset: tuple[float, float]  # (box centre - landmark centroid) / spread
    size: tuple[float, float]  # (box width, box height) / spread

    @staticmethod
    def fit(box: np.ndarray, landmarks: np.ndarray) -> BoxModel:
        centroid, spread = _centroid_spread(landmarks)
        centre = (box[:2] + box[2:]) / 2
        return BoxModel(tuple((centre - centroid) / spread), tuple((box[2:] - box[:2]) / spread))

    def box(self, landmarks: np.ndarray) -> np.ndarray:
        """The (left, top, right, bottom) box these landmarks imply."""
        centroid, spread = _centroid_spread(landmarks)
        centre = centroid + np.asarray(self.offset) * spread
        half = np.asarray(self.size) * spread / 2
        return np.concatenate([centre - half, centre + half])


# One tracked frame: the face box, its calibration, and the fitted landmarks (dlib's shape and its (68, 2) points).
Step = tuple[np.ndarray, "BoxModel", dlib.full_object_detection, np.ndarray]


def _centroid_spread(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    centroid = landmarks.mean(axis=0)
    return centroid, float(np.sqrt(((landmarks - centroid) ** 2).sum(axis=1).mean()))


def _points(shape: dlib.full_object_detection) -> np.ndarray:
    """The (68, 2) landmark coordinates of a dlib shape."""
    return np.array([(point.x, point.y) for point in shape.parts()], dtype=np.float64)


def _rectangle(box: np.ndarray) -> dlib.rectangle:
    left, top, right, bottom = (int(round(v)) for v in box)
    return dlib.rectangle(left, top, right, bottom)


def _box(rect: dlib.rectangle, scale: float = 1.0, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A dlib rectangle found on a frame scaled by `scale` (or in a crop at `origin`) in frame pixels."""
    x, y = origin
    return np.array([rect.left() / scale + x, rect.top() / scale + y,
                     rect.right() / scale + x, rect.bottom() / scale + y])


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2


def _width(box: np.ndarray) -> float:
    return float(box[2] - box[0])


def _contains(box: np.ndarray, point: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


def _crop_around(frame: np.ndarray, box: np.ndarray, margin: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The crop of `frame` around `box` grown by `margin` of its size per side (its left and top on
    dlib's HOG cell grid, so boxes found in it match full-frame ones) and the crop's origin (x, y)."""
    grow = margin * (box[2:] - box[:2])
    x0, y0 = np.maximum(box[:2] - grow, 0).astype(int) // HOG_CELL * HOG_CELL
    x1, y1 = np.clip(box[2:] + grow, 0, frame.shape[1::-1]).astype(int)  # a box off the frame: an empty crop
    return frame[y0:y1, x0:x1], (int(x0), int(y0))


def _plausible(previous: np.ndarray, current: np.ndarray) -> bool:
    """Whether a face can move from box `previous` to box `current` between consecutive frames."""
    shift = np.linalg.norm(_centre(current) - _centre(previous))
    ratio = _width(current) / max(_width(previous), 1e-6)
    return shift <= MAX_CENTRE_SHIFT * _width(previous) and 1 / MAX_SCALE_CHANGE <= ratio <= MAX_SCALE_CHANGE


@functools.lru_cache(maxsize=1)
def _face_detector() -> dlib.fhog_object_detector:
    """dlib's HOG frontal face detector, built once per process: building it took 0.25 s to 4 s here,
    with the load, which `mer extract` paid for every clip and the timeline for every recording."""
    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=2)
def _shape_predictor(path: str) -> dlib.shape_predictor:
    """dlib's 68-point ERT model (about 100 MB), loaded once per process."""
    try:
        return dlib.shape_predictor(path)
    except RuntimeError as error:
        raise MerError(f"cannot read the dlib landmark model {path}: {error}") from error


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if not (frames.ndim == 3 or (frames.ndim == 4 and frames.shape[-1] == 3)) or frames.dtype != np.uint8:
        raise MerError(f"face tracking needs uint8 RGB frames (N, H, W, 3) or luma frames (N, H, W), got "
                       f"{frames.dtype} {frames.shape}")
    return frames


class FaceTracker:
    """Detect, track and align one face per frame (see the module docstring for which, among several).

    chip_size: side of the aligned chips (96 in MATER); padding: dlib's chip padding around the
    landmarks (its default 0.25); detect_every: frames between two confirmations of a tracked face;
    detect_max_side: frames are downscaled to this longest side for the coarse detections; face:
    the face to follow first among several (FACE_CHOICES). Since the last `reset`, `most_faces` is
    the most faces one detection saw and `first_box` the box of the face followed first (None: none).
    """

    def __init__(self, chip_size: int = 96, padding: float = 0.25, detect_every: int = 10,
                 detect_max_side: int = 320, face: str = "largest"):
        if chip_size < 1 or detect_every < 1 or detect_max_side < 1 or padding < 0:
            raise MerError(f"bad face tracker settings: chip_size={chip_size}, padding={padding}, "
                           f"detect_every={detect_every}, detect_max_side={detect_max_side}")
        if face not in FACE_CHOICES:
            raise MerError(f"unknown face choice {face!r} (choose from {', '.join(FACE_CHOICES)})")
        self.chip_size, self.padding, self.face = chip_size, padding, face
        self.detect_every, self.detect_max_side = detect_every, detect_max_side
        self.detector = _face_detector()
        self.predictor = _shape_predictor(str(weights.resolve("dlib_landmarks68")))
        self.reset()

    # ------------------------------------------------------------------ detection
    def detect(self, frame: np.ndarray, max_side: int | None = None) -> list[np.ndarray]:
        """Face boxes in `frame` (full-frame pixels), detected on a copy downscaled to `max_side`."""
        return self._detect_in(frame, self._scale(frame, max_side))

    @staticmethod
    def _scale(frame: np.ndarray, max_side: int | None) -> float:
        """The factor that shrinks `frame` to `max_side` at most (1: no shrinking)."""
        return min(1.0, (max_side or max(frame.shape[:2])) / max(frame.shape[:2]))

    def _detect_in(self, image: np.ndarray, scale: float, origin: tuple[int, int] = (0, 0)) -> list[np.ndarray]:
        """Face boxes in `image` (a frame, or a crop of one at `origin`) detected on a copy scaled by
        `scale`, in frame pixels."""
        height, width = image.shape[:2]
        if min(round(height * scale), round(width * scale)) < 1:
            return []
        if scale < 1.0:
            image = dlib.resize_image(np.ascontiguousarray(image), round(height * scale), round(width * scale))
        return [_box(rect, scale, origin) for rect in self.detector(np.ascontiguousarray(image), 0)]

    def _refine(self, frame: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        """The full-resolution detection inside a crop around a coarse box (the coarse box if none)."""
        crop, origin = _crop_around(frame, coarse, REFINE_MARGIN)
        found = self._detect_in(crop, 1.0, origin)
        if not found:
            return coarse
        return min(found, key=lambda box: np.linalg.norm(_centre(box) - _centre(coarse)))

    def _pick(self, boxes: list[np.ndarray], near: np.ndarray | None) -> np.ndarray | None:
        """The face to follow: by `face` at first; once one was followed, the detection nearest where it was
        last seen (`near`) if close enough, else None (that face is away; others are not followed)."""
        if near is not None:
            distance = lambda box: np.linalg.norm(_centre(box) - _centre(near))  # noqa: E731
            nearest = min(boxes, key=distance)
            return nearest if distance(nearest) <= REACQUIRE_WIDTHS * _width(near) else None
        if self.face == "largest":
            return max(boxes, key=_width)
        return (min if self.face == "left" else max)(boxes, key=lambda box: _centre(box)[0])

    def _start(self, frame: np.ndarray, near: np.ndarray | None = None) -> Step | None:
        """Detect the face to follow afresh (`_pick`): its box, box calibration and landmarks; None without it."""
        boxes = self.detect(frame, self.detect_max_side)
        self.most_faces = max(self.most_faces, len(boxes))
        chosen = self._pick(boxes, near) if boxes else None
        if chosen is None:
            return None
        box = self._refine(frame, chosen)
        self.first_box = box if self.first_box is None else self.first_box
        shape = self.predictor(frame, _rectangle(box))
        points = _points(shape)
        return box, BoxModel.fit(box, points), shape, points

    def _confirmed(self, frame: np.ndarray, box: np.ndarray) -> bool:
        """Whether a coarse detection around the tracked box still sees a face centred inside it."""
        crop, origin = _crop_around(frame, box, CONFIRM_MARGIN)
        scale = min(self._scale(frame, self.detect_max_side), CONFIRM_FACE_SIDE / max(_width(box), 1.0))
        found = self._detect_in(crop, scale, origin)
        return any(_contains(box, _centre(face)) for face in found)

    # ------------------------------------------------------------------ tracking
    def _follow(self, frame: np.ndarray, box: np.ndarray, model: BoxModel) -> Step | None:
        """Fit the landmarks inside the previous frame's box; None when the new box jumped (fit lost)."""
        shape = self.predictor(frame, _rectangle(box))
        points = _points(shape)
        moved = model.box(points)
        return (moved, model, shape, points) if _plausible(box, moved) else None

    def reset(self) -> None:
        """Forget the face being followed: the next frame starts a new clip."""
        self._step: Step | None = None
        self._since_check, self._last_box = 0, None
        self.most_faces, self.first_box = 0, None

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The next frame of the clip (RGB or luma): (box, landmarks, aligned chip) of the followed face, or None."""
        frame = np.ascontiguousarray(frame)
        step = self._step
        if step and self._since_check >= self.detect_every:
            self._since_check = 0
            step = step if self._confirmed(frame, step[0]) else None
        step = self._follow(frame, *step[:2]) if step else None
        if step is None:
            step, self._since_check = self._start(frame, self._last_box), 0
        self._step = step
        if step is None:
            return None
        self._since_check += 1
        self._last_box, _, shape, points = step
        chip = dlib.get_face_chip(frame, shape, size=self.chip_size, padding=self.padding)
        return self._last_box, points, media.full_range(chip) if frame.ndim == 2 else chip

    def track(self, frames: np.ndarray) -> FaceTrack:
        """Boxes, landmarks, found flags and aligned chips of the face in each frame of one clip."""
        frames = _check_frames(frames)
        out = FaceTrack.empty(len(frames), self.chip_size, grey=frames.ndim == 3)
        self.reset()
        for i, frame in enumerate(frames):
            face = self.update(frame)
            if face is None:
                out.keep_previous(i)
            else:
                out.record(i, *face)
        return out
