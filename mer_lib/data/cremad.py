"""CREMA-D file names, metadata and folder scan (Cao et al. 2014, IEEE Trans. Affective Computing 5(4)).

Clips are named ``AAAA_SSS_EEE_LL`` (actor 1001..1091, one of 12 sentences, emotion ANG/DIS/FEA/
HAP/NEU/SAD, level LO/MD/HI/XX). The release ships the same clip as ``AudioWAV/*.wav`` (16 kHz),
``AudioMP3/*.mp3`` and ``VideoFlash/*.flv`` (video with its own MP3 track); the manifest merges
whichever exist into one row per clip id. ``VideoDemographics.csv`` (per actor) and
``summaryTable.csv`` (human votes per modality, from the perception study) are joined in, so later
notebooks can set the model beside human raters.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mer_lib.errors import MerError
from mer_lib.paths import files_under

CLASSES = ("neutral", "happy", "sad", "angry", "fearful", "disgust")
EMOTIONS = {"NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry", "FEA": "fearful", "DIS": "disgust"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES = {
    "IEO": "It's eleven o'clock", "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting", "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full", "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock", "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket", "ITS": "I think I've seen this before",
    "TSI": "The surface is slick", "WSI": "We'll stop in a couple of minutes",
}
# Files of the public release that are known to be unusable (reported in the CREMA-D repository's
# issue tracker, issue 8): recorded as skipped with the reason instead of feeding silence or junk.
KNOWN_BAD = {
    "1076_MTI_NEU_XX": "known bad in the release: audio does not play, video has no sound",
    "1076_MTI_SAD_XX": "known bad in the release: silent audio, video shows no face",
    "1064_TIE_SAD_XX": "known bad in the release: media has no duration",
    "1064_IEO_DIS_MD": "known bad in the release: 61 s long and mixes several emotions",
}
SOURCES = {"AudioWAV": ".wav", "AudioMP3": ".mp3", "VideoFlash": ".flv"}
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def parse_name(name: str) -> dict:
    """Decode a CREMA-D clip id or file name (``1001_DFA_ANG_XX.flv``); MerError if it is not one."""
    stem = Path(name).name.split(".")[0]
    match = _NAME.match(stem)
    if not match or match[2] not in SENTENCES or match[3] not in EMOTIONS or match[4] not in LEVELS:
        raise MerError(f"{name}: not a CREMA-D name (expected AAAA_SSS_EEE_LL, e.g. 1001_DFA_ANG_XX.flv)")
    emotion = EMOTIONS[match[3]]
    return {"id": stem, "actor": int(match[1]), "statement": match[2], "emotion": emotion,
            "label": CLASSES.index(emotion), "intensity": LEVELS[match[4]]}


def _find(root: Path, filename: str) -> Path | None:
    """The metadata file `filename` at the root, under processedResults/, or anywhere below."""
    for candidate in (root / filename, root / "processedResults" / filename):
        if candidate.is_file():
            return candidate
    return next(iter(sorted(root.rglob(filename))), None)


def demographics(root: Path) -> pd.DataFrame | None:
    """Per-actor age, sex, race, ethnicity from VideoDemographics.csv, or None when absent."""
    path = _find(root, "VideoDemographics.csv")
    if path is None:
        return None
    frame = pd.read_csv(path).rename(columns={"ActorID": "actor", "Age": "age", "Sex": "sex",
                                              "Race": "race", "Ethnicity": "ethnicity"})
    frame["sex"] = frame["sex"].str.lower()
    return frame


def human_votes(root: Path) -> pd.DataFrame | None:
    """Per-clip human perception (vote and agreement level for voice, face, multimodal), or None."""
    path = _find(root, "summaryTable.csv")
    if path is None:
        return None
    frame = pd.read_csv(path)
    frame = frame.loc[:, ~frame.columns.str.startswith("Unnamed")]
    names = {"FileName": "id", "VoiceVote": "human_voice_vote", "VoiceLevel": "human_voice_level",
             "FaceVote": "human_face_vote", "FaceLevel": "human_face_level",
             "MultiModalVote": "human_av_vote", "MultiModalLevel": "human_av_level"}
    return frame.rename(columns=names)[list(names.values())]


def scan(root: str | Path) -> tuple[list[dict], list[dict]]:
    """One clip per id with ``video_path`` (FLV) and ``audio_path`` (WAV, else MP3, else the FLV).

    Returns (clips, rejected) like mer_lib.data.ravdess.scan. Actor demographics and human votes
    are joined in when their CSVs are found.
    """
    root = Path(root)
    found: dict[str, dict[str, str]] = {}
    rejected = []
    for folder, suffix in SOURCES.items():
        for path in files_under(root, (suffix,)):
            try:
                clip_id = parse_name(path.name)["id"]
            except MerError as err:
                rejected.append({"path": str(path), "reason": str(err).split(": ", 1)[1]})
                continue
            found.setdefault(clip_id, {})[folder] = str(path.resolve())
    clips = []
    for clip_id, files in sorted(found.items()):
        clip = parse_name(clip_id) | {"repetition": 1, "vocal_channel": "speech"}
        clip["video_path"] = files.get("VideoFlash")
        clip["audio_path"] = files.get("AudioWAV") or files.get("AudioMP3") or files.get("VideoFlash")
        clips.append(clip)
    return _join_metadata(clips, root), rejected


def _join_metadata(clips: list[dict], root: Path) -> list[dict]:
    """Add demographics (per actor) and human votes (per clip) where the CSVs exist."""
    if not clips:
        return clips
    frame = pd.DataFrame(clips)
    demo = demographics(root)
    frame = frame.merge(demo, on="actor", how="left") if demo is not None else frame.assign(sex=None)
    votes = human_votes(root)
    if votes is not None:
        frame = frame.merge(votes, on="id", how="left")
    return frame.astype(object).where(frame.notna(), None).to_dict("records")
