"""RAVDESS file names and folder scan (Livingstone & Russo 2018, PLoS ONE 13(5):e0196391).

Every RAVDESS file is named ``MM-VV-EE-II-SS-RR-AA.ext``: modality (01 audio-video, 02 video-only,
03 audio-only), vocal channel (01 speech, 02 song), emotion (01..08), intensity (01 normal,
02 strong), statement (01 "Kids are talking by the door", 02 "Dogs are sitting by the door"),
repetition (01, 02) and actor (01..24; odd actors are male, even female).

The three modality files of one performance share everything but the modality field, so the
manifest keys a clip by its *recording id* ``VV-EE-II-SS-RR-AA`` and merges whichever of the
audio-video, video-only and audio-only files exist. A user who has only the audio-only release
(``Audio_Speech_Actors_01-24``) therefore gets one audio-only row per recording.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mer_lib.errors import MerError
from mer_lib.paths import files_under

CLASSES = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
MODALITIES = {"01": "audio-video", "02": "video-only", "03": "audio-only"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
MEDIA_SUFFIXES = (".mp4", ".wav")
_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


@dataclass(frozen=True)
class RavdessName:
    """The seven fields of a RAVDESS file name, decoded."""

    modality: str
    vocal_channel: str
    emotion: str
    intensity: str
    statement: str
    repetition: int
    actor: int

    @property
    def sex(self) -> str:
        return "male" if self.actor % 2 else "female"

    @property
    def label(self) -> int:
        return CLASSES.index(self.emotion)


def parse_name(name: str) -> RavdessName:
    """Decode a RAVDESS stem or file name (``03-01-05-02-01-02-12.wav``); MerError if it is not one."""
    stem = Path(name).name.split(".")[0]
    match = _NAME.match(stem)
    if not match:
        raise MerError(f"{name}: not a RAVDESS name (expected MM-VV-EE-II-SS-RR-AA, e.g. 03-01-05-02-01-02-12.wav)")
    mm, vv, ee, ii, ss, rr, aa = match.groups()
    checks = [(mm, MODALITIES, "modality"), (vv, VOCAL_CHANNELS, "vocal channel"),
              (ii, INTENSITIES, "intensity"), (ss, STATEMENTS, "statement")]
    for code, table, field in checks:
        if code not in table:
            raise MerError(f"{name}: unknown RAVDESS {field} code {code}")
    if not 1 <= int(ee) <= len(CLASSES):
        raise MerError(f"{name}: unknown RAVDESS emotion code {ee} (01..08)")
    if rr not in ("01", "02") or int(aa) < 1:
        raise MerError(f"{name}: bad RAVDESS repetition {rr} or actor {aa}")
    return RavdessName(MODALITIES[mm], VOCAL_CHANNELS[vv], CLASSES[int(ee) - 1], INTENSITIES[ii],
                       ss, int(rr), int(aa))


def recording_id(name: str) -> str:
    """The id shared by the modality files of one performance: the name without its modality field."""
    parse_name(name)
    return Path(name).name.split(".")[0][3:]


def scan(root: str | Path) -> tuple[list[dict], list[dict]]:
    """Group the media under `root` by recording id.

    Returns (clips, rejected): each clip is a dict of the parsed fields plus ``video_path`` (an
    audio-video file if present, else video-only) and ``audio_path`` (the audio-only wav if present,
    else the audio-video file); `rejected` lists files whose names are not RAVDESS names, with why.
    """
    clips: dict[str, dict] = {}
    rejected = []
    for path in files_under(root, MEDIA_SUFFIXES):
        try:
            fields = parse_name(path.name)
        except MerError as err:
            rejected.append({"path": str(path), "reason": str(err).split(": ", 1)[1]})
            continue
        rid = recording_id(path.name)
        clip = clips.setdefault(rid, {"id": rid, "actor": fields.actor, "sex": fields.sex,
                                      "emotion": fields.emotion, "label": fields.label,
                                      "intensity": fields.intensity, "statement": fields.statement,
                                      "repetition": fields.repetition,
                                      "vocal_channel": fields.vocal_channel, "files": {}})
        clip["files"][fields.modality] = str(path.resolve())
    for clip in clips.values():
        files = clip.pop("files")
        clip["video_path"] = files.get("audio-video") or files.get("video-only")
        clip["audio_path"] = files.get("audio-only") or files.get("audio-video")
    return list(clips.values()), rejected
