"""The embedded default corpus: synthetic audio-visual emotion clips in RAVDESS naming and layout.

So that every notebook and test runs without a download, this module writes a small corpus
(`actors` x 8 emotions x 2 statements x 2 repetitions, 192 clips by default) of short mp4 clips
named like RAVDESS: ``OUT_DIR/Actor_XX/01-01-EE-II-SS-RR-XX.mp4``.

* **Video**: a real face, scikit-image's astronaut photo, warped over time into each expression.
  Each emotion is a prototype combination of FACS action units (Ekman & Friesen; EMFACS), e.g.
  happy = AU6 + AU12, surprise = AU1 + AU2 + AU5 + AU26. An action unit is a smooth displacement
  field, a sum of Gaussian bumps anchored on dlib's 68 landmarks of the photo's face. The
  expression follows an onset-apex-offset profile that peaks mid-clip, and the jaw moves with
  the spoken syllables. Actors differ in face size, position, aspect, head tilt, skin tint,
  lighting, background and in how strongly they use each action unit; every frame adds small
  head motion (translation and roll) and sensor noise.
* **Audio**: speech-like sound at 48 kHz: a harmonic glottal source whose F0 contour (level,
  range, accents, declination), speech rate, energy and voice quality (jitter, shimmer,
  breathiness, tense or lax spectral tilt) move from neutral towards the emotion's values with
  the same temporal profile as the face, in the directions reported in the literature (Banse &
  Scherer 1996; Juslin & Laukka 2003). Seven syllables with the vowels and consonant bursts of
  the RAVDESS statement, and a short silence at both ends.

Every clip is a pure function of (seed, clip name): corpora are reproducible whatever the worker
scheduling, and generation resumes where it stopped. Labels are learnable but not trivially so
(per-clip strength and timing jitter, actor idiosyncrasies, shared action units between
neutral/calm and fearful/surprised). The corpus exists to teach and to test the pipeline; it says
nothing about how people really express emotion.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.signal import lfilter
from tqdm.auto import tqdm

from mer_lib import parallel
from mer_lib.artifacts import write_json
from mer_lib.data.ravdess import CLASSES
from mer_lib.errors import MerError

GENERATOR_VERSION = 2
DEFAULT_SIZE = (320, 240)    # (width, height): the face is about 110 px tall, above dlib HOG's ~80 px
MIN_HEIGHT = 200             # smaller frames would make the face too small for dlib's HOG detector
FPS = 25
SAMPLE_RATE = 48000
MAX_ACTORS = 24
STATEMENTS = (1, 2)
REPETITIONS = (1, 2)
MIN_DURATION, MAX_DURATION = 1.0, 30.0
SILENCE_S = 0.3              # near-silence at the start and the end of every clip, as in real recordings
INTENSITY_GAIN = {1: 0.7, 2: 1.0}   # expression strength of RAVDESS intensity 01 (normal) and 02 (strong)

# --------------------------------------------------------------------------------------------
# Facial action units as displacement bumps (landmark, dx, dy, sigma), lengths in face heights
# (brows to chin). Image axes: x to the right, y down. Bumps are given for the image-left half
# of the face (landmarks 0-7, 17-21, 31-32, 36-41, 48-50, 58-61, 67) and on the midline; the other
# half is mirrored. Positive dx on the left half therefore points towards the face's midline.
# --------------------------------------------------------------------------------------------
ACTION_UNITS: dict[int, list[tuple[int, float, float, float]]] = {
    1: [(21, 0.0, -0.06, 0.05), (20, 0.0, -0.035, 0.05)],                     # inner brow raiser
    2: [(18, 0.0, -0.055, 0.06), (17, 0.0, -0.04, 0.05)],                     # outer brow raiser
    4: [(21, 0.03, 0.045, 0.05), (20, 0.015, 0.035, 0.05), (19, 0.0, 0.02, 0.06)],   # brow lowerer
    5: [(37, 0.0, -0.025, 0.025), (38, 0.0, -0.025, 0.025)],                  # upper lid raiser
    6: [(41, 0.0, -0.015, 0.035), (40, 0.0, -0.012, 0.035), (2, 0.01, -0.03, 0.08)],  # cheek raiser
    7: [(41, 0.0, -0.02, 0.025), (40, 0.0, -0.02, 0.025)],                    # lid tightener
    9: [(31, 0.0, -0.035, 0.035), (39, 0.01, 0.012, 0.04)],                   # nose wrinkler
    10: [(50, 0.0, -0.04, 0.04), (49, 0.0, -0.03, 0.04)],                     # upper lip raiser
    12: [(48, -0.035, -0.05, 0.06)],                                          # lip corner puller
    15: [(48, 0.01, 0.1, 0.06), (59, 0.0, 0.04, 0.05)],                       # lip corner depressor
    17: [(57, 0.0, -0.035, 0.05), (8, 0.0, -0.02, 0.07)],                     # chin raiser
    20: [(48, -0.05, 0.015, 0.05)],                                           # lip stretcher
    23: [(62, 0.0, 0.035, 0.035), (66, 0.0, -0.04, 0.035), (48, 0.015, 0.0, 0.04)],   # lip tightener
    26: [(66, 0.0, 0.06, 0.045), (67, 0.0, 0.05, 0.045), (57, 0.0, 0.065, 0.06), (58, 0.0, 0.055, 0.06),
         (8, 0.0, 0.06, 0.12)],                                                # jaw drop
    43: [(37, 0.0, 0.015, 0.025), (38, 0.0, 0.015, 0.025)],                   # eyelids lowered
}
# Prototype action-unit weights per emotion (after EMFACS). Calm is a faint, relaxed neutral, and
# fear shares surprise's raised brows, widened eyes and dropped jaw: the classes overlap on purpose.
EXPRESSIONS: dict[str, dict[int, float]] = {
    "neutral": {},
    "calm": {12: 0.3, 43: 0.8},
    "happy": {6: 1.0, 12: 1.0, 26: 0.2},
    "sad": {1: 1.0, 4: 0.6, 15: 1.0, 17: 0.6, 43: 0.5},
    "angry": {4: 1.2, 5: 0.6, 7: 1.0, 23: 1.0},
    "fearful": {1: 1.0, 2: 0.6, 4: 0.6, 5: 1.0, 20: 1.0, 26: 0.6},
    "disgust": {4: 0.4, 9: 1.0, 10: 1.0, 15: 0.6},
    "surprised": {1: 1.0, 2: 1.0, 5: 1.0, 26: 1.2},
}
SPEECH_JAW = 0.3             # AU26 weight at the peak of each spoken syllable
MOUTH_DARKNESS = 2.0         # mouth-interior opacity per unit of vertical stretch (lips parting), at most 0.85
MOUTH_INTERIOR = (70.0, 30.0, 30.0)   # RGB of the dark inside of an open mouth


# --------------------------------------------------------------------------------------------
# Prosody per emotion (literature directions: high arousal = higher, wider F0, faster, louder).
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prosody:
    """Voice settings of one emotion at full strength; neutral is where every clip starts and ends."""
    f0_factor: float     # F0 level relative to the speaker's base
    f0_range: float      # accent excursion, semitones
    rate: float          # syllables per second
    energy: float        # peak gain (<= 1 before the speaker's microphone gain)
    breath: float        # aspiration noise relative to the voice
    jitter: float        # relative F0 perturbation
    shimmer: float       # relative amplitude perturbation
    tension: float       # 0 lax (steep spectral tilt, 1/k^2) .. 1 tense/pressed (flat, 1/k)


PROSODY = {
    "neutral": Prosody(1.00, 2.0, 4.0, 0.45, 0.03, 0.005, 0.03, 0.40),
    "calm": Prosody(0.95, 1.5, 3.6, 0.38, 0.05, 0.005, 0.03, 0.30),
    "happy": Prosody(1.25, 5.0, 4.8, 0.70, 0.03, 0.008, 0.05, 0.55),
    "sad": Prosody(0.88, 1.0, 3.0, 0.30, 0.12, 0.015, 0.08, 0.15),
    "angry": Prosody(1.25, 5.0, 5.2, 0.95, 0.03, 0.010, 0.06, 0.90),
    "fearful": Prosody(1.35, 4.0, 5.5, 0.65, 0.12, 0.020, 0.08, 0.40),
    "disgust": Prosody(0.92, 2.5, 3.4, 0.50, 0.06, 0.010, 0.06, 0.45),
    "surprised": Prosody(1.30, 7.0, 4.4, 0.75, 0.05, 0.008, 0.04, 0.50),
}
BASE_F0 = {"male": 120.0, "female": 210.0}
# Adult male (F1, F2, F3) in Hz; each statement's syllables set the vowel sequence.
VOWELS = {"i": (270, 2290, 3010), "a": (730, 1090, 2440), "o": (570, 840, 2410), "e": (500, 1500, 2500)}
# "Kids are talking by the door" / "Dogs are sitting by the door": vowel and initial-consonant burst
# strength of each of the seven syllables; both share one stress pattern (KIDS/DOGS, TALK/SIT, DOOR).
SYLLABLE_VOWELS = {1: "iaoiaeo", 2: "oaiiaeo"}
SYLLABLE_BURSTS = {1: (1.0, 0.0, 0.9, 0.8, 0.3, 0.2, 0.5), 2: (0.5, 0.0, 1.5, 0.9, 0.3, 0.2, 0.5)}
STRESS = (1.0, 0.2, 0.9, 0.3, 0.5, 0.2, 0.8)
MAX_HARMONIC_HZ = 7000.0
SPEECH_LEVEL = 0.3          # voice RMS at full energy: peaks stay below 1 (clipped if not)
NOISE_FLOOR = 1e-4


# --------------------------------------------------------------------------------------------
# The plan: which clips a corpus holds
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clip:
    """One clip of the corpus: an actor performing an emotion, statement and repetition."""
    actor: int
    emotion: str
    statement: int
    repetition: int

    @property
    def intensity(self) -> int:
        """RAVDESS intensity: 1 normal, 2 strong; neutral is always normal, as in RAVDESS.

        Each actor performs one statement normal and the other strong, alternating between actors,
        so both intensities occur with both statements and both repetitions across the corpus.
        """
        return 1 if self.emotion == "neutral" else 1 + (self.actor + self.statement) % 2

    @property
    def fields(self) -> tuple[int, ...]:
        """The seven RAVDESS name fields: audio-video, speech, emotion, intensity, statement, repetition, actor."""
        return 1, 1, CLASSES.index(self.emotion) + 1, self.intensity, self.statement, self.repetition, self.actor

    @property
    def name(self) -> str:
        return "-".join(f"{v:02d}" for v in self.fields) + ".mp4"

    @property
    def relpath(self) -> str:
        return f"Actor_{self.actor:02d}/{self.name}"


def plan(actors: int = 6) -> list[Clip]:
    """Every clip of a corpus of `actors` actors, in generation order (actor, emotion, statement, repetition)."""
    _check_actor(actors, "actors")
    return [Clip(a, e, s, r) for a in range(1, actors + 1) for e in CLASSES for s in STATEMENTS for r in REPETITIONS]


def _check_actor(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_ACTORS:
        raise MerError(f"{what} must be an integer from 1 to {MAX_ACTORS}, got {value!r}")


def _check_clip(clip: Clip, seed: int, duration: float) -> None:
    """MerError for anything a clip cannot be rendered from."""
    if clip.emotion not in CLASSES:
        raise MerError(f"unknown emotion {clip.emotion!r}; expected one of {', '.join(CLASSES)}")
    _check_actor(clip.actor, "actor")
    if clip.statement not in STATEMENTS or clip.repetition not in REPETITIONS:
        raise MerError(f"statement and repetition must be 1 or 2, got {clip.statement!r} and {clip.repetition!r}")
    _check_seed_and_duration(seed, duration)


def _check_seed_and_duration(seed: int, duration: float) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MerError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(duration, (int, float)) or not MIN_DURATION <= duration <= MAX_DURATION:
        raise MerError(f"duration must be from {MIN_DURATION} to {MAX_DURATION} seconds, got {duration!r}")


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) as ints: even (H.264 yuv420p), tall enough for dlib to find the face, not portrait-thin."""
    try:
        width, height = (int(v) for v in size)
        valid = (width, height) == tuple(size)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise MerError(f"frame size must be a pair of integers (width, height), got {size!r}")
    if width % 2 or height % 2:
        raise MerError(f"frame width and height must be even (H.264 needs it), got {width}x{height}")
    if height < MIN_HEIGHT or width < 3 * height // 4:
        raise MerError(f"frame size must be at least {MIN_HEIGHT} px tall (dlib needs faces of about 80 px) "
                       f"and at least 3/4 as wide as tall, got {width}x{height}")
    return width, height


# --------------------------------------------------------------------------------------------
# Actors and performances: everything random comes from (seed, actor) or (seed, clip name)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Actor:
    """What stays fixed across one actor's clips: looks, voice and expressive style."""
    number: int
    face_height: float                  # brows-to-chin height, fraction of the frame height
    centre: tuple[float, float]         # face centre, fractions of frame width and height
    aspect: float                       # horizontal over vertical face scale
    tilt: float                         # resting head roll, degrees
    tint: tuple[float, float, float]    # skin tone and camera white balance, RGB gains
    brightness: float
    side_light: float                   # brightness change from the left to the right edge of the face
    background: tuple[tuple[float, float, float], tuple[float, float, float], float]  # colours, direction
    base_f0: float                      # Hz
    formant_scale: float                # vocal tract length (female voices higher)
    rate_factor: float
    mic_gain: float
    expressiveness: tuple[float, ...]   # strength of each emotion (CLASSES order)
    unit_gain: tuple[tuple[int, float], ...]   # how strongly this actor uses each action unit

    @property
    def sex(self) -> str:
        """As in RAVDESS: odd actors are male, even actors female."""
        return "male" if self.number % 2 else "female"


@lru_cache(maxsize=MAX_ACTORS)
def actor(number: int, seed: int = 0) -> Actor:
    """The actor `number` of the corpus made with `seed`."""
    _check_actor(number, "actor")
    _check_seed_and_duration(seed, MIN_DURATION)
    rng = np.random.default_rng([seed, number])
    female = number % 2 == 0
    return Actor(
        number=number,
        face_height=rng.uniform(0.42, 0.52),
        centre=(0.5 + rng.uniform(-0.08, 0.08), 0.5 + rng.uniform(-0.04, 0.04)),
        aspect=rng.uniform(0.9, 1.1),
        tilt=rng.uniform(-4.0, 4.0),
        tint=tuple(rng.uniform(0.88, 1.12, 3)),
        brightness=rng.uniform(0.85, 1.1),
        side_light=rng.uniform(-0.3, 0.3),
        background=(tuple(rng.uniform(0.1, 0.9, 3)), tuple(rng.uniform(0.1, 0.9, 3)), rng.uniform(0, 2 * np.pi)),
        base_f0=BASE_F0["female" if female else "male"] * rng.uniform(0.88, 1.12),
        formant_scale=(1.15 if female else 1.0) * rng.uniform(0.95, 1.05),
        rate_factor=rng.uniform(0.9, 1.1),
        mic_gain=rng.uniform(0.75, 1.0),
        expressiveness=tuple(rng.uniform(0.75, 1.25, len(CLASSES))),
        unit_gain=tuple((unit, rng.uniform(0.7, 1.3)) for unit in ACTION_UNITS),
    )


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclass(frozen=True)
class Performance:
    """What the face and the voice of one clip share: how strong and when the emotion is, when the words are."""
    amplitude: float        # expression strength at the apex (intensity x actor x clip jitter)
    onset: float            # seconds
    apex: float
    offset: float
    speech_start: float
    speech_rate: float      # syllables per second

    def profile(self, t: np.ndarray) -> np.ndarray:
        """Onset-apex-offset: 0 before onset, rising smoothly to `amplitude` at the apex, back to 0 at offset."""
        rise = _smoothstep((t - self.onset) / (self.apex - self.onset))
        fall = _smoothstep((self.offset - t) / (self.offset - self.apex))
        return self.amplitude * np.where(t < self.apex, rise, fall)

    def syllable_phase(self, t: np.ndarray) -> np.ndarray:
        """Syllables spoken by time t: k..k+1 during syllable k, outside 0..len(STRESS) when silent."""
        return (t - self.speech_start) * self.speech_rate

    def articulation(self, t: np.ndarray) -> np.ndarray:
        """Mouth opening of speech, 0..1: one sin^2 arch per syllable, 0 before and after the statement."""
        phase = self.syllable_phase(t)
        speaking = (phase >= 0) & (phase < len(STRESS))
        return np.where(speaking, np.sin(np.pi * phase) ** 2, 0.0)


def performance(clip: Clip, seed: int = 0,
                duration: float = 3.0) -> tuple[Performance, np.random.Generator, np.random.Generator]:
    """The clip's performance, then independent generators for its video and its audio details.

    All are drawn from np.random.default_rng([seed, *name fields]), so a clip's content depends on
    its name and the seed only. The statement is spoken at the emotion's rate, centred mid-clip,
    and sped up where needed to leave SILENCE_S of silence at both ends.
    """
    _check_clip(clip, seed, duration)
    rng = np.random.default_rng([seed, *clip.fields])
    who = actor(clip.actor, seed)
    amplitude = (INTENSITY_GAIN[clip.intensity] * who.expressiveness[CLASSES.index(clip.emotion)]
                 * rng.uniform(0.85, 1.15))
    apex = duration * (0.5 + rng.uniform(-0.08, 0.08))
    onset, offset = apex - duration * rng.uniform(0.22, 0.38), apex + duration * rng.uniform(0.22, 0.38)
    neutral_rate, rate = PROSODY["neutral"].rate, PROSODY[clip.emotion].rate
    rate = (neutral_rate + min(amplitude, 1.0) * (rate - neutral_rate)) * who.rate_factor * rng.uniform(0.93, 1.07)
    rate = max(rate, len(STRESS) / (duration - 2 * SILENCE_S))
    length = len(STRESS) / rate
    start = np.clip(duration / 2 - length / 2 + rng.uniform(-0.1, 0.1), SILENCE_S, duration - SILENCE_S - length)
    video_rng, audio_rng = rng.spawn(2)
    timing = (amplitude, onset, apex, offset, start, rate)
    return Performance(*(float(v) for v in timing)), video_rng, audio_rng


# --------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def astronaut_face() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's astronaut photo as float32 (H, W, 3) in [0, 1] and dlib's 68 landmarks (x, y) of its face.

    Computed once per process (worker processes forked by synthesize() inherit it): dlib's HOG
    detector on the photo, then the 68-point shape predictor from the weights registry.
    """
    import dlib
    from skimage.data import astronaut

    from mer_lib.weights import resolve

    image = astronaut()
    rects, scores, _ = dlib.get_frontal_face_detector().run(image, 0, 0)
    if not len(rects):
        raise MerError("dlib found no face in scikit-image's astronaut photo")
    shape = dlib.shape_predictor(str(resolve("dlib_landmarks68")))(image, rects[int(np.argmax(scores))])
    landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    return image.astype(np.float32) / 255.0, landmarks


def mirror_landmark(index: int) -> int:
    """The landmark on the other side of the face in dlib's 68-point (iBUG 300-W) scheme; midline ones stay."""
    spans = [(16, 16), (26, 43), (30, None), (35, 66), (39, 81), (41, 87), (45, 81), (47, 87), (54, 102),
             (59, 114), (64, 124), (67, 132)]   # (last index of a group, sum of mirrored pairs)
    for last, pair_sum in spans:
        if index <= last:
            return index if pair_sum is None else pair_sum - index
    raise MerError(f"landmark index must be 0..67, got {index}")


def _bumps(weights: dict[int, float], unit_gain: dict[int, float]) -> list[tuple[int, float, float, float]]:
    """The action units' bumps, both halves of the face, each scaled by its unit's weight and the actor's gain."""
    bumps = []
    for unit, weight in weights.items():
        gain = weight * unit_gain.get(unit, 1.0)
        for index, dx, dy, sigma in ACTION_UNITS[unit]:
            bumps.append((index, gain * dx, gain * dy, sigma))
            if mirror_landmark(index) != index:
                bumps.append((mirror_landmark(index), -gain * dx, gain * dy, sigma))
    return bumps


def displacement(bumps: list[tuple[int, float, float, float]], points: np.ndarray, face: float,
                 grid: np.ndarray) -> np.ndarray:
    """Displacement field (2, H, W) as (dy, dx) pixels on `grid` (2, H, W): a sum of Gaussian bumps.

    `points` are the landmarks (68, 2) in the same pixel coordinates and `face` the face height in
    pixels, the unit of the bumps' offsets and widths. Content near a landmark moves by its bump.
    """
    field = np.zeros_like(grid)
    for index, dx, dy, sigma in bumps:
        x, y = points[index]
        weight = np.exp(((grid[1] - x) ** 2 + (grid[0] - y) ** 2) / (-2 * (sigma * face) ** 2))
        field[0] += dy * face * weight
        field[1] += dx * face * weight
    return field


def _lips_parting(jaw: np.ndarray, points: np.ndarray, face: float, grid: np.ndarray) -> np.ndarray:
    """Darkness (H, W) of the mouth interior per unit of the jaw-drop field: its vertical stretch inside the mouth.

    Where the jaw pulls the lower lip away from the upper teeth, the warp magnifies the thin band
    between them; that band is drawn dark, as an open mouth is.
    """
    stretch = np.clip(np.gradient(jaw[0], axis=0), 0.0, None)
    inner = points[60:68]
    centre = (inner[:, 0].mean(), points[66, 1] + 0.015 * face)   # below the upper teeth, which stay visible
    half_width, half_height = 0.5 * np.ptp(inner[:, 0]) + 0.01 * face, 0.045 * face
    inside = 1.0 - ((grid[1] - centre[0]) / half_width) ** 2 - ((grid[0] - centre[1]) / half_height) ** 2
    return MOUTH_DARKNESS * stretch * np.clip(4.0 * inside, 0.0, 1.0)


def _background(who: Actor, size: tuple[int, int]) -> np.ndarray:
    """Linear gradient between the actor's two background colours in the actor's direction, (H, W, 3) float32."""
    width, height = size
    first, second, angle = who.background
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (x / width - 0.5) * np.cos(angle) + (y / height - 0.5) * np.sin(angle) + 0.5
    ramp = np.clip(ramp, 0.0, 1.0)[..., None]
    return np.array(first, np.float32) * (1 - ramp) + np.array(second, np.float32) * ramp


def _head_motion(rng: np.random.Generator, t: np.ndarray, face: float) -> tuple[np.ndarray, np.ndarray]:
    """Small smooth head motion per frame: translation (n, 2) as (dy, dx) pixels and roll (n,) in radians.

    Each is a sum of two slow sinusoids: about 1 % of the face height and 1.5 degrees.
    """
    def wander(amplitude: float) -> np.ndarray:
        freq, phase = rng.uniform(0.2, 0.9, 2), rng.uniform(0, 2 * np.pi, 2)
        return amplitude * rng.uniform(0.4, 1.0, 2) @ np.sin(2 * np.pi * freq[:, None] * t + phase[:, None])

    shift = np.stack([wander(0.006 * face), wander(0.006 * face)], 1)
    return shift, np.deg2rad(wander(0.8))


@dataclass(frozen=True)
class _Stage:
    """Where the photo's face lands in the frame: pixel scale per axis, centre and the warped crop."""
    scale: np.ndarray       # (sx, sy) frame pixels per photo pixel
    anchor: np.ndarray      # photo point placed at `centre` (x, y)
    centre: np.ndarray      # (x, y) in frame pixels
    points: np.ndarray      # landmarks in frame pixels (68, 2)
    face: float             # face height in frame pixels
    box: tuple[int, int, int, int]   # crop x0, y0, x1, y1 holding the face
    ellipse: tuple[np.ndarray, np.ndarray]   # face-mask centre and half-axes in photo pixels


def _stage(who: Actor, size: tuple[int, int], landmarks: np.ndarray) -> _Stage:
    """Place the photo's face for actor `who` in a frame of `size`."""
    width, height = size
    extent = np.ptp(landmarks, axis=0)
    anchor = (landmarks.min(0) + landmarks.max(0)) / 2
    scale = np.array([who.aspect, 1.0]) * who.face_height * height / extent[1]
    centre = np.array(who.centre) * size
    points = (landmarks - anchor) * scale + centre
    # The face mask: an ellipse around the landmarks that takes in the forehead and the hair.
    ellipse = (anchor + (0.0, -0.15 * extent[1]), np.array([0.72, 0.9]) * extent)
    margin = 0.1 * who.face_height * height
    low = np.floor((ellipse[0] - ellipse[1] - anchor) * scale + centre - margin).astype(int)
    high = np.ceil((ellipse[0] + ellipse[1] - anchor) * scale + centre + margin).astype(int)
    x0, y0 = np.maximum(low, 0)
    x1, y1 = np.minimum(high, size)
    return _Stage(scale, anchor, centre, points, float(np.ptp(points[:, 1])), (x0, y0, x1, y1), ellipse)


def rest_landmarks(actor_number: int, size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0) -> np.ndarray:
    """The actor's 68 landmarks (x, y) in frame pixels at rest: before head motion and expression."""
    _check_actor(actor_number, "actor")
    return _stage(actor(actor_number, seed), _check_size(size), astronaut_face()[1]).points


@dataclass(frozen=True)
class _FaceRig:
    """Everything per clip that the frames share: the face's crop, its displacement fields and shading.

    Arrays are float32 on the crop's pixels, centred on the face; fields are (dy, dx) divided by the
    scale, i.e. in photo pixels.
    """
    photo: np.ndarray         # (H, W) anti-aliased photo, RGBA packed into uint32 (see _bilinear)
    y: np.ndarray             # crop pixel rows and columns relative to the face centre (h, w)
    x: np.ndarray
    scale: tuple[float, float]          # (sx, sy)
    anchor: tuple[float, float]         # photo point at the face centre (x, y)
    ellipse: tuple[float, float, float, float]   # face mask centre and half-axes in the photo (x, y, ax, ay)
    expression: np.ndarray    # (2, h, w) apex displacement
    jaw: np.ndarray           # (2, h, w) speech jaw drop
    jaw_drop: float           # the expression's jaw drop in units of `jaw`
    parting: np.ndarray       # (h, w) mouth-interior opacity per unit of `jaw`
    shade: np.ndarray         # (h, w, 3) tint x lighting

    def sample(self, strength: float, talk: float, shift: np.ndarray, roll: float) -> tuple[np.ndarray, np.ndarray]:
        """The face crop (h, w, 3) in 0..255 and its opacity (h, w) for one frame's expression and head pose.

        Each crop pixel is traced back to the photo: undo the head motion (roll about the face
        centre, translation), then the expression and jaw displacement, then the actor's scaling.
        """
        cos, sin = float(np.cos(roll)), float(np.sin(roll))
        y, x = self.y - float(shift[0]), self.x - float(shift[1])
        (sx, sy), (ax, ay) = self.scale, self.anchor
        source_y = (cos * y - sin * x) / sy + ay - strength * self.expression[0] - talk * self.jaw[0]
        source_x = (sin * y + cos * x) / sx + ax - strength * self.expression[1] - talk * self.jaw[1]
        face = _bilinear(self.photo, source_y, source_x)
        face *= self.shade
        dark = np.clip((strength * self.jaw_drop + talk) * self.parting, 0.0, 0.85)[..., None]
        face += dark * (np.array(MOUTH_INTERIOR, np.float32) - face)
        ex, ey, hx, hy = self.ellipse
        alpha = np.clip(8.0 * (1.0 - ((source_x - ex) / hx) ** 2 - ((source_y - ey) / hy) ** 2), 0.0, 1.0)
        return face, alpha


def _bilinear(packed: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sample an RGBA-packed uint32 image (H, W) at real positions (y, x): bilinear RGB float32 (..., 3).

    Gathering one uint32 per neighbour moves a whole pixel at once, about twice as fast as
    scipy's map_coordinates per channel. Positions outside the image take the edge's values.
    """
    height, width = packed.shape
    y, x = np.clip(y, 0, height - 1.001), np.clip(x, 0, width - 1.001)
    row, col = y.astype(np.intp), x.astype(np.intp)
    wy, wx = (y - row)[..., None], (x - col)[..., None]
    flat, index = packed.reshape(-1), row * width + col

    def pixel(offset: int) -> np.ndarray:
        return flat[index + offset].view(np.uint8).reshape(*index.shape, 4)[..., :3].astype(np.float32)

    top, bottom = pixel(0), pixel(width)
    top += wx * (pixel(1) - top)
    bottom += wx * (pixel(width + 1) - bottom)
    top += wy * (bottom - top)
    return top


def _face_rig(emotion: str, who: Actor, stage: _Stage) -> _FaceRig:
    """Precompute the clip's face crop: fields from the emotion's action units and the actor's gains, shading."""
    photo, _ = astronaut_face()
    x0, y0, x1, y1 = stage.box
    grid = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    gains = dict(who.unit_gain)
    expression = displacement(_bumps(EXPRESSIONS[emotion], gains), stage.points, stage.face, grid)
    jaw = displacement(_bumps({26: SPEECH_JAW}, gains), stage.points, stage.face, grid)
    (sx, sy), (cx, cy) = stage.scale, stage.centre
    light = who.brightness * (1 + who.side_light * (grid[1] - cx) / stage.face)
    in_photo = np.array([sy, sx], np.float32)[:, None, None]
    # Blur the photo about as much as it is shrunk, so that the face is not aliased (no shimmering texture).
    blurred = gaussian_filter(photo, sigma=(0.4 / sy, 0.4 / sx, 0))
    rgba = np.zeros((*photo.shape[:2], 4), np.uint8)
    rgba[..., :3] = np.round(255 * blurred)
    return _FaceRig(
        photo=rgba.view(np.uint32)[..., 0], y=grid[0] - np.float32(cy), x=grid[1] - np.float32(cx),
        scale=(float(sx), float(sy)), anchor=(float(stage.anchor[0]), float(stage.anchor[1])),
        ellipse=tuple(float(v) for v in (*stage.ellipse[0], *stage.ellipse[1])),
        expression=expression / in_photo, jaw=jaw / in_photo, jaw_drop=EXPRESSIONS[emotion].get(26, 0.0) / SPEECH_JAW,
        parting=_lips_parting(jaw, stage.points, stage.face, grid),
        shade=(np.array(who.tint, np.float32) * light[..., None]).astype(np.float32))


def render_frames(emotion: str, actor_number: int, statement: int = 1, repetition: int = 1, seed: int = 0,
                  size: tuple[int, int] = DEFAULT_SIZE, fps: float = FPS, duration: float = 3.0) -> np.ndarray:
    """The clip's video as RGB uint8 frames (N, H, W, 3); a pure function of its arguments.

    The expression follows the performance's profile, the jaw its syllables; the head wanders a
    little; the face is blended onto the actor's background through a soft elliptical mask and
    every frame gets fresh sensor noise.
    """
    act, rng, _ = performance(Clip(actor_number, emotion, statement, repetition), seed, duration)
    width, height = _check_size(size)
    if not isinstance(fps, (int, float)) or not 1 <= fps <= 120:
        raise MerError(f"fps must be from 1 to 120, got {fps!r}")
    who = actor(actor_number, seed)
    stage = _stage(who, (width, height), astronaut_face()[1])
    rig = _face_rig(emotion, who, stage)
    x0, y0, x1, y1 = stage.box
    background = 255 * _background(who, (width, height))
    # Sensor noise: uniform integers -4..3 (sd 2.3 grey levels); backgrounds lie within 25..230, so
    # background - 4 + noise stays within uint8 outside the face.
    base = np.round(background).astype(np.uint8) - np.uint8(4)
    crop_background = background[y0:y1, x0:x1] - 4

    t = np.arange(int(round(duration * fps))) / fps
    strength, talk = act.profile(t), act.articulation(t) * rng.uniform(0.6, 1.0)
    shift, roll = _head_motion(rng, t, stage.face)
    roll += np.deg2rad(who.tilt)
    frames = np.empty((len(t), height, width, 3), np.uint8)
    for i in range(len(t)):
        face, alpha = rig.sample(float(strength[i]), float(talk[i]), shift[i], float(roll[i]))
        noise = np.frombuffer(rng.bytes(base.size), np.uint8).reshape(base.shape) & np.uint8(7)
        frames[i] = base + noise
        crop = crop_background + noise[y0:y1, x0:x1]
        crop += alpha[..., None] * (face - crop_background)
        frames[i, y0:y1, x0:x1] = np.clip(crop, 0, 255)
    return frames


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------
def _blend(neutral: float, emotional: float, profile: np.ndarray) -> np.ndarray:
    """Neutral value where the profile is 0, the emotion's value where it is 1 (beyond it for strong clips)."""
    return neutral + profile * (emotional - neutral)


def _smooth_noise(rng: np.random.Generator, n: int, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """Unit-variance noise low-passed to about `cutoff_hz` (one-pole filter run forward and back)."""
    a = np.exp(-2 * np.pi * cutoff_hz / sample_rate)
    noise = lfilter([1 - a], [1, -a], rng.standard_normal(n))
    noise = lfilter([1 - a], [1, -a], noise[::-1])[::-1]
    return noise / (noise.std() + 1e-12)


def _unit_peak(signal: np.ndarray) -> np.ndarray:
    return signal / (np.abs(signal).max() + 1e-12)


def _unit_rms(signal: np.ndarray) -> np.ndarray:
    return signal / (np.sqrt(np.mean(signal ** 2)) + 1e-12)


def _f0_contour(phase: np.ndarray, level: np.ndarray, semitones: np.ndarray, jitter: np.ndarray,
                rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """F0 in Hz: accents on the stressed syllables (+-`semitones`/2), 2 semitones of declination, jitter."""
    stress = np.array(STRESS) + rng.uniform(-0.15, 0.15, len(STRESS))
    accent = np.interp(phase, np.arange(len(STRESS)) + 0.5, stress)
    declination = 2.0 * np.clip(phase / len(STRESS), 0.0, 1.0)
    f0 = level * 2 ** ((semitones * (accent - 0.5) - declination) / 12)
    return f0 * (1 + jitter * _smooth_noise(rng, len(phase), sample_rate, 60.0))


def _glottal_source(f0: np.ndarray, tension: np.ndarray, sample_rate: int) -> np.ndarray:
    """Harmonic pulse train of a time-varying F0, from lax (1/k^2 roll-off) to tense/pressed (1/k) voice.

    The harmonics sin(k phase) come from the recurrence sin((k+1)p) = 2 cos(p) sin(kp) - sin((k-1)p),
    which spares a sine per harmonic and sample.
    """
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    harmonics = max(1, int(min(MAX_HARMONIC_HZ, 0.45 * sample_rate) // f0.max()))
    lax, tense = np.zeros_like(f0), np.zeros_like(f0)
    twice_cos, previous, wave = 2 * np.cos(phase), np.zeros_like(f0), np.sin(phase)
    for k in range(1, harmonics + 1):
        lax += wave * (1 / k ** 2)
        tense += wave * (1 / k)
        previous, wave = wave, twice_cos * wave - previous
    return (1 - tension) * _unit_peak(lax) + tension * _unit_peak(tense)


def _resonator(signal: np.ndarray, freq: float, bandwidth: float, sample_rate: int) -> np.ndarray:
    """Two-pole resonator at `freq` Hz with `bandwidth` Hz (a formant), gain 1 at `freq`."""
    r = np.exp(-np.pi * bandwidth / sample_rate)
    theta = 2 * np.pi * freq / sample_rate
    gain = (1 - r) * np.sqrt(1 - 2 * r * np.cos(2 * theta) + r * r)
    return lfilter([gain], [1, -2 * r * np.cos(theta), r * r], signal)


def _formant_filter(source: np.ndarray, syllable: np.ndarray, vowels: str, formant_scale: float,
                    sample_rate: int) -> np.ndarray:
    """Colour the source with the vowel of each syllable (F1-F3 resonators, cross-faded over ~10 ms).

    Each vowel is brought to the same RMS, so that loudness follows the envelope, not the vowel.
    """
    out = np.zeros_like(source)
    for vowel in set(vowels):
        f1, f2, f3 = (f * formant_scale for f in VOWELS[vowel])
        coloured = _unit_rms(_resonator(source, f1, 90, sample_rate) + 0.5 * _resonator(source, f2, 120, sample_rate)
                             + 0.25 * _resonator(source, f3, 180, sample_rate))
        weight = np.isin(syllable, [i for i, v in enumerate(vowels) if v == vowel]).astype(float)
        out += coloured * lfilter([0.002], [1, -0.998], weight)
    return out


def render_audio(emotion: str, actor_number: int, statement: int = 1, repetition: int = 1, seed: int = 0,
                 duration: float = 3.0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The clip's speech-like mono audio as float32 in [-1, 1]; a pure function of its arguments.

    Voice = glottal source (F0 contour, jitter, tension) x shimmer, coloured by the syllables'
    vowel formants, under a syllable envelope; plus aspiration noise (breathiness) and consonant
    bursts at syllable onsets. Level, range, breathiness, jitter, shimmer, tension and energy
    move from neutral to the emotion with the clip's profile; the rate is the performance's.
    """
    act, _, rng = performance(Clip(actor_number, emotion, statement, repetition), seed, duration)
    if not isinstance(sample_rate, int) or not 16000 <= sample_rate <= 96000:
        raise MerError(f"sample_rate must be an integer from 16000 to 96000 Hz, got {sample_rate!r}")
    who = actor(actor_number, seed)
    emo, neutral = PROSODY[emotion], PROSODY["neutral"]
    t = np.arange(int(round(duration * sample_rate))) / sample_rate
    profile = act.profile(t)

    def follow(field: str) -> np.ndarray:
        return _blend(getattr(neutral, field), getattr(emo, field), profile)

    phase = act.syllable_phase(t)
    syllable = np.clip(np.floor(phase), 0, len(STRESS) - 1).astype(int)
    speaking = (phase >= 0) & (phase < len(STRESS))
    stress = 0.6 + 0.4 * np.array(STRESS)[syllable]
    envelope = np.where(speaking, np.sin(np.pi * phase) ** 2, 0.0) * stress

    level = who.base_f0 * follow("f0_factor") * rng.uniform(0.95, 1.05)
    f0 = _f0_contour(phase, level, follow("f0_range"), follow("jitter"), rng, sample_rate)
    source = _glottal_source(f0, np.clip(follow("tension"), 0.0, 1.0), sample_rate)
    source *= 1 + follow("shimmer") * _smooth_noise(rng, len(t), sample_rate, 100.0)
    voiced = _unit_rms(_formant_filter(source, syllable, SYLLABLE_VOWELS[statement], who.formant_scale,
                                       sample_rate))
    breath = _unit_rms(_resonator(rng.standard_normal(len(t)), 2500 * who.formant_scale, 2000, sample_rate))
    onset = np.where(speaking, np.exp(-(phase - syllable) / (0.025 * act.speech_rate)), 0.0)
    bursts = np.array(SYLLABLE_BURSTS[statement])[syllable] * onset
    hiss = _unit_rms(np.diff(rng.standard_normal(len(t) + 1)))   # first difference: high-passed noise

    signal = envelope * (voiced + 3 * follow("breath") * breath) + 0.3 * bursts * hiss
    gain = who.mic_gain * np.minimum(follow("energy"), 1.0) * rng.uniform(0.9, 1.1)
    audio = SPEECH_LEVEL * signal * gain + NOISE_FLOOR * rng.standard_normal(len(t))
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Writing the corpus
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusConfig:
    """Everything that determines the corpus's content (recorded in corpus.json)."""
    actors: int
    seed: int
    width: int
    height: int
    fps: float
    duration: float
    sample_rate: int
    generator_version: int = GENERATOR_VERSION


def _write_clip(job: tuple[Path, Clip, CorpusConfig]) -> Path:
    """Render one clip and write it atomically as mp4 (H.264 + AAC)."""
    from mer_lib.media import write_av

    path, clip, config = job
    args = (clip.emotion, clip.actor, clip.statement, clip.repetition, config.seed)
    frames = render_frames(*args, size=(config.width, config.height), fps=config.fps, duration=config.duration)
    audio = render_audio(*args, duration=config.duration, sample_rate=config.sample_rate)
    return write_av(path, frames, config.fps, audio=audio, sample_rate=config.sample_rate)


def read_corpus_record(out_dir: str | os.PathLike) -> dict | None:
    """The corpus.json that synthesize() wrote in `out_dir` (parameters, generator version), None if absent."""
    record = Path(out_dir) / "corpus.json"
    if not record.exists():
        return None
    try:
        content = json.loads(record.read_text())
        content["parameters"]["generator_version"]
    except (ValueError, KeyError, TypeError) as err:
        raise MerError(f"{record}: unreadable corpus record ({err}); delete it or choose another folder") from err
    return content


def _check_existing_config(out_dir: Path, config: CorpusConfig) -> None:
    """MerError when `out_dir` already holds a corpus made with other parameters (no silent mixing)."""
    record = read_corpus_record(out_dir)
    if record is None:
        return
    previous = record["parameters"]
    if previous != asdict(config):
        raise MerError(f"{out_dir} holds a corpus made with other parameters ({previous}); "
                       f"choose another folder or delete it")


def synthesize(out_dir: str | os.PathLike, actors: int = 6, seed: int = 0, size: tuple[int, int] | None = None,
               workers: int | None = None, duration: float = 3.0, limit: int | None = None) -> list[Path]:
    """Write the embedded corpus under `out_dir`: Actor_XX/<RAVDESS name>.mp4 plus corpus.json.

    Clips are rendered in parallel by `workers` processes (default: all cores). Resumable: clips
    already present are kept as they are (each is written atomically, so a present file is
    whole). `limit` generates only the first `limit` clips of the plan (benchmarks, tests).
    Returns the paths of the planned clips.
    """
    _check_actor(actors, "actors")
    width, height = _check_size(DEFAULT_SIZE if size is None else size)
    _check_seed_and_duration(seed, duration)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise MerError(f"limit must be a non-negative number of clips, got {limit!r}")
    parallel.check_workers(workers)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MerError(f"{out_dir} exists and is not a folder")
    config = CorpusConfig(actors, int(seed), width, height, FPS, float(duration), SAMPLE_RATE)
    _check_existing_config(out_dir, config)
    write_json(out_dir / "corpus.json", {
        "generator": "mer_lib.data.synthetic", "generator_version": GENERATOR_VERSION,
        "parameters": asdict(config), "clips": len(plan(actors)), "layout": "Actor_XX/01-01-EE-II-SS-RR-XX.mp4",
        "note": "synthetic corpus for teaching and tests; it says nothing about real emotional expression"})

    clips = plan(actors)[:limit]
    paths = [out_dir / clip.relpath for clip in clips]
    jobs = [(path, clip, config) for path, clip in zip(paths, clips) if not path.exists()]
    if not jobs:
        return paths
    astronaut_face()   # once here: forked workers inherit the landmarks instead of each loading dlib's model
    workers = parallel.worker_count(workers, len(jobs))
    with tqdm(total=len(jobs), desc="synthesize corpus", unit="clip", disable=None) as bar:
        if workers == 1:
            for job in jobs:
                _write_clip(job)
                bar.update()
        else:
            with parallel.process_pool(workers) as pool:
                for _ in pool.map(_write_clip, jobs):
                    bar.update()
    return paths
