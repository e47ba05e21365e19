"""RAVDESS and CREMA-D names, scans and metadata."""
from __future__ import annotations

import pytest

from mer_lib.data import cremad, ravdess
from mer_lib.errors import MerError


def test_ravdess_name_fields():
    name = ravdess.parse_name("03-01-05-02-01-02-12.wav")
    assert (name.modality, name.vocal_channel, name.emotion, name.intensity) == (
        "audio-only", "speech", "angry", "strong")
    assert (name.statement, name.repetition, name.actor, name.sex, name.label) == ("01", 2, 12, "female", 4)
    assert ravdess.parse_name("01-02-08-01-02-01-07.mp4").sex == "male"
    assert ravdess.parse_name("02-02-01-01-01-01-01").modality == "video-only"


@pytest.mark.parametrize("bad, why", [
    ("03-01-09-01-01-01-01.wav", "emotion code 09"),
    ("04-01-01-01-01-01-01.wav", "modality code 04"),
    ("03-01-01-03-01-01-01.wav", "intensity code 03"),
    ("03-01-01-01-01-01.wav", "not a RAVDESS name"),
    ("hello.wav", "not a RAVDESS name"),
])
def test_ravdess_bad_names(bad, why):
    with pytest.raises(MerError, match=why):
        ravdess.parse_name(bad)


def test_ravdess_recording_id_drops_modality():
    assert ravdess.recording_id("03-01-05-02-01-02-12.wav") == ravdess.recording_id("01-01-05-02-01-02-12.mp4")


def test_ravdess_scan_merges_modalities(tmp_path):
    for name in ["Actor_03/01-01-03-01-01-01-03.mp4", "Actor_03/02-01-03-01-01-01-03.mp4",
                 "audio/Actor_03/03-01-03-01-01-01-03.wav", "Actor_03/02-01-04-01-01-01-03.mp4",
                 "Actor_03/notes.wav"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    clips, rejected = ravdess.scan(tmp_path)
    by_id = {c["id"]: c for c in clips}
    assert set(by_id) == {"01-03-01-01-01-03", "01-04-01-01-01-03"}
    happy = by_id["01-03-01-01-01-03"]
    assert happy["video_path"].endswith("01-01-03-01-01-01-03.mp4")
    assert happy["audio_path"].endswith("03-01-03-01-01-01-03.wav")
    sad = by_id["01-04-01-01-01-03"]
    assert sad["video_path"].endswith("02-01-04-01-01-01-03.mp4") and sad["audio_path"] is None
    assert [r["path"].endswith("notes.wav") for r in rejected] == [True]


def test_cremad_name_fields():
    clip = cremad.parse_name("1001_DFA_ANG_XX.flv")
    assert clip == {"id": "1001_DFA_ANG_XX", "actor": 1001, "statement": "DFA", "emotion": "angry",
                    "label": cremad.CLASSES.index("angry"), "intensity": "unspecified"}
    assert cremad.parse_name("1091_IEO_HAP_HI")["intensity"] == "high"
    for bad in ["1001_XYZ_ANG_XX.wav", "1040_ITH_SAD_X.wav", "1001_DFA_JOY_XX.wav"]:
        with pytest.raises(MerError, match="not a CREMA-D name"):
            cremad.parse_name(bad)


def test_cremad_scan_merges_sources_and_metadata(tmp_path):
    for name in ["AudioWAV/1001_DFA_ANG_XX.wav", "AudioMP3/1001_DFA_ANG_XX.mp3", "VideoFlash/1001_DFA_ANG_XX.flv",
                 "AudioMP3/1002_IEO_SAD_LO.mp3", "VideoFlash/1003_TIE_HAP_HI.flv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "VideoDemographics.csv").write_text(
        '"ActorID","Age","Sex","Race","Ethnicity"\n1001,51,"Male","Caucasian","Not Hispanic"\n'
        '1002,21,"Female","Asian","Not Hispanic"\n')
    (tmp_path / "processedResults").mkdir()
    (tmp_path / "processedResults" / "summaryTable.csv").write_text(
        '"","FileName","VoiceVote","VoiceLevel","FaceVote","FaceLevel","MultiModalVote","MultiModalLevel"\n'
        '"1","1001_DFA_ANG_XX","A","80","A:D","50","A","90"\n')
    clips, rejected = cremad.scan(tmp_path)
    by_id = {c["id"]: c for c in clips}
    assert rejected == [] and set(by_id) == {"1001_DFA_ANG_XX", "1002_IEO_SAD_LO", "1003_TIE_HAP_HI"}
    ang = by_id["1001_DFA_ANG_XX"]
    assert ang["audio_path"].endswith(".wav") and ang["video_path"].endswith(".flv")
    assert (ang["sex"], ang["age"], ang["human_face_vote"], ang["human_av_level"]) == ("male", 51, "A:D", 90)
    assert by_id["1002_IEO_SAD_LO"]["audio_path"].endswith(".mp3")
    assert by_id["1002_IEO_SAD_LO"]["video_path"] is None
    hap = by_id["1003_TIE_HAP_HI"]
    assert hap["audio_path"] == hap["video_path"] and hap["sex"] is None


def test_cremad_real_metadata(real_data):
    demo = cremad.demographics(real_data / "cremad")
    votes = cremad.human_votes(real_data / "cremad")
    assert len(demo) == 91 and set(demo["sex"]) == {"male", "female"}
    assert len(votes) == 7442 and votes["id"].is_unique
    assert set(votes.columns) >= {"human_voice_vote", "human_face_vote", "human_av_vote"}
