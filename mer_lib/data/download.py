"""Download RAVDESS (Zenodo) and CREMA-D (GitHub, Git LFS): verified, resumable, safely extracted.

Checksums are never written into this file; each comes from the source itself:
- RAVDESS: Zenodo's records API (``https://zenodo.org/api/records/<id>``) lists every file's
  ``key``, ``size``, ``checksum`` (``md5:<hex>``) and download link. Record 1188976 holds the
  per-actor speech videos (``Video_Speech_Actor_01.zip`` ...), the audio-only speech
  (``Audio_Speech_Actors_01-24.zip``) and the song zips; record 3255102 the per-frame OpenFace
  tracking (``FacialTracking_Actors_01-24.zip``). Files are chosen by patterns over that listing.
- CREMA-D: the GitHub tree API lists the repository's paths with their git blob ids; each path's
  raw content (raw.githubusercontent.com) is either a Git LFS pointer carrying ``oid sha256:<hex>``
  and ``size`` (the media then comes from media.githubusercontent.com) or, for small plain files,
  the file itself, checked against its git blob id.

Each file goes through mer_lib.remote (resumable, verified, moved into place atomically; shared with
the pretrained weights). Listings are saved under ``<dest>/.download/`` and extracted archives
recorded there, so a rerun verifies what is present and touches the network only for what is
missing.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import re
import stat
import urllib.parse
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path, PureWindowsPath

from tqdm.auto import tqdm

from mer_lib.artifacts import read_json, write_json
from mer_lib.data.cremad import SOURCES as CREMAD_SOURCES
from mer_lib.errors import MerError
from mer_lib.remote import (
    CHECKSUMS,
    PARTIAL_DIR,
    NetworkError,
    RemoteFile,
    describe,
    fetch_file,
    get_bytes,
    get_json,
    host,
    partial_path,
    prune,
)

ZENODO_API = "https://zenodo.org/api"
RAVDESS_RECORD = "1188976"
OPENFACE_RECORD = "3255102"
GITHUB_API = "https://api.github.com"
GITHUB_RAW = "https://raw.githubusercontent.com"
GITHUB_MEDIA = "https://media.githubusercontent.com/media"
CREMAD_REPO = "CheyneyComputerScience/CREMA-D"
CREMAD_BRANCH = "master"

STATE_DIR = ".download"
LFS_SPEC = b"version https://git-lfs.github.com/spec/v1"

@dataclass(frozen=True)
class ZenodoPart:
    """A selectable part of a Zenodo record: which file keys (a regular expression) go where."""

    record: str
    pattern: str
    into: str  # folder under the destination the archives are extracted into ("" = itself)


# The speech and song video zips unpack to Actor_XX/; the audio zips are unpacked into a folder
# named after them (the layout of data/README.md), the OpenFace tracking into openface/.
RAVDESS_PARTS = {
    "video_speech": ZenodoPart(RAVDESS_RECORD, r"Video_Speech_Actor_\d+\.zip", ""),
    "audio_speech": ZenodoPart(RAVDESS_RECORD, r"Audio_Speech_Actors_[\d-]+\.zip", "Audio_Speech_Actors_01-24"),
    "video_song": ZenodoPart(RAVDESS_RECORD, r"Video_Song_Actor_\d+\.zip", ""),
    "audio_song": ZenodoPart(RAVDESS_RECORD, r"Audio_Song_Actors_[\d-]+\.zip", "Audio_Song_Actors_01-24"),
}
OPENFACE_PART = ZenodoPart(OPENFACE_RECORD, r"FacialTracking_Actors?_[\d-]+\.zip", "openface")
RAVDESS_DEFAULT_PARTS = ("video_speech", "audio_speech")

CREMAD_METADATA = ("VideoDemographics.csv", "processedResults/summaryTable.csv", "SentenceFilenames.csv")
CREMAD_PARTS = (*CREMAD_SOURCES, "metadata")
CREMAD_DEFAULT_PARTS = ("VideoFlash", "AudioWAV", "metadata")


# --- archives ---------------------------------------------------------------------------------

def _check_member(archive: Path, member: zipfile.ZipInfo) -> None:
    """Refuse a zip member that would land outside the extraction folder (zip slip) or is a symbolic link.

    Python's zipfile writes a link's target path as a plain file; a dataset archive has no links, so
    one means a damaged or crafted archive.
    """
    name = member.filename
    posix = name.replace("\\", "/")
    if posix.startswith("/") or PureWindowsPath(name).drive or ".." in posix.split("/"):
        raise MerError(f"{archive.name}: refusing to extract member {name!r} "
                       "(absolute path or '..' would write outside the destination)")
    if stat.S_ISLNK(member.external_attr >> 16):
        raise MerError(f"{archive.name}: refusing to extract member {name!r} (a symbolic link: a dataset archive "
                       "holds files and folders only); nothing was extracted")


def extract_zip(archive: str | os.PathLike, into: str | os.PathLike) -> int:
    """Extract `archive` into the folder `into` after checking every member; the number of files.

    Every member is checked before anything is written, so an unsafe archive extracts nothing.
    macOS resource-fork folders (``__MACOSX/``) are left out.
    """
    archive = Path(archive)
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist() if not m.filename.startswith("__MACOSX/")]
            for member in members:
                _check_member(archive, member)
            zipped.extractall(into, members)
    except zipfile.BadZipFile as error:
        raise MerError(f"{archive}: not a valid zip archive ({error}); delete it and download again") from error
    return sum(not member.is_dir() for member in members)


# --- listings ---------------------------------------------------------------------------------

def list_zenodo(record: str, api_url: str | None = None) -> list[RemoteFile]:
    """Every file of Zenodo record `record` with its size, checksum and download link, per the API."""
    api_url = (api_url or ZENODO_API).rstrip("/")
    answer = get_json(f"{api_url}/records/{record}")
    files = []
    for entry in answer.get("files") or []:
        algorithm, _, digest = entry.get("checksum", "").partition(":")
        if algorithm not in CHECKSUMS:
            raise MerError(f"Zenodo record {record}: unexpected checksum {entry.get('checksum')!r} "
                           f"for {entry.get('key')}")
        links = entry.get("links", {})
        url = links.get("content") or links.get("self") or \
            f"{api_url}/records/{record}/files/{urllib.parse.quote(entry['key'])}/content"
        files.append(RemoteFile(entry["key"], url, entry.get("size"), **{algorithm: digest}))
    if not files:
        raise MerError(f"Zenodo record {record} lists no files ({api_url}/records/{record})")
    return files


def list_github_tree(repo: str = CREMAD_REPO, branch: str = CREMAD_BRANCH,
                     api_url: str | None = None) -> dict[str, str]:
    """Path -> git blob id for every file of `repo` at `branch` (GitHub's recursive tree API)."""
    url = f"{(api_url or GITHUB_API).rstrip('/')}/repos/{repo}/git/trees/{branch}?recursive=1"
    answer = get_json(url)
    if answer.get("truncated"):
        raise MerError(f"GitHub returned a truncated file list for {repo}; clone it with `git lfs clone` instead")
    return {entry["path"]: entry["sha"] for entry in answer.get("tree", []) if entry.get("type") == "blob"}


def _git_blob_id(content: bytes) -> str:
    """The id git gives a file's content: sha1 of ``blob <size>\\0<content>``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def resolve_lfs(path: str, blob_id: str, repo: str = CREMAD_REPO, branch: str = CREMAD_BRANCH,
                raw_url: str | None = None, media_url: str | None = None) -> RemoteFile:
    """Where `path` of `repo` comes from and its sha256: from its LFS pointer, or its plain content.

    The raw content is first checked against the tree's git blob id, so a damaged pointer is
    caught. A plain (non-LFS) file gets the sha256 of that checked content.
    """
    quoted = urllib.parse.quote(path)
    raw = f"{(raw_url or GITHUB_RAW).rstrip('/')}/{repo}/{branch}/{quoted}"
    content = get_bytes(raw)
    if _git_blob_id(content) != blob_id:
        raise MerError(f"{path}: content from {host(raw)} does not match its git blob id {blob_id}")
    if not content.startswith(LFS_SPEC):
        return RemoteFile(path, raw, len(content), sha256=hashlib.sha256(content).hexdigest())
    fields = dict(line.split(" ", 1) for line in content.decode().splitlines() if " " in line)
    oid, size = fields.get("oid", ""), fields.get("size", "")
    if not oid.startswith("sha256:") or not size.isdigit():
        raise MerError(f"{path}: malformed Git LFS pointer (oid {oid!r}, size {size!r})")
    media = f"{(media_url or GITHUB_MEDIA).rstrip('/')}/{repo}/{branch}/{quoted}"
    return RemoteFile(path, media, int(size), sha256=oid.removeprefix("sha256:"))


# --- the datasets -----------------------------------------------------------------------------

def _parallel(task: Callable, items: Sequence, workers: int, desc: str) -> tuple[list, list[str]]:
    """Run `task` over `items` on a thread pool with one progress bar; (results, error messages).

    An unreachable host stops everything at once (every other file would fail the same way);
    other errors (a checksum mismatch, a missing file) are collected so the rest still arrives.
    """
    results, errors = [], []
    with ThreadPoolExecutor(max(1, workers)) as pool, \
            tqdm(total=len(items), desc=desc, unit="file", disable=None) as bar:
        futures = [pool.submit(task, item) for item in items]
        try:
            for future in as_completed(futures):
                try:
                    results.append(future.result())
                except NetworkError:
                    raise
                except MerError as error:
                    errors.append(str(error))
                bar.update()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results, errors


def _raise_failures(errors: list[str], total: int) -> None:
    if errors:
        raise MerError(f"{len(errors)} of {total} files failed (verified files are kept; rerun to retry); "
                       f"first: {errors[0]}")


def _zenodo_listing(dest: Path, record: str, api_url: str | None) -> list[RemoteFile]:
    """The record's listing, saved under dest on first use so reruns verify against the same one."""
    saved = dest / STATE_DIR / f"zenodo-{record}.json"
    if saved.is_file():
        return [RemoteFile(**entry) for entry in read_json(saved)]
    files = list_zenodo(record, api_url)
    write_json(saved, [asdict(file) for file in files])
    return files


def _wanted_actor(key: str, actors: set[int] | None) -> bool:
    """Per-actor archives are filtered by `actors`; archives of all actors are always wanted."""
    match = re.search(r"_Actor_(\d+)\.zip$", key)
    return actors is None or match is None or int(match[1]) in actors


def select_ravdess(listings: dict[str, list[RemoteFile]], parts: Iterable[str],
                   actors: Iterable[int] | None = None) -> list[tuple[RemoteFile, ZenodoPart]]:
    """The archives of `parts` (keys of RAVDESS_PARTS, or "openface") in the record listings."""
    wanted = None if actors is None else {int(actor) for actor in actors}
    chosen = []
    for name in parts:
        part = OPENFACE_PART if name == "openface" else RAVDESS_PARTS[name]
        files = [f for f in listings[part.record]
                 if re.fullmatch(part.pattern, f.name) and _wanted_actor(f.name, wanted)]
        if not files:
            raise MerError(f"Zenodo record {part.record} lists no archive for {name} (pattern {part.pattern}, "
                           f"actors {sorted(wanted) if wanted else 'all'})")
        chosen += [(file, part) for file in files]
    return chosen


def _install_archive(file: RemoteFile, dest: Path, into: str, keep_archives: bool) -> str | None:
    """Fetch, verify and extract one archive unless ``.download/extracted.json`` records it already.

    Returns what was done, or None when it was skipped. The record is written only after a whole
    extraction, so an interrupted one is redone on the next run.
    """
    marker = dest / STATE_DIR / "extracted.json"
    extracted = read_json(marker) if marker.is_file() else {}
    if file.name in extracted and extracted[file.name] == file.md5:
        return None
    archive = dest / file.name
    status = fetch_file(file, archive, partial_path(dest, file.name))
    count = extract_zip(archive, dest / into)
    write_json(marker, extracted | {file.name: file.md5})
    if not keep_archives:
        archive.unlink()
    return f"{describe(status, file)}; extracted {count} files into {dest / into}"


def download_ravdess(dest: str | os.PathLike, openface: bool = True,
                     parts: Sequence[str] = RAVDESS_DEFAULT_PARTS, actors: Iterable[int] | None = None,
                     keep_archives: bool = False, api_url: str | None = None) -> Path:
    """Download and extract RAVDESS into `dest`: the `parts` (see RAVDESS_PARTS), OpenFace tracking.

    `actors` (e.g. ``[1, 2]``) limits the per-actor archives. Each archive is md5-verified against
    Zenodo's listing, extracted, recorded in ``.download/extracted.json`` and then deleted unless
    `keep_archives`; a rerun skips recorded archives without a request.
    """
    unknown = sorted(set(parts) - set(RAVDESS_PARTS))
    if unknown:
        raise MerError(f"unknown RAVDESS part(s) {', '.join(unknown)}; choose from {', '.join(RAVDESS_PARTS)}")
    dest = Path(dest)
    names = [*parts, "openface"] if openface else list(parts)
    records = {OPENFACE_RECORD if name == "openface" else RAVDESS_PARTS[name].record for name in names}
    listings = {record: _zenodo_listing(dest, record, api_url) for record in sorted(records)}
    chosen = select_ravdess(listings, names, actors)
    counts = Counter()
    for index, (file, part) in enumerate(chosen, 1):
        outcome = _install_archive(file, dest, part.into, keep_archives)
        counts["extracted" if outcome else "skipped"] += 1
        print(f"[{index}/{len(chosen)}] {file.name}: {outcome or 'already extracted, skipped'}")
    prune(dest / PARTIAL_DIR)
    print(f"RAVDESS in {dest}: {counts['extracted']} archives downloaded and extracted, "
          f"{counts['skipped']} already extracted")
    return dest


def _cremad_selected(path: str, parts: Iterable[str]) -> bool:
    return any(path in CREMAD_METADATA if part == "metadata"
               else path.startswith(f"{part}/") and path.endswith(CREMAD_SOURCES[part]) for part in parts)


def _cremad_listing(dest: Path, parts: Sequence[str], workers: int, api_url: str | None,
                    raw_url: str | None, media_url: str | None) -> list[RemoteFile]:
    """The selected CREMA-D files with their sha256, resolved once and saved under dest.

    Resolving means one small request per file (its LFS pointer); what was resolved is saved even
    when a run stops half-way, so the next run asks only for the rest.
    """
    saved = dest / STATE_DIR / "cremad.json"
    state = read_json(saved) if saved.is_file() else {}
    if "blobs" not in state:
        state = {"blobs": list_github_tree(CREMAD_REPO, CREMAD_BRANCH, api_url), "files": {}}
        write_json(saved, state)
    paths = sorted(p for p in state["blobs"] if _cremad_selected(p, parts))
    for part in parts:
        if not any(_cremad_selected(p, [part]) for p in paths):
            raise MerError(f"the CREMA-D repository lists no file for {part}")
    todo = [p for p in paths if p not in state["files"]]
    if todo:
        def resolve(path: str) -> None:
            file = resolve_lfs(path, state["blobs"][path], CREMAD_REPO, CREMAD_BRANCH, raw_url, media_url)
            state["files"][path] = asdict(file)

        try:
            _, errors = _parallel(resolve, todo, workers, "CREMA-D checksums")
        finally:
            write_json(saved, state)
        _raise_failures(errors, len(todo))
    return [RemoteFile(**state["files"][p]) for p in paths]


def download_cremad(dest: str | os.PathLike, parts: Sequence[str] = CREMAD_DEFAULT_PARTS, workers: int = 4,
                    api_url: str | None = None, raw_url: str | None = None,
                    media_url: str | None = None) -> Path:
    """Download CREMA-D's `parts` (VideoFlash, AudioWAV, AudioMP3, metadata) into `dest`, verified.

    Files keep their repository paths (``VideoFlash/1001_DFA_ANG_XX.flv``, ...). Each is checked
    against the sha256 of its Git LFS pointer; `workers` threads download at once under one bar.
    """
    unknown = sorted(set(parts) - set(CREMAD_PARTS))
    if unknown:
        raise MerError(f"unknown CREMA-D part(s) {', '.join(unknown)}; choose from {', '.join(CREMAD_PARTS)}")
    dest = Path(dest)
    files = _cremad_listing(dest, parts, workers, api_url, raw_url, media_url)

    def get(file: RemoteFile) -> str:
        return fetch_file(file, dest / file.name, partial_path(dest, file.name), bar=False)

    statuses, errors = _parallel(get, files, workers, "CREMA-D files")
    prune(dest / PARTIAL_DIR)
    counts = Counter(statuses)
    print(f"CREMA-D in {dest}: {counts['downloaded'] + counts['resumed']} files downloaded "
          f"({counts['resumed']} resumed), {counts['present']} already present (skipped); "
          f"{len(statuses)} sha256 verified")
    _raise_failures(errors, len(files))
    return dest


def download(dataset: str, dest: str | os.PathLike, openface: bool = True, **options) -> Path:
    """Download `dataset` ("ravdess" or "cremad") into `dest`; `options` go to its downloader.

    `openface` (RAVDESS only) adds the per-frame OpenFace tracking. See download_ravdess and
    download_cremad for the options (parts, actors, workers, and the base URLs).
    """
    downloaders = {"ravdess": download_ravdess, "cremad": download_cremad}
    if dataset not in downloaders:
        raise MerError(f"unknown dataset {dataset!r}; choose from {', '.join(downloaders)}")
    if dataset == "ravdess":
        options["openface"] = openface
    valid = set(inspect.signature(downloaders[dataset]).parameters) - {"dest"}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise MerError(f"unknown option(s) for {dataset}: {', '.join(unknown)} (valid: {', '.join(sorted(valid))})")
    return downloaders[dataset](dest, **options)
