"""mer_lib.media: write/read round trips, frame and time selection, resampling, real codecs, bad input."""
from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest
import soundfile as sf

from mer_lib import media
from mer_lib.errors import MerError

FPS, N_FRAMES, WIDTH, HEIGHT = 25, 30, 64, 48
SR, TONE_HZ = 48000, 440.0


def _frames(n: int = N_FRAMES) -> np.ndarray:
    """Frames whose left half is red with a brightness that encodes the frame index; right half blue."""
    frames = np.zeros((n, HEIGHT, WIDTH, 3), np.uint8)
    frames[:, :, : WIDTH // 2, 0] = (20 + 6 * np.arange(n))[:, None, None]
    frames[:, :, WIDTH // 2:, 2] = 200
    return frames


def _frame_index(frame: np.ndarray) -> int:
    """Read back the index _frames encoded (red level at the centre of the left half)."""
    height, width = frame.shape[:2]
    red = frame[height // 4: 3 * height // 4, width // 8: 3 * width // 8, 0].mean()
    return int(round((red - 20) / 6))


def _tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def _peak_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * rate / len(audio))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 1.2 s H.264 + AAC clip: 30 frames at 25 fps, 64x48, a 440 Hz tone at 48 kHz."""
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    return media.write_av(path, _frames(), FPS, _tone(TONE_HZ, N_FRAMES / FPS, SR), SR)


@pytest.fixture(scope="module")
def video_only(tmp_path_factory):
    return media.write_av(tmp_path_factory.mktemp("media") / "silent.mp4", _frames(10), FPS)


# ---- writing and round trips ----------------------------------------------------------------

def test_probe_after_write_av(clip):
    info = media.probe(clip)
    assert info.has_video and info.has_audio
    assert info.duration == pytest.approx(N_FRAMES / FPS, abs=0.05)
    assert info.fps == pytest.approx(FPS)
    assert (info.width, info.height, info.n_frames) == (WIDTH, HEIGHT, N_FRAMES)
    assert (info.sample_rate, info.channels) == (SR, 1)


def test_read_video_round_trip(clip):
    frames, times = media.read_video(clip)
    assert frames.shape == (N_FRAMES, HEIGHT, WIDTH, 3) and frames.dtype == np.uint8
    assert times.dtype == np.float64
    np.testing.assert_allclose(times, np.arange(N_FRAMES) / FPS, atol=1e-6)
    assert [_frame_index(f) for f in frames] == list(range(N_FRAMES))
    # RGB channel order: blue right half stays blue.
    right = frames[:, HEIGHT // 4: 3 * HEIGHT // 4, 5 * WIDTH // 8: 7 * WIDTH // 8].mean(axis=(0, 1, 2))
    assert right[2] > 180 and right[0] < 30 and right[1] < 30


def test_read_audio_round_trip_recovers_tone(clip):
    audio, rate = media.read_audio(clip)
    assert rate == SR and audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == int(N_FRAMES / FPS * SR)  # AAC's padding of the last frame is trimmed
    assert _peak_hz(audio, rate) == pytest.approx(TONE_HZ, abs=2)
    assert np.sqrt(np.mean(audio[2000:-2000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    assert np.abs(audio).max() <= 1.0


def test_write_av_is_deterministic_and_takes_an_iterator(clip, tmp_path):
    again = media.write_av(tmp_path / "again.mp4", iter(list(_frames())), FPS,
                           _tone(TONE_HZ, N_FRAMES / FPS, SR), SR)
    assert again.read_bytes() == clip.read_bytes()


def test_write_av_leaves_no_temp_file_on_error(tmp_path):
    with pytest.raises(MerError, match="width and height must be even"):
        media.write_av(tmp_path / "odd.mp4", np.zeros((3, 47, 64, 3), np.uint8), FPS)
    with pytest.raises(MerError, match="differs from the first frame"):
        sizes = [np.zeros((48, 64, 3), np.uint8), np.zeros((32, 64, 3), np.uint8)]
        media.write_av(tmp_path / "mixed.mp4", sizes, FPS)
    with pytest.raises(MerError, match="no frames"):
        media.write_av(tmp_path / "empty.mp4", [], FPS)
    assert list(tmp_path.iterdir()) == []


def test_write_wav_is_16_bit_pcm(tmp_path):
    audio = _tone(1000, 0.5, 16000)
    path = media.write_wav(tmp_path / "tone.wav", audio, 16000)
    info = sf.info(path)
    assert (info.subtype, info.samplerate, info.channels, info.frames) == ("PCM_16", 16000, 1, len(audio))
    back, rate = media.read_audio(path)
    assert rate == 16000 and np.abs(back - audio).max() < 1 / 16000


# ---- selection: step, size, time range, resampling, channels ----------------------------------

def test_read_video_gives_the_same_frames_on_one_decoding_thread(clip):
    frames, times = media.read_video(clip)
    one, one_times = media.read_video(clip, threads=1)
    np.testing.assert_array_equal(one, frames)
    np.testing.assert_array_equal(one_times, times)


def test_read_ahead_gives_the_reader_s_pieces_and_stops_with_its_consumer(clip):
    with media.Reader(clip, sample_rate=16000) as reader:
        direct = list(reader)
    with media.Reader(clip, sample_rate=16000) as reader:
        ahead = list(media.read_ahead(reader, size=2))
    assert [(kind, time) for kind, _, time in ahead] == [(kind, time) for kind, _, time in direct]
    assert all(np.array_equal(a[1], d[1]) for a, d in zip(ahead, direct))
    threads = threading.active_count()
    with media.Reader(clip, sample_rate=16000) as reader, contextlib.closing(media.read_ahead(reader, 2)) as pieces:
        next(pieces)
    assert threading.active_count() == threads  # the producer, waiting for room, was stopped


def test_reader_pieces_without_video_are_the_audio_pieces(clip):
    with media.Reader(clip, sample_rate=16000) as reader:
        audio = [(time, data) for kind, data, time in reader if kind == "audio"]
    with media.Reader(clip, sample_rate=16000) as reader:
        alone = list(reader.pieces(video=False))
    assert [kind for kind, _, _ in alone] == ["audio"] * len(audio)
    assert [time for _, _, time in alone] == [time for time, _ in audio]
    np.testing.assert_array_equal(np.concatenate([d for _, d, _ in alone]), np.concatenate([d for _, d in audio]))
    with media.Reader(clip, audio=False) as reader:
        assert list(reader.pieces(video=False)) == []


def test_read_ahead_raises_the_producer_s_error_where_the_sequence_breaks_off():
    def pieces():
        yield from (1, 2)
        raise MerError("broken")

    got = []
    with pytest.raises(MerError, match="broken"):
        for piece in media.read_ahead(pieces()):
            got.append(piece)
    assert got == [1, 2]


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def test_luma_frames_are_the_grey_of_the_rgb_frames(clip):
    rgb, times = media.read_video(clip)
    luma, luma_times = media.read_video(clip, colour="luma")
    assert luma.shape == rgb.shape[:3] and luma.dtype == np.uint8
    np.testing.assert_array_equal(luma_times, times)
    error = np.abs(media.full_range(luma) - _grey(rgb))  # grey levels; chroma subsampling rounds at the edge
    assert error.mean() < 1.0 and error.max() <= 6
    frames, _, _ = _read_all(clip, colour="luma")  # the reader gives the same frames
    np.testing.assert_array_equal(frames, luma)
    small, _ = media.read_video(clip, step=4, max_side=32, colour="luma")
    assert small.shape == (8, 24, 32)
    assert media.read_video(clip, start=5.0, colour="luma")[0].shape == (0, HEIGHT, WIDTH)


@pytest.mark.parametrize("options", [{"format": "yuv420p"}, {"format": "yuv420p", "dst_color_range": 2},
                                     {"format": "yuvj420p"}, {"format": "yuv444p"}, {"format": "nv12"},
                                     {"format": "yuv420p10le"}, {"format": "rgb24"}, {"format": "gray"}])
def test_luma_is_at_video_levels_whatever_the_pixel_format(options):
    """Black and white come out at 16 and 235 (full-range "yuvj" and JPEG-range frames are converted),
    and a grey ramp as the grey of its RGB."""
    import av

    ramp = np.repeat(np.linspace(0, 255, 64).round().astype(np.uint8)[None, :, None], 48, axis=0).repeat(3, axis=2)
    ramp[:, :8], ramp[:, -8:] = 0, 255
    frame = av.VideoFrame.from_ndarray(ramp, format="rgb24").reformat(**options)
    luma = media.video_luma(frame)
    assert luma.shape == (48, 64) and luma[:, :8].max() == 16 and luma[:, -8:].min() == 235
    assert np.abs(media.full_range(luma) - _grey(ramp)).max() <= 2
    assert media.video_luma(frame, 32, 24).shape == (24, 32)


def test_read_video_step_and_max_side(clip):
    frames, times = media.read_video(clip, step=4, max_side=32)
    assert frames.shape == (8, 24, 32, 3)  # frames 0, 4, ..., 28; 64x48 shrunk to 32x24
    assert [_frame_index(f) for f in frames] == list(range(0, N_FRAMES, 4))
    np.testing.assert_allclose(times, np.arange(0, N_FRAMES, 4) / FPS, atol=1e-6)


def test_read_video_time_range_matches_full_decode(clip):
    full, full_times = media.read_video(clip)
    frames, times = media.read_video(clip, start=0.4, end=0.8)
    assert [_frame_index(f) for f in frames] == list(range(10, 20))
    np.testing.assert_array_equal(frames, full[(full_times >= 0.4) & (full_times < 0.8)])
    late, _ = media.read_video(clip, start=5.0)
    assert late.shape == (0, HEIGHT, WIDTH, 3)


def test_read_audio_time_range(tmp_path):
    ramp = np.linspace(-1, 1, 16000, dtype=np.float32)
    path = media.write_wav(tmp_path / "ramp.wav", ramp, 8000)
    audio, rate = media.read_audio(path, start=0.5, end=1.25)
    assert rate == 8000 and len(audio) == 6000
    np.testing.assert_allclose(audio, ramp[4000:10000], atol=1 / 16000)


def test_resampling_keeps_frequency_and_length(tmp_path):
    tone = _tone(1000, 1.0, 48000)
    path = media.write_wav(tmp_path / "tone48k.wav", tone, 48000)
    audio, rate = media.read_audio(path, sample_rate=16000)
    assert rate == 16000 and audio.dtype == np.float32 and len(audio) == 16000
    assert _peak_hz(audio, rate) == pytest.approx(1000, abs=1)
    np.testing.assert_allclose(audio[100:-100], _tone(1000, 1.0, 16000)[100:-100], atol=1e-3)


def test_stereo_downmix(tmp_path):
    left, right = _tone(300, 0.5, 16000), np.full(8000, 0.25, np.float32)
    path = media.write_wav(tmp_path / "stereo.wav", np.stack([left, right]), 16000)
    both, _ = media.read_audio(path, mono=False)
    mono, _ = media.read_audio(path)
    assert both.shape == (2, 8000) and mono.shape == (8000,)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1 / 16000)


# ---- phone and webcam recordings: containers, rotation, variable frame rate, streaming ---------

def _read_all(path, sample_rate=16000, **options) -> tuple[np.ndarray, list[float], np.ndarray]:
    """Everything media.Reader yields for `path`: the frames, their times and the audio joined."""
    with media.Reader(path, sample_rate, **options) as reader:
        items = list(reader)
    frames = [data for kind, data, _ in items if kind == "video"]
    times = [time for kind, _, time in items if kind == "video"]
    audio = [data for kind, data, _ in items if kind == "audio"]
    return np.array(frames), times, np.concatenate(audio) if audio else np.zeros(0, np.float32)


@pytest.mark.parametrize("suffix, rate", [(".mp4", 44100), (".mov", 22050), (".mkv", 44100), (".flv", 44100),
                                          (".webm", 48000)])
def test_reader_gives_what_the_whole_file_reads_give(suffix, rate, tmp_path):
    stereo = np.stack([_tone(TONE_HZ, 1.0, rate), _tone(2 * TONE_HZ, 1.0, rate, 0.3)])
    path = media.write_av(tmp_path / f"clip{suffix}", _frames(), FPS, stereo, rate)
    assert media.probe(path).channels == 2
    frames, times, audio = _read_all(path)
    whole, whole_times = media.read_video(path)
    np.testing.assert_array_equal(frames, whole)
    np.testing.assert_allclose(times, whole_times)
    np.testing.assert_allclose(audio, media.read_audio(path, sample_rate=16000)[0], atol=1e-6)
    assert [_frame_index(f) for f in frames] == list(range(N_FRAMES))


@pytest.mark.parametrize("suffix, channels, rate", [(".mp3", 2, 44100), (".m4a", 1, 32000), (".wav", 6, 22050)])
def test_reader_on_audio_files_of_any_rate_and_channels(suffix, channels, rate, tmp_path):
    sound = np.stack([_tone(TONE_HZ * (c + 1), 1.0, rate, 0.1) for c in range(channels)])
    path = media.write_audio(tmp_path / f"voice{suffix}", sound, rate)
    assert (media.probe(path).channels, media.probe(path).sample_rate) == (channels, rate)
    frames, _, audio = _read_all(path)
    assert len(frames) == 0
    np.testing.assert_allclose(audio, media.read_audio(path, sample_rate=16000)[0], atol=1e-6)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_turns_frames_upright(rotation, tmp_path):
    upright = np.zeros((N_FRAMES, 64, 48, 3), np.uint8)  # a portrait picture, a white mark at its top left
    upright[:, :8, :8] = 255
    stored = np.rot90(upright, -rotation // 90, axes=(1, 2))  # as the camera's sensor recorded it
    path = media.write_av(tmp_path / "phone.mp4", stored, FPS, rotation=rotation)
    frames, _ = media.read_video(path)
    assert frames.shape == upright.shape
    assert frames[:, :8, :8].mean() > 200 and frames[:, -8:, -8:].mean() < 30
    np.testing.assert_array_equal(_read_all(path)[0], frames)
    luma, _ = media.read_video(path, colour="luma")
    assert luma.shape == upright.shape[:3] and luma[:, :8, :8].mean() > 200 and luma[:, -8:, -8:].mean() < 30


def test_variable_frame_rate_keeps_each_frame_time(tmp_path):
    times = np.cumsum(np.r_[0, np.random.default_rng(0).uniform(0.02, 0.09, N_FRAMES - 1)])
    path = media.write_av(tmp_path / "webcam.mkv", _frames(), FPS, times=times)
    frames, read_times = media.read_video(path)
    assert [_frame_index(f) for f in frames] == list(range(N_FRAMES))
    np.testing.assert_allclose(read_times, times, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resample_is_scipys_default_polyphase_filter(dtype):
    from scipy.signal import resample_poly

    signal = (0.3 * np.random.default_rng(1).normal(size=(2, 4410))).astype(dtype)
    expected = np.clip(resample_poly(signal, 160, 441, axis=-1), -1.0, 1.0).astype(np.float32)
    for _ in range(2):  # the filter is designed once and reused unchanged
        np.testing.assert_array_equal(media.resample(signal, 44100, 16000), expected)


@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (22050, 16000), (8000, 16000), (16000, 16000)])
def test_stream_resampler_equals_resampling_the_whole_signal(rates):
    rng = np.random.default_rng(1)
    signal = (0.3 * rng.standard_normal(rates[0] + 123)).astype(np.float32)
    resampler, pieces, offset = media.StreamResampler(*rates), [], 0
    while offset < len(signal):
        size = int(rng.integers(1, 3000))
        pieces.append(resampler.push(signal[offset:offset + size]))
        offset += size
    pieces.append(resampler.flush())
    np.testing.assert_allclose(np.concatenate(pieces), media.resample(signal, *rates), atol=1e-7)


def test_rewrite_video_draws_on_every_frame_and_keeps_the_audio(clip, tmp_path):
    def black_top(image, time):
        image = image.copy()
        image[:8] = 0
        return image

    path = media.rewrite_video(clip, tmp_path / "drawn.mp4", black_top)
    frames, times = media.read_video(path)
    original, original_times = media.read_video(clip)
    np.testing.assert_allclose(times, original_times, atol=1e-3)
    assert frames[:, :8].max() < 30  # what was drawn
    assert np.abs(frames[:, 8:].astype(float) - original[:, 8:]).mean(axis=(1, 2, 3)).max() < 3  # the rest as it was
    audio, rate = media.read_audio(path)
    assert rate == SR and _peak_hz(audio, rate) == pytest.approx(TONE_HZ, abs=2)


def test_capture_device_errors_are_one_line(tmp_path):
    with pytest.raises(MerError, match=r"nodevice: cannot open capture device with format 'v4l2'"):
        media.Reader(str(tmp_path / "nodevice"), format="v4l2")
    with pytest.raises(MerError, match="cannot open capture device with format 'nosuchformat'"):
        media.Reader("0", format="nosuchformat")


# ---- real media -----------------------------------------------------------------------------

def test_ravdess_stereo_wavs_read_as_mono(real_data):
    wavs = sorted((real_data / "ravdess" / "audio" / "Actor_01").glob("*.wav"))
    stereo = [p for p in wavs if sf.info(p).channels == 2]
    assert len(stereo) == 2
    for path in stereo:
        reference, rate = sf.read(path, dtype="float32")
        audio, got_rate = media.read_audio(path)
        assert got_rate == rate == 48000 and audio.shape == (len(reference),)
        np.testing.assert_allclose(audio, reference.mean(axis=1), atol=1e-6)
        assert media.probe(path).channels == 2


def test_cremad_flv_decodes(real_data):
    path = sorted((real_data / "cremad" / "VideoFlash").glob("*.flv"))[0]
    info = media.probe(path)
    assert info.has_video and info.has_audio
    assert (info.width, info.height, info.sample_rate) == (480, 360, 44100)
    assert info.fps == pytest.approx(29.97, abs=0.01)
    frames, times = media.read_video(path, step=10)
    assert frames.shape == (-(-info.n_frames // 10), 360, 480, 3)
    assert np.all(np.diff(times) == pytest.approx(10 / 29.97, abs=0.002))
    assert frames.std() > 10  # a real picture, not a blank frame
    full, full_times = media.read_video(path)
    part, _ = media.read_video(path, start=0.5, end=1.0)  # FLV cannot seek: decoded from the start
    np.testing.assert_array_equal(part, full[(full_times >= 0.5) & (full_times < 1.0)])
    assert len(part) == 15
    audio, rate = media.read_audio(path)
    assert rate == 44100 and len(audio) / rate == pytest.approx(info.duration, abs=0.1)
    assert 0.01 < np.sqrt(np.mean(audio ** 2)) < 0.5


def test_cremad_mp3_decodes(real_data):
    for path in sorted((real_data / "cremad" / "AudioMP3").glob("*.mp3")):
        info = media.probe(path)
        assert info.has_audio and not info.has_video and info.sample_rate == 44100
        native, native_rate = media.read_audio(path)
        audio, rate = media.read_audio(path, sample_rate=16000)
        assert native_rate == 44100 and rate == 16000
        assert len(native) / native_rate == pytest.approx(info.duration, abs=0.03)
        assert len(audio) == -(-len(native) * 160 // 441)  # ceil: resample_poly keeps the last partial sample
        rms = lambda x: float(np.sqrt(np.mean(x ** 2)))  # noqa: E731  speech energy lies below 8 kHz
        assert rms(native) > 1e-3 and rms(audio) == pytest.approx(rms(native), rel=0.05)


def test_truncated_flv_returns_the_frames_before_the_cut(real_data, tmp_path):
    source = sorted((real_data / "cremad" / "VideoFlash").glob("*.flv"))[0]
    cut = tmp_path / "cut.flv"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(MerError, match=r"cut\.flv: cannot read media \(truncated: data ends at"):
        media.probe(cut)
    frames, times = media.read_video(cut)
    assert 0 < len(frames) < media.probe(source).n_frames and times[-1] < 1.5


# ---- bad input ------------------------------------------------------------------------------

def test_truncated_mp4(clip, tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    for read in (media.probe, media.read_video, media.read_audio):
        with pytest.raises(MerError, match=r"cut\.mp4: cannot read media \(Invalid data"):
            read(cut)


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".mp4", ".flv"])
def test_truncation_is_found_the_same_way_in_every_container(media_files, tmp_path, suffix):
    write_media, truncate = media_files
    whole = write_media(tmp_path / f"clip{suffix}", seconds=2.0)
    assert media.probe(whole).duration == pytest.approx(2.0, abs=0.06)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes())
    with pytest.raises(MerError, match=rf"cut\{suffix}: cannot read media \(truncated: data ends at [01]\.\d\d s "
                                       rf"of [12]\.\d\d s\)"):
        media.probe(truncate(cut))


def test_wav_without_samples(tmp_path):
    path = media.write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    for read in (media.probe, media.read_audio):
        with pytest.raises(MerError, match=r"empty\.wav: cannot read media \(no audio samples\)"):
            read(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for read in (media.probe, media.read_video, media.read_audio):
        with pytest.raises(MerError, match=r"noise\.mp4: cannot read media \(Invalid data found"):
            read(path)


def test_missing_and_empty_files(tmp_path):
    empty = tmp_path / "zero.mp4"
    empty.touch()
    for read in (media.probe, media.read_video, media.read_audio):
        with pytest.raises(MerError, match=r"nope\.wav: cannot read media \(no such file\)"):
            read(tmp_path / "nope.wav")
        with pytest.raises(MerError, match=r"zero\.mp4: cannot read media \(empty file\)"):
            read(empty)


def test_missing_stream(video_only, tmp_path):
    info = media.probe(video_only)
    assert info.has_video and not info.has_audio and info.sample_rate is None
    with pytest.raises(MerError, match=r"silent\.mp4: no audio stream"):
        media.read_audio(video_only)
    wav = media.write_wav(tmp_path / "voice.wav", _tone(200, 0.2, 16000), 16000)
    with pytest.raises(MerError, match=r"voice\.wav: no video stream"):
        media.read_video(wav)


def test_bad_arguments(clip):
    with pytest.raises(MerError, match="step and max_side must be positive"):
        media.read_video(clip, step=0)
    with pytest.raises(MerError, match="unknown frame colour 'grey' \\(choose from rgb, luma\\)"):
        media.Reader(clip, colour="grey")
    with pytest.raises(MerError, match="invalid time range"):
        media.read_audio(clip, start=1.0, end=0.5)
