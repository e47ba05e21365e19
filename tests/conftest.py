"""Shared fixtures: where the real media samples are, and small helpers for tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("MER_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


@pytest.fixture(autouse=True)
def _close_figures():
    """Close the figures a test drew (tests look at the Figures the plots return and leave them open)."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real RAVDESS / CREMA-D samples; the test is skipped when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real media samples not found at {REAL_DATA} (set MER_REAL_DATA to point at them)")
    return REAL_DATA


def write_tone_clips(root: Path, actors=(1, 2), emotions=(1, 3, 4, 5), repetitions=(1, 2), seconds: float = 1.2,
                     rate: int = 16000) -> list[Path]:
    """Tiny RAVDESS-named audio-only clips under root/Actor_XX: a tone whose pitch follows emotion and actor."""
    import numpy as np

    from mer_lib import media

    paths = []
    t = np.arange(int(seconds * rate)) / rate
    for actor in actors:
        for emotion in emotions:
            for repetition in repetitions:
                pitch = 120 + 40 * emotion + 7 * actor + 3 * repetition
                tone = 0.3 * np.sin(2 * np.pi * pitch * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
                path = root / f"Actor_{actor:02d}" / f"03-01-{emotion:02d}-01-01-{repetition:02d}-{actor:02d}.wav"
                paths.append(media.write_wav(path, tone.astype(np.float32), rate))
    return paths


@pytest.fixture()
def tone_clips():
    """The writer of tiny RAVDESS-named audio clips (`write_tone_clips`), for tests that build a data folder."""
    return write_tone_clips


def _tone(seconds: float, rate: int, level: float = 0.3):
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _encode_audio(container, stream, signal, rate: int) -> None:
    """Encode mono float `signal` at `rate` into the audio `stream` of `container`."""
    import av

    size = stream.codec_context.frame_size or 1152
    convert = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate, frame_size=size)
    for start in range(0, len(signal), size):
        frame = av.AudioFrame.from_ndarray(signal[None, start:start + size], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        for piece in convert.resample(frame):
            container.mux(stream.encode(piece))
    container.mux(stream.encode(None))


def write_media(path: Path, seconds: float = 2.0, audio_level: float = 0.3) -> Path:
    """A short clip in the container its suffix names, as the datasets ship them: wav (PCM), mp3 (LAME,
    with its Info length header), mp4 (H.264 + AAC, index first as web videos are) or flv (FLV1 + mp3).
    Video frames are grey (no face); the audio is a 220 Hz tone (`audio_level` 0: digital silence)."""
    import av
    import numpy as np

    from mer_lib import media

    path.parent.mkdir(parents=True, exist_ok=True)
    fps, grey = 10, np.full((int(seconds * 10), 64, 64, 3), 128, np.uint8)
    if path.suffix == ".wav":
        return media.write_wav(path, _tone(seconds, 16000, audio_level), 16000)
    if path.suffix == ".mp4":  # media.write_av, then remuxed with the index (moov) at the front
        plain = media.write_av(path.with_suffix(".plain.mp4"), grey, fps, _tone(seconds, 16000, audio_level), 16000)
        with av.open(str(plain)) as source, av.open(str(path), "w", options={"movflags": "faststart"}) as out:
            streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
            for packet in source.demux():
                if packet.dts is not None:
                    packet.stream = streams[packet.stream.index]
                    out.mux(packet)
        plain.unlink()
        return path
    with av.open(str(path), "w", format=path.suffix[1:]) as out:
        video = out.add_stream("flv1", rate=fps) if path.suffix == ".flv" else None
        audio = out.add_stream("libmp3lame", rate=22050, layout="mono")
        if video is not None:
            video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
            for index, image in enumerate(grey):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
                frame.pts = index
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
        _encode_audio(out, audio, _tone(seconds, 22050, audio_level), 22050)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut `path` to its first `keep` share of bytes, as an interrupted copy or download would."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


@pytest.fixture()
def media_files():
    """(write_media, truncate): writers of small media files in each container the project reads."""
    return write_media, truncate
