"""The dataset downloader against a local HTTP server: Zenodo and GitHub/LFS stand-ins, resume,
servers that ignore Range, checksum mismatches, reruns without requests, unreachable hosts, zip slip."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import socket
import stat
import threading
import urllib.parse
import zipfile

import pytest

from mer_lib import cli, remote
from mer_lib.data import cremad, download, ravdess
from mer_lib.errors import MerError


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.routes` (path -> bytes), records each request, honours Range if asked."""

    timeout = 5  # seconds a connection may stay silent: the server never hangs a test

    def do_GET(self):
        server = self.server
        path = urllib.parse.urlsplit(self.path).path
        rng = self.headers.get("Range")
        server.requests.append((path, rng))
        body = server.routes.get(path)
        if body is None:
            self.send_error(404)
            return
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        start = int(match[1]) if match and server.honour_range else 0
        if start >= len(body) > 0:
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A threaded server on 127.0.0.1 with `routes`, `requests`, `honour_range` and `url`."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.routes, httpd.requests, httpd.honour_range = {}, [], True
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(tag: str, size: int = 50_000) -> bytes:
    """Deterministic, incompressible-looking bytes, distinct per tag."""
    blocks = (hashlib.sha256(f"{tag}{i}".encode()).digest() for i in range(size // 32 + 1))
    return b"".join(blocks)[:size]


def make_zip(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A zip of `members` (name -> bytes) and of symbolic links (name -> target) as Unix zip tools store them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
            zipped.writestr(info, target)
    return buffer.getvalue()


# --- fake Zenodo ------------------------------------------------------------------------------

AV = "01-01-03-01-01-01-{:02d}.mp4"
WAV = "03-01-03-01-01-01-{:02d}.wav"
CSV = "01-01-03-01-01-01-{:02d}.csv"


def ravdess_archives() -> dict[str, dict[str, dict[str, bytes]]]:
    """record -> archive name -> members, in the layouts of the real zips."""
    video = {f"Video_Speech_Actor_{a:02d}.zip": {f"Actor_{a:02d}/{AV.format(a)}": payload(f"av{a}")}
             for a in (1, 2)}
    song = {"Video_Song_Actor_01.zip": {"Actor_01/01-02-03-01-01-01-01.mp4": payload("song")}}
    audio = {"Audio_Speech_Actors_01-24.zip": {f"Actor_{a:02d}/{WAV.format(a)}": payload(f"wav{a}")
                                               for a in (1, 2)}}
    tracking = {"FacialTracking_Actors_01-24.zip": {f"Actor_01/{CSV.format(1)}": b"frame,timestamp\n1,0.0\n"}}
    return {"1188976": video | song | audio, "3255102": tracking}


def serve_zenodo(server, records: dict[str, dict[str, bytes]]) -> str:
    """Route a records API answer (key, size, md5 checksum, link) and the files; the API base URL."""
    for record, archives in records.items():
        entries = []
        for key, data in archives.items():
            link = f"/api/records/{record}/files/{key}/content"
            server.routes[link] = data
            entries.append({"key": key, "size": len(data), "checksum": f"md5:{hashlib.md5(data).hexdigest()}",
                            "links": {"self": server.url + link}})
        server.routes[f"/api/records/{record}"] = json.dumps({"id": int(record), "files": entries}).encode()
    return server.url + "/api"


@pytest.fixture
def zenodo(server):
    """The server answering as Zenodo for RAVDESS and its tracking; yields (server, api URL, zips)."""
    archives = {record: {key: make_zip(members) for key, members in files.items()}
                for record, files in ravdess_archives().items()}
    return server, serve_zenodo(server, archives), archives


def requested(server, fragment: str) -> list[tuple[str, str | None]]:
    return [r for r in server.requests if fragment in r[0]]


def test_ravdess_download_extracts_into_the_layout_the_scanner_reads(zenodo, tmp_path, capsys):
    server, api, archives = zenodo
    dest = download.download("ravdess", tmp_path / "raw", api_url=api)
    members = ravdess_archives()
    assert (dest / "Actor_02" / AV.format(2)).read_bytes() == members["1188976"]["Video_Speech_Actor_02.zip"][
        f"Actor_02/{AV.format(2)}"]
    assert (dest / "Audio_Speech_Actors_01-24" / "Actor_01" / WAV.format(1)).is_file()
    assert (dest / "openface" / "Actor_01" / CSV.format(1)).read_text().startswith("frame,timestamp")
    assert not list(dest.glob("*.zip")) and not (dest / ".partial").exists()
    assert not requested(server, "Song")  # song archives only when asked for
    clips, rejected = ravdess.scan(dest)
    assert rejected == [] and {c["id"] for c in clips} == {"01-03-01-01-01-01", "01-03-01-01-01-02"}
    assert all(c["audio_path"].endswith(".wav") and c["video_path"].endswith(".mp4") for c in clips)
    out = capsys.readouterr().out
    assert "Video_Speech_Actor_01.zip: downloaded, md5 verified; extracted 1 files" in out
    assert "4 archives downloaded and extracted, 0 already extracted" in out


def test_ravdess_rerun_skips_extracted_archives_without_any_request(zenodo, tmp_path, capsys):
    server, api, _ = zenodo
    download.download("ravdess", tmp_path / "raw", api_url=api)
    before = len(server.requests)
    download.download("ravdess", tmp_path / "raw", api_url=api)
    assert len(server.requests) == before
    assert "0 archives downloaded and extracted, 4 already extracted" in capsys.readouterr().out


def test_ravdess_selects_actors_parts_and_openface(zenodo, tmp_path):
    server, api, _ = zenodo
    dest = download.download("ravdess", tmp_path / "raw", openface=False, api_url=api,
                             parts=("video_speech", "video_song"), actors=[1])
    assert (dest / "Actor_01" / "01-02-03-01-01-01-01.mp4").is_file() and not (dest / "Actor_02").exists()
    assert not requested(server, "3255102") and not requested(server, "Actor_02")
    assert not requested(server, "Audio_Speech")


def test_ravdess_resumes_a_partial_archive_with_a_range_request(zenodo, tmp_path):
    server, api, archives = zenodo
    dest = tmp_path / "raw"
    data = archives["1188976"]["Video_Speech_Actor_01.zip"]
    partial = remote.partial_path(dest, "Video_Speech_Actor_01.zip")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:1000])
    download.download("ravdess", dest, openface=False, api_url=api, actors=[1], parts=("video_speech",),
                      keep_archives=True)
    assert requested(server, "Video_Speech_Actor_01.zip") == [
        ("/api/records/1188976/files/Video_Speech_Actor_01.zip/content", "bytes=1000-")]
    assert (dest / "Video_Speech_Actor_01.zip").read_bytes() == data
    assert (dest / "Actor_01" / AV.format(1)).read_bytes() == payload("av1")


def test_ravdess_archive_with_a_parent_member_extracts_nothing(server, tmp_path):
    evil = make_zip({"Actor_01/ok.mp4": b"ok", "../escaped.txt": b"gotcha"})
    api = serve_zenodo(server, {"1188976": {"Video_Speech_Actor_01.zip": evil}})
    with pytest.raises(MerError, match=r"Video_Speech_Actor_01\.zip: refusing to extract member '\.\./escaped\.txt'"):
        download.download("ravdess", tmp_path / "raw", openface=False, parts=("video_speech",), api_url=api)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "raw" / "Actor_01").exists()
    assert not (tmp_path / "raw" / ".download" / "extracted.json").exists()


def test_a_symlink_in_an_archive_is_refused_before_anything_is_written(zenodo, tmp_path, monkeypatch, capsys):
    server, _, archives = zenodo
    records = {record: dict(files) for record, files in archives.items()}
    records["1188976"]["Video_Speech_Actor_02.zip"] = make_zip(
        {f"Actor_02/{AV.format(2)}": payload("av2")}, links={"Actor_02/passwd.mp4": "/etc/passwd"})
    monkeypatch.setattr(download, "ZENODO_API", serve_zenodo(server, records))
    assert cli.main(["data", "download", "ravdess", str(tmp_path / "raw"), "--no-openface"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mer: error: Video_Speech_Actor_02.zip: refusing to extract "
                                                    "member 'Actor_02/passwd.mp4' (a symbolic link")
    assert (tmp_path / "raw" / "Actor_01" / AV.format(1)).is_file()  # the archive before it stays extracted
    assert not (tmp_path / "raw" / "Actor_02").exists()


@pytest.mark.parametrize("member", ["../up.txt", "/abs/file.txt", "a/../../up.txt", "C:\\win.txt", "..\\up.txt"])
def test_extract_zip_rejects_unsafe_members(tmp_path, member):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(make_zip({"fine.txt": b"x", member: b"y"}))
    with pytest.raises(MerError, match="refusing to extract member"):
        download.extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "up.txt").exists()


def test_extract_zip_counts_files_and_leaves_out_macos_forks(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(make_zip({"Actor_01/x.wav": b"x", "Actor_01/y.wav": b"y", "__MACOSX/Actor_01/._x.wav": b""}))
    assert download.extract_zip(archive, tmp_path / "out") == 2
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == ["x.wav", "y.wav"]


def test_unknown_parts_options_and_datasets_are_one_line_errors(tmp_path):
    with pytest.raises(MerError, match="unknown dataset 'iemocap'"):
        download.download("iemocap", tmp_path)
    with pytest.raises(MerError, match="unknown option.*: worker "):
        download.download("cremad", tmp_path, worker=2)
    with pytest.raises(MerError, match="unknown RAVDESS part.*Video_Speech"):
        download.download("ravdess", tmp_path, parts=("Video_Speech",))
    with pytest.raises(MerError, match="unknown CREMA-D part.*videos"):
        download.download("cremad", tmp_path, parts=("videos",))


def test_zenodo_listing_without_a_matching_archive_is_an_error(server, tmp_path):
    api = serve_zenodo(server, {"1188976": {"README.md": b"readme"}})
    with pytest.raises(MerError, match="record 1188976 lists no archive for video_speech"):
        download.download("ravdess", tmp_path / "raw", openface=False, parts=("video_speech",), api_url=api)


# --- fetch: resume, Range ignored, mismatches, skips, unreachable hosts -------------------------

def test_fetch_resumes_with_a_range_request(server, tmp_path, capsys):
    data = payload("blob", 300_000)
    server.routes["/blob.bin"] = data
    dest = tmp_path / "cache" / "blob.bin"
    partial = remote.partial_path(dest.parent, dest.name)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:123_456])
    assert remote.fetch(f"{server.url}/blob.bin", dest, sha256=sha256(data)) == dest
    assert server.requests == [("/blob.bin", "bytes=123456-")]
    assert dest.read_bytes() == data and not partial.exists() and not partial.parent.exists()
    assert "resumed, sha256 verified" in capsys.readouterr().out


def test_fetch_restarts_cleanly_when_the_server_ignores_range(server, tmp_path):
    server.honour_range = False
    data = payload("blob", 200_000)
    server.routes["/blob.bin"] = data
    dest = tmp_path / "blob.bin"
    partial = remote.partial_path(tmp_path, "blob.bin")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:50_000])
    remote.fetch(f"{server.url}/blob.bin", dest, md5=hashlib.md5(data).hexdigest(), size=len(data))
    assert server.requests == [("/blob.bin", "bytes=50000-")]  # asked, answered 200 with everything
    assert dest.read_bytes() == data


def test_fetch_restarts_when_the_partial_file_is_already_as_long_as_the_file(server, tmp_path):
    data = payload("blob", 10_000)
    server.routes["/blob.bin"] = data
    partial = remote.partial_path(tmp_path, "blob.bin")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * len(data))  # whole length, wrong bytes, size unknown: 416, then 200
    remote.fetch(f"{server.url}/blob.bin", tmp_path / "blob.bin", sha256=sha256(data))
    assert server.requests == [("/blob.bin", f"bytes={len(data)}-"), ("/blob.bin", None)]
    assert (tmp_path / "blob.bin").read_bytes() == data


def test_fetch_checksum_mismatch_names_the_file_and_leaves_nothing_behind(server, tmp_path):
    data = payload("blob", 20_000)
    server.routes["/blob.bin"] = data
    dest = tmp_path / "blob.bin"
    wrong = sha256(b"something else")
    with pytest.raises(MerError) as error:
        remote.fetch(f"{server.url}/blob.bin", dest, sha256=wrong)
    message = str(error.value)
    assert message.startswith("blob.bin: sha256 mismatch") and wrong in message and sha256(data) in message
    assert "\n" not in message
    assert not dest.exists() and not remote.partial_path(tmp_path, "blob.bin").exists()


def test_fetch_detects_a_corrupt_partial_file_after_resuming(server, tmp_path):
    data = payload("blob", 20_000)
    server.routes["/blob.bin"] = data
    partial = remote.partial_path(tmp_path, "blob.bin")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\xff" * 5_000)  # same length as the real prefix, other bytes
    with pytest.raises(MerError, match="md5 mismatch"):
        remote.fetch(f"{server.url}/blob.bin", tmp_path / "blob.bin", md5=hashlib.md5(data).hexdigest())
    assert server.requests == [("/blob.bin", "bytes=5000-")]
    assert not partial.exists() and not (tmp_path / "blob.bin").exists()
    remote.fetch(f"{server.url}/blob.bin", tmp_path / "blob.bin", md5=hashlib.md5(data).hexdigest())
    assert (tmp_path / "blob.bin").read_bytes() == data  # the rerun starts afresh and succeeds


def test_fetch_size_mismatch_is_reported(server, tmp_path):
    server.routes["/blob.bin"] = b"short"
    with pytest.raises(MerError, match=r"blob\.bin: size mismatch \(expected 6, got 5\)"):
        remote.fetch(f"{server.url}/blob.bin", tmp_path / "blob.bin", size=6)


def test_fetch_keeps_a_verified_file_without_a_request_and_replaces_a_wrong_one(server, tmp_path, capsys):
    data = payload("blob", 5_000)
    server.routes["/blob.bin"] = data
    dest = tmp_path / "blob.bin"
    dest.write_bytes(data)
    remote.fetch(f"{server.url}/blob.bin", dest, sha256=sha256(data))
    assert server.requests == [] and "already present, sha256 verified, skipped" in capsys.readouterr().out
    dest.write_bytes(b"stale")
    remote.fetch(f"{server.url}/blob.bin", dest, sha256=sha256(data))
    assert server.requests == [("/blob.bin", None)] and dest.read_bytes() == data


def test_fetch_http_error_names_the_status(server, tmp_path):
    with pytest.raises(MerError, match=r"answered HTTP 404 .* for http://127\.0\.0\.1:\d+/missing\.bin"):
        remote.fetch(f"{server.url}/missing.bin", tmp_path / "missing.bin")
    assert not (tmp_path / "missing.bin").exists()


def test_unreachable_host_is_a_one_line_error(tmp_path, closed_port):
    with pytest.raises(MerError) as error:
        remote.fetch(f"http://127.0.0.1:{closed_port}/x.zip", tmp_path / "x.zip")
    message = str(error.value)
    assert message.startswith(f"cannot reach 127.0.0.1:{closed_port} (")
    assert message.endswith("check your internet connection; downloads resume where they stopped")
    assert "\n" not in message and "refused" in message.lower()


def test_cli_reports_an_unreachable_zenodo_on_one_line(tmp_path, closed_port, monkeypatch, capsys):
    monkeypatch.setattr(download, "ZENODO_API", f"http://127.0.0.1:{closed_port}/api")
    assert cli.main(["data", "download", "ravdess", str(tmp_path / "raw")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mer: error: cannot reach 127.0.0.1:{closed_port}") and err.count("\n") == 1


def test_cli_downloads_ravdess_from_the_configured_api(zenodo, tmp_path, monkeypatch):
    _, api, _ = zenodo
    monkeypatch.setattr(download, "ZENODO_API", api)
    assert cli.main(["data", "download", "ravdess", str(tmp_path / "raw"), "--no-openface"]) == 0
    assert (tmp_path / "raw" / "Actor_01" / AV.format(1)).is_file() and not (tmp_path / "raw" / "openface").exists()


# --- fake GitHub + Git LFS ----------------------------------------------------------------------

REPO = "/CheyneyComputerScience/CREMA-D/master/"


def blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256(data)}\nsize {len(data)}\n".encode()


def cremad_files() -> dict[str, tuple[bytes, bool]]:
    """path -> (content, stored with LFS) for a small CREMA-D repository."""
    files = {f"{folder}/{clip}{suffix}": (payload(f"{clip}{suffix}", 4_000), True)
             for folder, suffix in cremad.SOURCES.items() for clip in ("1001_DFA_ANG_XX", "1001_DFA_HAP_XX")}
    files["VideoDemographics.csv"] = (b"ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n", False)
    files["processedResults/summaryTable.csv"] = (
        b",FileName,VoiceVote,VoiceLevel,FaceVote,FaceLevel,MultiModalVote,MultiModalLevel\n"
        b"1,1001_DFA_ANG_XX,A,60,A,80,A,70\n2,1001_DFA_HAP_XX,H,50,H,90,H,80\n", True)
    files["SentenceFilenames.csv"] = (b"Stimulus_Number,Filename\n1,1001_DFA_ANG_XX\n", False)
    files["README.md"] = (b"# CREMA-D\n", False)
    return files


def serve_github(server, files: dict[str, tuple[bytes, bool]], media_override: dict[str, bytes] | None = None):
    """Route the tree API, raw contents (LFS pointers or plain files) and LFS media; the URL options."""
    tree = [{"path": "AudioWAV", "type": "tree", "sha": "0" * 40}]
    for path, (content, lfs) in files.items():
        raw = lfs_pointer(content) if lfs else content
        tree.append({"path": path, "type": "blob", "sha": blob_id(raw), "size": len(raw)})
        server.routes["/raw" + REPO + path] = raw
        if lfs:
            server.routes["/media" + REPO + path] = (media_override or {}).get(path, content)
    server.routes["/repos/CheyneyComputerScience/CREMA-D/git/trees/master"] = json.dumps(
        {"sha": "1" * 40, "tree": tree, "truncated": False}).encode()
    return {"api_url": server.url, "raw_url": server.url + "/raw", "media_url": server.url + "/media"}


def test_cremad_download_verifies_lfs_media_and_keeps_the_repository_layout(server, tmp_path, capsys):
    files = cremad_files()
    urls = serve_github(server, files)
    dest = download.download("cremad", tmp_path / "raw", workers=3, **urls)
    for path in ("VideoFlash/1001_DFA_ANG_XX.flv", "AudioWAV/1001_DFA_HAP_XX.wav",
                 "processedResults/summaryTable.csv", "VideoDemographics.csv", "SentenceFilenames.csv"):
        assert (dest / path).read_bytes() == files[path][0], path
    assert not (dest / "AudioMP3").exists() and not (dest / "README.md").exists()
    assert not requested(server, "AudioMP3") and not (dest / ".partial").exists()
    clips, rejected = cremad.scan(dest)
    assert rejected == [] and [c["id"] for c in clips] == ["1001_DFA_ANG_XX", "1001_DFA_HAP_XX"]
    assert clips[0]["age"] == 51 and clips[1]["human_face_vote"] == "H"
    assert clips[0]["audio_path"].endswith(".wav") and clips[0]["video_path"].endswith(".flv")
    assert "7 files downloaded (0 resumed), 0 already present (skipped); 7 sha256 verified" in capsys.readouterr().out


def test_cremad_rerun_makes_no_request(server, tmp_path, capsys):
    urls = serve_github(server, cremad_files())
    download.download("cremad", tmp_path / "raw", parts=("AudioWAV", "AudioMP3"), **urls)
    before = len(server.requests)
    download.download("cremad", tmp_path / "raw", parts=("AudioWAV", "AudioMP3"), **urls)
    assert len(server.requests) == before
    assert "0 files downloaded (0 resumed), 4 already present (skipped)" in capsys.readouterr().out


def test_cremad_resumes_a_partial_media_file(server, tmp_path):
    files = cremad_files()
    urls = serve_github(server, files)
    dest = tmp_path / "raw"
    partial = remote.partial_path(dest, "AudioWAV/1001_DFA_ANG_XX.wav")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(files["AudioWAV/1001_DFA_ANG_XX.wav"][0][:1_500])
    download.download("cremad", dest, parts=("AudioWAV",), **urls)
    assert requested(server, "/media" + REPO + "AudioWAV/1001_DFA_ANG_XX.wav") == [
        ("/media" + REPO + "AudioWAV/1001_DFA_ANG_XX.wav", "bytes=1500-")]
    assert (dest / "AudioWAV/1001_DFA_ANG_XX.wav").read_bytes() == files["AudioWAV/1001_DFA_ANG_XX.wav"][0]


def test_cremad_media_that_does_not_match_its_pointer_is_rejected_and_the_rest_kept(server, tmp_path):
    files = cremad_files()
    bad = "AudioWAV/1001_DFA_HAP_XX.wav"
    urls = serve_github(server, files, media_override={bad: b"an LFS quota page, not audio"})
    with pytest.raises(MerError) as error:
        download.download("cremad", tmp_path / "raw", parts=("AudioWAV",), **urls)
    message = str(error.value)
    assert message.startswith("1 of 2 files failed") and f"{bad}: size mismatch" in message
    assert f"expected {len(files[bad][0])}" in message and "\n" not in message
    assert not (tmp_path / "raw" / bad).exists() and not remote.partial_path(tmp_path / "raw", bad).exists()
    assert (tmp_path / "raw" / "AudioWAV/1001_DFA_ANG_XX.wav").is_file()


def test_resolve_lfs_reads_pointers_and_checks_blob_ids(server, tmp_path):
    files = cremad_files()
    urls = serve_github(server, files)
    path = "VideoFlash/1001_DFA_ANG_XX.flv"
    lfs = download.resolve_lfs(path, blob_id(lfs_pointer(files[path][0])), raw_url=urls["raw_url"],
                               media_url=urls["media_url"])
    assert lfs == remote.RemoteFile(path, urls["media_url"] + REPO + path, 4_000, sha256=sha256(files[path][0]))
    plain = download.resolve_lfs("README.md", blob_id(b"# CREMA-D\n"), raw_url=urls["raw_url"])
    assert plain.sha256 == sha256(b"# CREMA-D\n") and plain.url.endswith("/raw" + REPO + "README.md")
    with pytest.raises(MerError, match="does not match its git blob id " + "0" * 40):
        download.resolve_lfs(path, "0" * 40, raw_url=urls["raw_url"])


def test_list_zenodo_reads_keys_sizes_md5_and_links(zenodo):
    server, api, archives = zenodo
    listing = {f.name: f for f in download.list_zenodo("3255102", api_url=api)}
    data = archives["3255102"]["FacialTracking_Actors_01-24.zip"]
    assert listing == {"FacialTracking_Actors_01-24.zip": remote.RemoteFile(
        "FacialTracking_Actors_01-24.zip", f"{api}/records/3255102/files/FacialTracking_Actors_01-24.zip/content",
        len(data), md5=hashlib.md5(data).hexdigest())}


def test_cremad_keeps_resolved_pointers_when_one_fails_and_asks_only_for_the_rest(server, tmp_path):
    files = cremad_files()
    urls = serve_github(server, files)
    missing = "/raw" + REPO + "AudioWAV/1001_DFA_HAP_XX.wav"
    pointer = server.routes.pop(missing)
    with pytest.raises(MerError, match=r"1 of 2 files failed.*HTTP 404"):
        download.download("cremad", tmp_path / "raw", parts=("AudioWAV",), **urls)
    server.routes[missing] = pointer
    server.requests.clear()
    download.download("cremad", tmp_path / "raw", parts=("AudioWAV",), **urls)
    assert [path for path, _ in server.requests if path.startswith("/raw")] == [missing]
    assert (tmp_path / "raw" / "AudioWAV/1001_DFA_HAP_XX.wav").read_bytes() == files["AudioWAV/1001_DFA_HAP_XX.wav"][0]
