"""Decode video frames and audio, and write them back: the only module that touches codecs.

Everything goes through PyAV (which bundles its own FFmpeg) and soundfile, so RAVDESS's mp4
(H.264 + AAC), CREMA-D's FLV (VP6F + MP3), phone and webcam recordings (mov, mkv, webm; variable
frame rate; rotation metadata), wav, mp3 and m4a all read the same way. Frames come back upright (a
rotated phone video is turned as a player would show it) as RGB uint8 arrays (N, H, W, 3) with their
timestamps in seconds, or as video-range luma (N, H, W) where only grey is needed (`colour="luma"`, see
`LUMA_FORMATS`); audio as float32 in [-1, 1]. `Reader` decodes a file or a capture device
piece by piece, audio and video together, in bounded memory. Unreadable media raise MerError with a
one-line reason, never a codec traceback.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from scipy.signal import firwin, resample_poly

from mer_lib.artifacts import atomic_path
from mer_lib.errors import MerError

# Formats soundfile reads directly (and much faster than a codec round trip through FFmpeg).
SOUNDFILE_SUFFIXES = {".wav", ".flac"}
AAC_FRAME_SIZE = 1024
# FFmpeg's native AAC encoder; its default "twoloop" coder distorts steady tones badly (errors of
# 0.4 on a 0.5 sine), the "fast" coder at 128 kb/s stays within about 0.05.
AAC_OPTIONS = {"aac_coder": "fast"}
AAC_BIT_RATE = 128_000

# Raw audio formats whose duration FFmpeg estimates from the bit rate unless a header declares it
# (an estimate can be far off for VBR): without such a header their duration comes from the packets.
ESTIMATED_DURATION_FORMATS = {"mp3", "aac"}
# The headers that declare an mp3's length (frame count), in its first frame: LAME/Xing (VBR and CBR)
# and Fraunhofer's VBRI. FFmpeg reads them; ADTS (raw aac) has none.
MP3_LENGTH_TAGS = (b"Xing", b"Info", b"VBRI")
# Data may end this much before the declared duration before a file counts as truncated.
TRUNCATION_TOLERANCE_S = 0.25


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds: its streams, duration (seconds) and their basic properties."""
    path: str
    duration: float
    has_video: bool
    has_audio: bool
    fps: float | None
    width: int | None
    height: int | None
    n_frames: int | None
    sample_rate: int | None
    channels: int | None


def _unreadable(path: str | os.PathLike, reason: object) -> MerError:
    """The one error every unreadable input turns into."""
    reason = " ".join(str(reason).split()) or "unknown error"
    return MerError(f"{path}: cannot read media ({reason})")


def _check_file(path: str | os.PathLike) -> Path:
    """`path` as a Path, after checking it is a non-empty file."""
    file = Path(path)
    if not file.exists():
        raise _unreadable(path, "no such file")
    if not file.is_file():
        raise _unreadable(path, "not a file")
    if file.stat().st_size == 0:
        raise _unreadable(path, "empty file")
    return file


def _open(path: str | os.PathLike):
    """Open a media file with PyAV; every failure becomes a one-line MerError."""
    file = _check_file(path)
    try:
        return av.open(str(file), metadata_errors="replace")
    except av.FFmpegError as err:
        raise _unreadable(path, err.strerror or err) from err


def _video_stream(container):
    """The first real video stream (cover art in an mp3 is a picture, not video), else None."""
    return next((s for s in container.streams.video
                 if not s.disposition & av.stream.Disposition.attached_pic), None)


def _audio_stream(container):
    """The first audio stream, else None."""
    return next(iter(container.streams.audio), None)


def _seconds(ticks: int | None, time_base: Fraction | None) -> float | None:
    """A timestamp in seconds (None when unknown)."""
    return None if ticks is None or time_base is None else float(ticks * time_base)


# --------------------------------------------------------------------------------------------
# Probing
# --------------------------------------------------------------------------------------------

def _packet_extent(container, streams: list, start: float) -> tuple[dict[int, int], float]:
    """Demux (no decoding) from about `start` seconds: packets per stream index, and where the data ends (s).

    Cheap compared with decoding; it counts frames where the container keeps no index and shows
    where the data really stops in a truncated file.
    """
    counts, end = {s.index: 0 for s in streams}, 0.0
    if start > 0:
        container.seek(int(start * av.time_base), any_frame=True)
    for packet in container.demux(*streams):
        if packet.size and packet.pts is not None:
            counts[packet.stream.index] += 1
            end = max(end, _seconds(packet.pts + (packet.duration or 0), packet.time_base))
    return counts, end


def _check_extent(path: str | os.PathLike, declared: float | None, data_end: float) -> None:
    """The one truncation rule of every format: MerError when the data ends well before the declared duration."""
    if declared is not None and data_end < declared - TRUNCATION_TOLERANCE_S:
        raise _unreadable(path, f"truncated: data ends at {data_end:.2f} s of {declared:.2f} s")


def _wav_extent(path: str | os.PathLike) -> tuple[float, float] | None:
    """(declared, present) seconds of a RIFF/WAVE file's data chunk, from its header and the file's size.

    None when the file is not a WAVE file or its header leaves the size open (0 or 0xFFFFFFFF: written
    while streaming, or RF64). Decoders (libsndfile, FFmpeg) quietly read what is there, so the header
    is read here.
    """
    with open(path, "rb") as handle:
        head = handle.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        byte_rate = None
        while len(chunk := handle.read(8)) == 8:
            kind, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if kind == b"fmt ":
                byte_rate = int.from_bytes(handle.read(16)[8:12], "little")
                handle.seek(size + (size & 1) - 16, os.SEEK_CUR)
            elif kind == b"data":
                present = os.fstat(handle.fileno()).st_size - handle.tell()
                if not byte_rate or size in (0, 0xFFFFFFFF):
                    return None
                return size / byte_rate, min(size, present) / byte_rate
            else:
                handle.seek(size + (size & 1), os.SEEK_CUR)
    return None


def _probe_soundfile(path: str | os.PathLike) -> MediaInfo | None:
    """MediaInfo of a WAV/FLAC file read by soundfile (fast), None when soundfile cannot read it."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        return None
    if info.frames == 0:
        raise _unreadable(path, "no audio samples")
    extent = _wav_extent(path)
    if extent is not None:
        _check_extent(path, *extent)
    return MediaInfo(path=str(path), duration=info.frames / info.samplerate, has_video=False, has_audio=True,
                     fps=None, width=None, height=None, n_frames=None, sample_rate=info.samplerate,
                     channels=info.channels)


def _mp3_declares_length(path: str | os.PathLike) -> bool:
    """Whether the mp3's first frame (after an ID3v2 tag) carries a Xing, Info or VBRI length header."""
    with open(path, "rb") as handle:
        head = handle.read(10)
        if head[:3] == b"ID3":  # ID3v2: 10-byte header, syncsafe size, a footer of 10 when flagged
            size = sum((byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(head[6:10]))
            handle.seek(10 + size + (10 if head[5] & 0x10 else 0))
        else:
            handle.seek(0)
        first = handle.read(4096)
    sync = next((i for i in range(len(first) - 1) if first[i] == 0xFF and first[i + 1] & 0xE0 == 0xE0), None)
    return sync is not None and any(tag in first[sync:sync + 192] for tag in MP3_LENGTH_TAGS)


def _declared_duration(container, path: str | os.PathLike) -> float | None:
    """The container's own duration in seconds, unless unknown or only estimated from the bit rate."""
    if container.duration is None:
        return None
    if container.format.name in ESTIMATED_DURATION_FORMATS and not (
            container.format.name == "mp3" and _mp3_declares_length(path)):
        return None
    return container.duration / av.time_base


def _probe_av(path: str | os.PathLike) -> MediaInfo:
    """MediaInfo through PyAV, checking that the data reaches the declared duration."""
    with _open(path) as container:
        video, audio = _video_stream(container), _audio_stream(container)
        if video is None and audio is None:
            raise _unreadable(path, "no audio or video stream")
        streams = [s for s in (video, audio) if s is not None]
        declared = _declared_duration(container, path)
        # Indexed containers (mp4) know every stream's frame count: only the tail needs demuxing.
        indexed = declared is not None and all(s.frames > 0 for s in streams)
        tail = max(declared - 1.0, 0.0) if indexed else 0.0
        try:
            counts, data_end = _packet_extent(container, streams, tail)
            if tail > 0 and not any(counts.values()):  # nothing in the tail: find where the data stops
                container.seek(0)
                counts, data_end = _packet_extent(container, streams, 0.0)
        except av.FFmpegError as err:
            raise _unreadable(path, err.strerror or err) from err
        _check_extent(path, declared, data_end)
        if not any(counts.values()):
            raise _unreadable(path, "no audio or video data")
        fps = (video.average_rate or video.guessed_rate) if video else None
        return MediaInfo(path=str(path), duration=declared or data_end,
                         has_video=video is not None, has_audio=audio is not None,
                         fps=float(fps) if fps else None,
                         width=video.codec_context.width if video else None,
                         height=video.codec_context.height if video else None,
                         n_frames=(video.frames if indexed else counts[video.index]) if video else None,
                         sample_rate=audio.codec_context.sample_rate if audio else None,
                         channels=audio.codec_context.layout.nb_channels if audio else None)


def probe(path: str | os.PathLike) -> MediaInfo:
    """Streams, duration (s), fps, frame size, sample rate and channels of a media file.

    WAV/FLAC go through soundfile, everything else through PyAV. Raises MerError for missing,
    empty, corrupt or truncated files and for files with neither audio nor video.
    """
    _check_file(path)
    info = _probe_soundfile(path) if Path(path).suffix.lower() in SOUNDFILE_SUFFIXES else None
    return info or _probe_av(path)


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) shrunk so the longer side is at most `max_side`, aspect ratio kept."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _check_range(start: float, end: float | None) -> None:
    """A time range [start, end) in seconds must be ordered and not negative."""
    if start < 0 or (end is not None and end <= start):
        raise MerError(f"invalid time range: start={start}, end={end} (need 0 <= start < end)")


def _frames_after_seek(container, stream, start: float) -> Iterator[av.VideoFrame] | None:
    """Decoded frames from the keyframe before `start`, or None where seeking fails or overshoots."""
    try:
        container.seek(int(start / stream.time_base), stream=stream)
        frames = container.decode(stream)
        first = next(frames, None)
    except av.FFmpegError:
        return None
    if first is None or first.time is None or first.time > start:
        return None
    return itertools.chain([first], frames)


def _threaded_video_stream(container, path: str | os.PathLike, threads: int = 0):
    """The container's video stream, decoded by `threads` FFmpeg threads (0: FFmpeg's choice, about one per
    core); MerError when there is none."""
    stream = _video_stream(container)
    if stream is None:
        raise MerError(f"{path}: no video stream")
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    return stream


@contextlib.contextmanager
def _decoding_video(path: str | os.PathLike, start: float, threads: int = 0):
    """(container, video stream, decoded frames from about `start` seconds on), closed on exit; `threads` as
    for `_threaded_video_stream`.

    Seeks to the keyframe before `start` where the format allows; otherwise (FLV cannot seek)
    decodes from the beginning.
    """
    with contextlib.ExitStack() as stack:
        container = stack.enter_context(_open(path))
        stream = _threaded_video_stream(container, path, threads)
        frames = _frames_after_seek(container, stream, start) if start > 0 else container.decode(stream)
        if frames is None:
            stack.close()
            container = stack.enter_context(_open(path))
            stream = _threaded_video_stream(container, path, threads)
            frames = container.decode(stream)
        yield container, stream, frames


def upright(image: np.ndarray, rotation: int | float | None) -> np.ndarray:
    """`image` turned as a player shows it: `rotation` is the counter-clockwise display rotation in
    degrees of the frame's display matrix (PyAV's VideoFrame.rotation; phones write 90 or -90)."""
    turns = round((rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


COLOURS = ("rgb", "luma")
# Video-range luma: the Y' plane of 8-bit YUV video as coded (ITU-R BT.601/709 levels, black at 16, white at
# 235), what "luma" frames hold. Frames of these formats at their own size give it without any conversion
# (0.04 ms for a 720p frame against 1.5 ms for RGB); others (full-range "yuvj", 10-bit, RGB, resized) are
# converted to yuv420p by swscale first.
LUMA_BLACK, LUMA_WHITE = 16, 235
LUMA_FORMATS = frozenset({"yuv420p", "yuv422p", "yuv444p", "yuv440p", "yuv411p", "yuv410p", "nv12", "nv21",
                          "nv16", "nv24", "nv42"})
MPEG_RANGE, JPEG_RANGE = 1, 2  # AVColorRange: video levels (16..235), full-range levels (0..255)


_FULL_RANGE = np.round((np.arange(256) - LUMA_BLACK) * 255 / (LUMA_WHITE - LUMA_BLACK)).clip(0, 255).astype(np.uint8)


def full_range(luma: np.ndarray) -> np.ndarray:
    """Video-range luma (uint8, 16..235) stretched to grey levels 0..255 (uint8): what RGB -> grey with the
    luma weights gives, up to rounding. Applied to face chips only: on a whole 720p frame it costs 1.2 ms."""
    return _FULL_RANGE.take(luma)


def check_colour(colour: str) -> None:
    if colour not in COLOURS:
        raise MerError(f"unknown frame colour {colour!r} (choose from {', '.join(COLOURS)})")


class _VideoFrames:
    """Every `step`-th frame shown in [start, end) as an upright RGB (or luma) array with its time in seconds.

    Fed decoded frames one at a time (`convert`), so a file read whole and a stream of mixed audio
    and video frames select the same frames; `done` turns True at the first frame at or after `end`.
    """

    def __init__(self, stream, step: int = 1, max_side: int | None = None, start: float = 0.0,
                 end: float | None = None, colour: str = "rgb"):
        check_colour(colour)
        self.width, self.height = _scaled_size(stream.codec_context.width, stream.codec_context.height, max_side)
        self.step, self.start, self.end = step, start, end
        self.picture = self.rgb if colour == "rgb" else functools.partial(video_luma, width=self.width,
                                                                           height=self.height)
        self.shape = (self.height, self.width, 3) if colour == "rgb" else (self.height, self.width)
        self.index, self.time, self.done = 0, start, False

    def convert(self, frame: av.VideoFrame) -> tuple[np.ndarray, float] | None:
        """(image, time) when `frame` is kept, else None."""
        self.time = frame.time if frame.time is not None else self.time  # no timestamp: as the frame before
        if self.end is not None and self.time >= self.end:
            self.done = True
        if self.done or self.time < self.start:
            return None
        self.index += 1
        if (self.index - 1) % self.step:
            return None
        return upright(self.picture(frame), frame.rotation), self.time

    def rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """The frame as RGB at the kept size. At its own size no size is passed: swscale then takes its
        unscaled converter, which gives the same pixels as the scaler (for every pixel format tried:
        yuv420p and yuvj420p, yuv422p, yuv444p, nv12, 10-bit) in 40 % of the time (1.2 ms for a 720p frame)."""
        if (frame.width, frame.height) == (self.width, self.height):
            return frame.to_ndarray(format="rgb24")
        return frame.to_ndarray(format="rgb24", width=self.width, height=self.height, interpolation="AREA")


def video_luma(frame: av.VideoFrame, width: int | None = None, height: int | None = None) -> np.ndarray:
    """A decoded frame's video-range luma (H, W) uint8 at `width` x `height` (default: its own size): its own
    Y' plane where it has one at these levels, else that of the frame converted to yuv420p."""
    width, height = width or frame.width, height or frame.height
    own = (frame.width, frame.height) == (width, height)
    if not (own and frame.format.name in LUMA_FORMATS and frame.color_range != JPEG_RANGE):
        frame = frame.reformat(format="yuv420p", width=width, height=height, interpolation="AREA",
                               src_color_range=frame.color_range or None, dst_color_range=MPEG_RANGE)
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width].copy()


def _expected_frames(container, stream, start: float, end: float | None, step: int) -> int:
    """About how many frames read_video keeps (sizes its output array; an estimate, never a limit)."""
    fps = float(stream.average_rate or stream.guessed_rate or 30)
    duration = _declared_duration(container, container.name) or 10.0
    count = stream.frames or duration * fps
    if end is not None:
        count = min(count, (end - start) * fps)
    return int(count) // step + 2


class _FrameArray:
    """Frames written in place into one array, doubled when the expected count was short.

    Stacking a list of frames instead would copy every frame once more (a third of the time of
    a full-size 720p read).
    """

    def __init__(self, capacity: int):
        self.capacity, self.array, self.count = capacity, None, 0

    def append(self, image: np.ndarray) -> None:
        if self.array is None:
            self.array = np.empty((self.capacity, *image.shape), np.uint8)
        elif self.count == len(self.array):
            self.array = np.concatenate([self.array, np.empty_like(self.array)])
        self.array[self.count] = image
        self.count += 1

    def frames(self, shape: tuple[int, ...]) -> np.ndarray:
        """The frames written so far, (count, *shape); `shape` sizes an empty result."""
        return np.zeros((0, *shape), np.uint8) if self.array is None else self.array[:self.count]


def read_video(path: str | os.PathLike, step: int = 1, max_side: int | None = None, start: float = 0.0,
               end: float | None = None, threads: int = 0, colour: str = "rgb") -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 frames (N, H, W, 3) and their times in seconds (N,) on the file's clock; with
    `colour="luma"` video-range luma frames (N, H, W) instead (a third of the memory, no colour conversion).

    Keeps every `step`-th frame of those shown in [start, end); `max_side` shrinks frames during
    decoding (aspect ratio kept); rotation metadata is honoured (`upright`). A truncated file returns
    the frames before the damage. `threads` FFmpeg threads decode (0: FFmpeg's choice, about one per
    core); the frames are the same whatever their number.
    """
    if step < 1 or (max_side is not None and max_side < 1):
        raise MerError(f"step and max_side must be positive, got step={step}, max_side={max_side}")
    _check_range(start, end)
    check_colour(colour)
    with _decoding_video(path, start, threads) as (container, stream, frames):
        keep = _VideoFrames(stream, step, max_side, start, end, colour)
        images, times = _FrameArray(_expected_frames(container, stream, start, end, step)), []
        try:
            for frame in frames:
                kept = keep.convert(frame)
                if keep.done:
                    break
                if kept is not None:
                    images.append(kept[0])
                    times.append(kept[1])
        except av.FFmpegError as err:
            if not times:
                raise _unreadable(path, err.strerror or err) from err
    if not times and start == 0 and end is None:
        raise _unreadable(path, "no decodable video frames")
    return images.frames(keep.shape), np.asarray(times, dtype=np.float64)


def _decode_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """All samples of the first audio stream as float32 (channels, n), and the sample rate.

    Samples past the stream's declared duration (AAC pads its last frame) are dropped. A
    truncated file returns the samples before the damage.
    """
    with _open(path) as container:
        stream = _audio_stream(container)
        if stream is None:
            raise MerError(f"{path}: no audio stream")
        rate = stream.codec_context.sample_rate
        to_float = av.AudioResampler(format="fltp")
        chunks = []
        try:
            for frame in container.decode(stream):
                chunks += [f.to_ndarray() for f in to_float.resample(frame)]
            chunks += [f.to_ndarray() for f in to_float.resample(None)]
        except av.FFmpegError as err:
            if not chunks:
                raise _unreadable(path, err.strerror or err) from err
        declared = _seconds(stream.duration, stream.time_base)
    if not chunks:
        raise _unreadable(path, "no audio samples")
    samples = np.concatenate(chunks, axis=1)
    if declared:
        samples = samples[:, :round(declared * rate)]
    return samples, rate


def _read_soundfile(path: str | os.PathLike) -> tuple[np.ndarray, int] | None:
    """WAV/FLAC samples as float32 (channels, n) via soundfile, None when it cannot read the file."""
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError):
        return None
    if samples.shape[0] == 0:
        raise _unreadable(path, "no audio samples")
    return samples.T, rate


@functools.lru_cache(maxsize=8)
def _lowpass(up: int, down: int, dtype: np.dtype) -> np.ndarray:
    """The anti-aliasing filter resample_poly designs by default (Kaiser window, beta 5, half length 10 x
    the larger factor), designed once: a stream resampled piece by piece spent a tenth of its decoding
    designing it again for every piece."""
    rate = max(up, down)
    taps = firwin(2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0)).astype(dtype)
    taps.flags.writeable = False  # resample_poly scales a copy; the cached taps must never change
    return taps


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling along the last axis by the reduced ratio to_rate/from_rate (exact, deterministic)."""
    if from_rate == to_rate:
        return audio
    factor = gcd(from_rate, to_rate)
    up, down = to_rate // factor, from_rate // factor
    dtype = audio.dtype if np.issubdtype(audio.dtype, np.floating) else np.float64
    resampled = resample_poly(audio, up, down, axis=-1, window=_lowpass(up, down, np.dtype(dtype)))
    return np.clip(resampled, -1.0, 1.0).astype(np.float32)


class StreamResampler:
    """`resample` of a signal that arrives in pieces: the pieces' outputs, joined, equal `resample` of the whole.

    scipy's polyphase filter reaches `reach` input samples to each side, so each output is computed
    from a stretch of the input with that much context on both sides, starting on a multiple of the
    reduced `down` factor (the filter's phase then lines up with the whole signal's); the signal's
    two ends see zeros beyond them, as in `resample`. Keeps at most a piece plus the context.
    """

    def __init__(self, from_rate: int, to_rate: int):
        factor = gcd(from_rate, to_rate)
        self.from_rate, self.to_rate = from_rate, to_rate
        self.up, self.down = to_rate // factor, from_rate // factor
        reach = 10 * max(self.up, self.down) // self.up + 2  # resample_poly's half filter length, in input samples
        self.context = -(-reach // self.down) * self.down
        self.buffer, self.origin, self.done = np.zeros(0, np.float32), 0, 0  # input indices: buffer[0], emitted to

    def push(self, samples: np.ndarray) -> np.ndarray:
        """The output samples that `samples` (appended to what came before) complete."""
        self.buffer = np.concatenate([self.buffer, np.asarray(samples, np.float32)])
        if self.up == self.down:
            return self._emit(self.origin + len(self.buffer))
        ready = (self.origin + len(self.buffer) - self.context) // self.down * self.down
        return self._emit(ready) if ready > self.done else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        """The last output samples, once the signal has ended."""
        return self._emit(self.origin + len(self.buffer), final=True)

    def _emit(self, until: int, final: bool = False) -> np.ndarray:
        """Outputs for inputs [done, until) (all that is left when `final`); drops input no longer needed."""
        if self.up == self.down:
            out, self.buffer, self.origin, self.done = self.buffer, self.buffer[:0], until, until
            return out
        first = max(self.done - self.context, self.origin)
        stretch = self.buffer[first - self.origin:None if final else until + self.context - self.origin]
        skip = (self.done - first) * self.up // self.down
        # ceil at the end, as scipy
        last = -(-(until * self.up) // self.down) if final else until * self.up // self.down
        out = resample(stretch, self.from_rate, self.to_rate)[skip:skip + last - self.done * self.up // self.down]
        self.done = until
        keep = max(self.done - self.context, self.origin)
        self.buffer, self.origin = self.buffer[keep - self.origin:], keep
        return out


def read_audio(path: str | os.PathLike, sample_rate: int | None = None, mono: bool = True, start: float = 0.0,
               end: float | None = None) -> tuple[np.ndarray, int]:
    """Float32 samples in [-1, 1], (n,) when `mono` (mean of channels) else (channels, n), and their rate.

    Samples in [start, end) seconds, resampled to `sample_rate` when given. WAV/FLAC are read by
    soundfile (fast path), everything else (mp4, flv, mp3, ...) is decoded by PyAV.
    """
    _check_range(start, end)
    if sample_rate is not None and sample_rate < 1:
        raise MerError(f"sample_rate must be positive, got {sample_rate}")
    _check_file(path)
    decoded = _read_soundfile(path) if Path(path).suffix.lower() in SOUNDFILE_SUFFIXES else None
    samples, rate = decoded or _decode_audio(path)
    samples = samples[:, round(start * rate):None if end is None else round(end * rate)]
    if mono:
        samples = samples.mean(axis=0, dtype=np.float32)
    if sample_rate is None:
        return np.ascontiguousarray(samples), rate
    return resample(samples, rate, sample_rate), sample_rate


class _MonoSamples:
    """Decoded audio frames as mono float32 at `sample_rate`, piece by piece: joined, they are what
    `read_audio` returns for the whole file (channels averaged, AAC's padding past the declared end
    dropped, then `StreamResampler`)."""

    def __init__(self, stream, sample_rate: int | None):
        rate = stream.codec_context.sample_rate
        declared = _seconds(stream.duration, stream.time_base)
        self.left = round(declared * rate) if declared else None  # native samples still to keep
        self.to_float = av.AudioResampler(format="fltp")
        self.resampler = StreamResampler(rate, sample_rate or rate)
        self.sample_rate, self.emitted = sample_rate or rate, 0

    def convert(self, frame: av.AudioFrame | None) -> tuple[np.ndarray, float]:
        """(samples, time of the first) that `frame` completes; None flushes the end of the signal."""
        chunks = [f.to_ndarray() for f in self.to_float.resample(frame)]
        mono = np.concatenate([c.mean(axis=0, dtype=np.float32) for c in chunks]) if chunks else np.zeros(0, np.float32)
        if self.left is not None:
            mono, self.left = mono[:self.left], max(0, self.left - len(mono))
        out = self.resampler.push(mono)
        if frame is None:
            out = np.concatenate([out, self.resampler.flush()])
        time, self.emitted = self.emitted / self.sample_rate, self.emitted + len(out)
        return out, time


def _open_device(source: str, format: str, options: dict | None):
    """Open a capture device through libavdevice (v4l2, avfoundation, dshow, ...); one-line MerError on failure."""
    try:
        return av.open(source, format=format, options=options or {})
    except (av.FFmpegError, ValueError) as err:
        raise MerError(f"{source}: cannot open capture device with format {format!r} ({err})") from err


class Reader:
    """A recording or a capture device decoded piece by piece, audio and video together.

    Iterating yields ("audio", samples, time) with mono float32 samples at `sample_rate` (their time
    counted from the stream's first sample, as `read_audio` counts) and ("video", image, time) with
    every `frame_step`-th upright RGB frame (`max_side` shrinks it; `colour="luma"`: luma frames, as
    `read_video` gives them), in the order the container
    holds them, so memory stays bounded whatever the length. `source` is a file, or a device with
    its libavdevice `format` ("/dev/video0" with "v4l2", "0:0" with "avfoundation",
    "video=NAME:audio=NAME" with "dshow") and `options` (e.g. {"framerate": "30"}). A stream cut
    short ends the iteration with what came before the damage.
    """

    def __init__(self, source: str | os.PathLike, sample_rate: int | None = None, frame_step: int = 1,
                 max_side: int | None = None, format: str | None = None, options: dict | None = None,
                 audio: bool = True, video: bool = True, colour: str = "rgb"):
        check_colour(colour)
        self.source, self.colour, self.format = str(source), colour, format
        self.container = _open(source) if format is None else _open_device(self.source, format, options)
        self.video = _video_stream(self.container) if video else None
        self.audio = _audio_stream(self.container) if audio else None
        if self.video is None and self.audio is None:
            self.container.close()
            wanted = " or ".join(name for name, on in (("audio", audio), ("video", video)) if on)
            raise _unreadable(source, f"no {wanted} stream")
        self.duration = _declared_duration(self.container, source) if format is None else None
        self.sample_rate, self.frame_step, self.max_side = sample_rate, frame_step, max_side

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.container.close()

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, float]]:
        return self.pieces()

    def pieces(self, video: bool = True) -> Iterator[tuple[str, np.ndarray, float]]:
        """What iterating yields; with `video` False only the audio (the video is left undecoded, e.g. for
        another process to read: mer_lib.timeline's `pieces`)."""
        video = self.video if video else None
        streams = [s for s in (video, self.audio) if s is not None]
        if not streams:  # decode() without streams would decode them all
            return
        if video is not None:
            video.thread_type = "AUTO"
        frames = _VideoFrames(video, self.frame_step, self.max_side, colour=self.colour) if video else None
        samples = _MonoSamples(self.audio, self.sample_rate) if self.audio is not None else None
        started = False
        try:
            for frame in self.container.decode(*streams):
                kept = frames.convert(frame) if isinstance(frame, av.VideoFrame) else samples.convert(frame)
                if kept is not None and len(kept[0]):
                    started = True
                    yield "video" if isinstance(frame, av.VideoFrame) else "audio", *kept
        except av.FFmpegError as err:
            if not started:
                raise _unreadable(self.source, err.strerror or err) from err
        if samples is not None:
            yield ("audio", *samples.convert(None))


# Pieces decoded ahead of their consumer by `read_ahead`: at 720p with AAC audio about 12 frames (35 MB) and
# 20 pieces of audio, 0.4 s. The consumer's work comes in bursts (a step's windows and models every 0.5 s):
# 8 pieces filled up during one, and the timeline was no faster than without reading ahead.
READ_AHEAD = 32


def read_ahead(pieces: Iterable, size: int = READ_AHEAD) -> Iterator:
    """`pieces` (a Reader's) as they come, produced by a background thread at most `size` ahead.

    Decoding then runs on another core than what the consumer does with the pieces, since FFmpeg and
    swscale release the GIL: the timeline of a 720p minute took 18.0 and 20.6 s instead of 20.2 and 23.0
    (measured alternately under a load of 5 on two cores), with the same steps. An exception of the producer is
    raised here where the sequence breaks off. Close the iterator (contextlib.closing) before closing the
    source: the producer is then stopped and joined, also when the consumer left early (Ctrl-C, an error).
    """
    ahead, stop, end = queue.Queue(size), threading.Event(), object()

    def produce() -> None:
        try:
            for piece in pieces:
                ahead.put((piece, None))
                if stop.is_set():
                    return
            ahead.put((end, None))
        except BaseException as error:  # noqa: BLE001 (raised in the consumer)
            ahead.put((end, error))

    producer = threading.Thread(target=produce, name="read_ahead", daemon=True)
    producer.start()
    try:
        while True:
            piece, error = ahead.get()
            if error is not None:
                raise error
            if piece is end:
                return
            yield piece
    finally:
        stop.set()
        while producer.is_alive():  # make room for a producer waiting to put, until it sees `stop`
            with contextlib.suppress(queue.Empty):
                ahead.get(timeout=0.05)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def _frame_rate(fps: float) -> Fraction:
    """`fps` as an exact rational (29.97 -> 2997/100, 30000/1001 stays NTSC)."""
    if not fps > 0:
        raise MerError(f"fps must be positive, got {fps}")
    return Fraction(fps).limit_denominator(1001)


def _check_frame(frame: np.ndarray, index: int) -> np.ndarray:
    """One RGB uint8 frame with even width and height (yuv420p halves the chroma planes)."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise MerError(f"frame {index}: expected an RGB array (H, W, 3), got shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise MerError(f"frame {index}: expected dtype uint8, got {frame.dtype}")
    height, width = frame.shape[:2]
    if height % 2 or width % 2:
        raise MerError(f"frame {index}: width and height must be even for H.264 yuv420p, got {width}x{height}")
    return np.ascontiguousarray(frame)


def _first_and_rest(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """The first frame (it sizes the video stream) and an iterator over all frames."""
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        raise MerError("no frames to write") from None
    return first, itertools.chain([first], iterator)


# Codecs by container suffix; everything else gets H.264 and AAC. WebM takes VP8 and Opus only.
VIDEO_CODECS = {".webm": "libvpx"}
AUDIO_CODECS = {".webm": "libopus", ".mp3": "libmp3lame"}
VPX_BIT_RATE = 1_000_000
MS = Fraction(1, 1000)  # time base of frames written at given times (variable frame rate)
LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}  # by channel count


def _add_video_stream(container, first: np.ndarray, rate: Fraction, crf: int, codec: str = "libx264",
                      rotation: int = 0, timed: bool = False):
    """A yuv420p video stream sized by the first frame, encoded single-threaded (deterministic).

    `rotation` writes display-matrix metadata (counter-clockwise degrees, as phones do); `timed`
    counts frame times in milliseconds instead of frames (variable frame rate).
    """
    stream = container.add_stream(codec, rate=rate)
    stream.height, stream.width = _check_frame(first, 0).shape[:2]
    stream.pix_fmt = "yuv420p"
    stream.codec_context.options = {"crf": str(crf), "threads": "1"} if codec == "libx264" else {"threads": "1"}
    if codec != "libx264":
        stream.bit_rate = VPX_BIT_RATE
    if timed:
        stream.codec_context.time_base = stream.time_base = MS
    if rotation:
        stream.set_display_rotation(rotation)
    return stream


def _video_packets(stream, frames: Iterator[np.ndarray], rate: Fraction,
                   times: np.ndarray | None = None) -> Iterator[tuple[list, float]]:
    """Encode each frame (at `times` seconds when given); yield its packets with the frame's end time in seconds."""
    for index, frame in enumerate(frames):
        frame = _check_frame(frame, index)
        if frame.shape[:2] != (stream.height, stream.width):
            raise MerError(f"frame {index}: size {frame.shape[1]}x{frame.shape[0]} differs from "
                           f"the first frame's {stream.width}x{stream.height}")
        if times is None:
            yield stream.encode(_yuv_frame(frame, index, 1 / rate)), float((index + 1) / rate)
        else:
            yield stream.encode(_yuv_frame(frame, round(times[index] * 1000), MS)), float(times[index] + 1 / rate)
    yield stream.encode(None), float("inf")


def _yuv_frame(image: np.ndarray, pts: int, time_base: Fraction) -> av.VideoFrame:
    """An RGB image as a yuv420p frame at `pts` x `time_base` seconds.

    Converted to YUV explicitly: the encoder's implicit conversion is not byte-reproducible.
    """
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    frame.pts, frame.time_base = pts, time_base
    return frame


def _add_audio_stream(container, sample_rate: int, channels: int = 1, codec: str = "aac"):
    """An audio stream of `channels` channels (AAC: see AAC_OPTIONS for why the fast coder)."""
    stream = container.add_stream(codec, rate=sample_rate, layout=LAYOUTS[channels])
    if codec == "aac":
        stream.bit_rate = AAC_BIT_RATE
        stream.codec_context.options = dict(AAC_OPTIONS)
    return stream


def _audio_frames(audio: np.ndarray, sample_rate: int) -> Iterator[av.AudioFrame]:
    """Float audio (channels, n) as AAC-frame-sized input frames, pts counted in samples."""
    layout = LAYOUTS[len(audio)]
    for offset in range(0, audio.shape[1], AAC_FRAME_SIZE):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, offset:offset + AAC_FRAME_SIZE]),
                                           format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = offset
        frame.time_base = Fraction(1, sample_rate)
        yield frame


def _audio_array(audio: np.ndarray) -> np.ndarray:
    """Audio to write, (n,) mono or (channels, n), as float32 (channels, n) clipped to [-1, 1]."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim not in (1, 2) or (audio.ndim == 2 and len(audio) not in LAYOUTS):
        raise MerError(f"audio must be (n,) or (channels, n) with at most {len(LAYOUTS)} channels, "
                       f"got shape {audio.shape}")
    return np.clip(np.atleast_2d(audio), -1.0, 1.0)


def _mux_interleaved(container, video, packets, sound, audio_frames) -> None:
    """Mux each video frame's packets, then the audio that starts before that frame ends."""
    pending = next(audio_frames, None)
    for encoded, until in packets:
        container.mux(encoded)
        while pending is not None and pending.time < until:
            container.mux(sound.encode(pending))
            pending = next(audio_frames, None)
    if sound is not None:
        container.mux(sound.encode(None))


def write_av(path: str | os.PathLike, frames: np.ndarray | Iterable[np.ndarray], fps: float,
             audio: np.ndarray | None = None, sample_rate: int = 48000, crf: int = 23,
             times: np.ndarray | None = None, rotation: int = 0) -> Path:
    """Encode RGB uint8 frames plus optional audio into a video file (.mp4, .mov, .mkv, .flv: H.264 + AAC;
    .webm: VP8 + Opus, which needs 48 kHz).

    `frames` is an array (N, H, W, 3) or any iterable of (H, W, 3) frames, so long clips can be
    generated lazily; width and height must be even. `times` (seconds, one per frame) writes a
    variable frame rate, `fps` then only sizes the last frame; `rotation` adds display-rotation
    metadata (counter-clockwise degrees, as a phone held upright writes). Audio is (n,) mono or
    (channels, n), muxed beside the frames it belongs to (an interleaved file). The file is written
    atomically and the encoders run single-threaded, so identical input gives identical bytes.
    """
    rate = _frame_rate(fps)
    first, frames = _first_and_rest(frames)
    samples = np.zeros((1, 0), np.float32) if audio is None else _audio_array(audio)
    suffix = Path(path).suffix.lower()
    with atomic_path(path) as tmp:
        try:
            with av.open(str(tmp), mode="w") as container:
                video = _add_video_stream(container, first, rate, crf, VIDEO_CODECS.get(suffix, "libx264"),
                                          rotation, times is not None)
                sound = None if audio is None else _add_audio_stream(container, sample_rate, len(samples),
                                                                     AUDIO_CODECS.get(suffix, "aac"))
                _mux_interleaved(container, video, _video_packets(video, frames, rate, times), sound,
                                 _audio_frames(samples, sample_rate))
        except av.FFmpegError as err:
            raise MerError(f"{path}: cannot write media ({err})") from err
    return Path(path)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """Write float audio ((n,) or (channels, n)) by suffix: .wav 16-bit PCM, .mp3, .m4a (AAC), atomically."""
    if Path(path).suffix.lower() == ".wav":
        return write_wav(path, audio, sample_rate)
    samples, suffix = _audio_array(audio), Path(path).suffix.lower()
    with atomic_path(path) as tmp:
        try:
            with av.open(str(tmp), mode="w", format="ipod" if suffix == ".m4a" else None) as out:
                sound = _add_audio_stream(out, sample_rate, len(samples), AUDIO_CODECS.get(suffix, "aac"))
                for frame in _audio_frames(samples, sample_rate):
                    out.mux(sound.encode(frame))
                out.mux(sound.encode(None))
        except av.FFmpegError as err:
            raise MerError(f"{path}: cannot write media ({err})") from err
    return Path(path)


def _even(image: np.ndarray) -> np.ndarray:
    """`image` cut to even width and height (yuv420p halves the chroma planes)."""
    return np.ascontiguousarray(image[:image.shape[0] // 2 * 2, :image.shape[1] // 2 * 2])


def _annotated_streams(out, first: np.ndarray, rate: Fraction, crf: int, audio) -> dict:
    """The video stream of `rewrite_video` (frames at their own times) and an AAC stream like `audio`'s."""
    streams = {"v": _add_video_stream(out, first, rate, crf, timed=True)}
    if audio is not None:
        streams["a"] = out.add_stream("aac", rate=audio.codec_context.sample_rate, layout=audio.codec_context.layout)
    return streams


def _encode_audio(out, stream, frames: list) -> None:
    """Encode decoded audio frames into `stream` at their times (in samples), or drop them without one."""
    for frame in frames if stream is not None else []:
        frame.pts, frame.time_base = round((frame.time or 0.0) * frame.sample_rate), Fraction(1, frame.sample_rate)
        out.mux(stream.encode(frame))


def rewrite_video(source: str | os.PathLike, path: str | os.PathLike,
                  draw: Callable[[np.ndarray, float], np.ndarray], crf: int = 23) -> Path:
    """A copy of `source` (as .mp4) whose frames are `draw(upright RGB frame, time)`, the audio kept.

    One pass in bounded memory: frames keep their times (a variable frame rate stays variable) and
    come out upright with no rotation metadata; the audio is re-encoded as AAC with its own channels
    and sample rate. Written atomically.
    """
    with _open(source) as src, atomic_path(path) as tmp:
        video, audio = _video_stream(src), _audio_stream(src)
        if video is None:
            raise MerError(f"{source}: no video stream to draw on")
        keep, rate = _VideoFrames(video), _frame_rate(float(video.average_rate or video.guessed_rate or 30))
        try:
            with av.open(str(tmp), mode="w", format="mp4") as out:
                streams, pending = {}, []  # added at the first frame, which sizes the video; audio waits
                for frame in src.decode(*(s for s in (video, audio) if s is not None)):
                    if isinstance(frame, av.AudioFrame):
                        pending.append(frame)
                    elif (kept := keep.convert(frame)) is not None:
                        image = _even(draw(*kept))
                        streams = streams or _annotated_streams(out, image, rate, crf, audio)
                        out.mux(streams["v"].encode(_yuv_frame(image, round(kept[1] * 1000), MS)))
                    if streams and pending:
                        _encode_audio(out, streams.get("a"), pending)
                        pending = []
                for stream in streams.values():
                    out.mux(stream.encode(None))
        except av.FFmpegError as err:
            raise MerError(f"{path}: cannot write media ({err})") from err
    return Path(path)


def repeat(path: str | os.PathLike, out: str | os.PathLike, count: int) -> Path:
    """`path` played `count` times in a row, its packets copied with shifted timestamps (no re-encoding).

    Makes long test recordings in seconds (the benchmarks' 10-minute 720p video); the file must start
    on a key frame, as every file written by `write_av` does. Frames keep their times; audio read
    sample by sample runs late by the padding of each repeat's last AAC frame (under 1024 samples).
    Written atomically.
    """
    if count < 1:
        raise MerError(f"count must be positive, got {count}")
    with _open(path) as src, atomic_path(out) as tmp:
        streams = [s for s in (_video_stream(src), _audio_stream(src)) if s is not None]
        span = max(_seconds(s.duration, s.time_base) or 0.0 for s in streams) or _declared_duration(src, path)
        with av.open(str(tmp), mode="w", format=src.format.name.split(",")[0]) as dst:
            copies = {s.index: dst.add_stream_from_template(s) for s in streams}
            for k in range(count):
                src.seek(0)
                for packet in src.demux(*streams):
                    # skip the demuxer's empty end-of-stream packets, and on repeats the encoder's priming
                    # (AAC's packet before time 0), which would step back in time
                    if packet.dts is None or (k and packet.pts is not None and packet.pts < 0):
                        continue
                    shift = round(k * span / packet.time_base)
                    packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                    packet.stream = copies[packet.stream.index]
                    dst.mux(packet)
    return Path(out)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """Write float audio in [-1, 1] ((n,) mono or (channels, n)) as 16-bit PCM wav, atomically."""
    audio = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    if audio.ndim not in (1, 2):
        raise MerError(f"audio must be (n,) or (channels, n), got shape {audio.shape}")
    with atomic_path(path) as tmp:
        sf.write(tmp, audio.T, sample_rate, subtype="PCM_16", format="WAV")
    return Path(path)
