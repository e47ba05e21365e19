"""Fetch one file over HTTP: resumable, verified, moved into place atomically; and the file hasher.

The base of every download in the library: datasets (mer_lib.data.download) and pretrained weights
(mer_lib.weights) both go through `fetch`, and every file checksum is `file_digest`. A file streams to
``<folder>/.partial/<name>.part`` (the ``.part`` suffix keeps dataset scanners from mistaking it for
media) and resumes with an HTTP Range request; a server that ignores Range answers 200 and the file
restarts cleanly. Only a file whose size and digests match moves into place; a mismatch deletes it
and says so. Only urllib is used.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from mer_lib.errors import MerError

TIMEOUT_S = 60  # a connection silent this long counts as lost (the partial file is kept)
CHUNK = 1 << 20
USER_AGENT = "mer_lib-download/0.1 (python urllib)"  # GitHub's API refuses requests without one
PARTIAL_DIR = ".partial"
CHECKSUMS = ("sha256", "md5")


class NetworkError(MerError):
    """A host could not be reached: every further request would fail the same way."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: its path under the destination, its URL, and what it must match."""

    name: str
    url: str
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None


# --- HTTP -------------------------------------------------------------------------------------

def host(url: str) -> str:
    """The host name of `url`, as messages name it."""
    return urllib.parse.urlsplit(url).netloc


def _unreachable(url: str, error: BaseException) -> NetworkError:
    """The one-line error for a failed connection or an interrupted transfer."""
    reason = " ".join(str(getattr(error, "reason", error)).split()) or type(error).__name__
    return NetworkError(f"cannot reach {host(url)} ({reason}): check your internet connection; "
                        "downloads resume where they stopped")


def _open(url: str, offset: int = 0):
    """GET `url` (from byte `offset` on, with a Range header, when it is not 0); the response.

    A 416 answer means the partial file is already whole or stale: the file is asked for again
    from the start, and the caller sees a plain 200 as from a server that ignores Range.
    """
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            return _open(url)
        hint = " (rate limit or bandwidth quota: try again later)" if error.code in (403, 429) else ""
        raise MerError(f"{host(url)} answered HTTP {error.code} {error.reason} for {url}{hint}") from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _unreachable(url, error) from error


def _chunks(response, url: str) -> Iterable[bytes]:
    """The body of `response` in chunks; a broken transfer becomes a NetworkError."""
    while True:
        try:
            chunk = response.read(CHUNK)
        except (OSError, http.client.HTTPException) as error:
            raise _unreachable(url, error) from error
        if not chunk:
            return
        yield chunk


def get_bytes(url: str) -> bytes:
    """The whole body of `url` (small answers: listings, pointers)."""
    with _open(url) as response:
        return b"".join(_chunks(response, url))


def get_json(url: str):
    """The JSON answer of `url`; MerError when it is not JSON."""
    try:
        return json.loads(get_bytes(url))
    except json.JSONDecodeError as error:
        raise MerError(f"{url} did not answer with JSON ({error})") from error


# --- checksums -------------------------------------------------------------------------------

_SHA256: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file under `algorithm` (hashlib's name: sha256, md5), read in blocks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file that stays in place (weights read again and again), memoised per (path,
    size, mtime). Downloads are verified with `file_digest`: a partial file can be rewritten within
    one tick of the file system's clock."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        _SHA256[key] = file_digest(path)
    return _SHA256[key]


# --- one verified, resumable file -------------------------------------------------------------

def partial_path(root: str | os.PathLike, name: str) -> Path:
    """Where `name` (a path relative to `root`) streams to before it is verified."""
    return Path(root) / PARTIAL_DIR / f"{name}.part"


def _mismatch(path: Path, file: RemoteFile) -> tuple[str, str, str] | None:
    """(what, expected, actual) for the first of size, sha256, md5 that `path` fails; else None."""
    if file.size is not None and path.stat().st_size != file.size:
        return "size", str(file.size), str(path.stat().st_size)
    for algorithm in CHECKSUMS:
        expected = getattr(file, algorithm)
        if expected:
            actual = file_digest(path, algorithm)
            if actual != expected.lower():
                return algorithm, expected.lower(), actual
    return None


def _stream(file: RemoteFile, partial: Path, bar: bool) -> str:
    """Append the rest of `file` to `partial` (or rewrite it whole); "resumed" or "downloaded"."""
    offset = partial.stat().st_size if partial.is_file() else 0
    if file.size is not None and offset > file.size:
        offset = 0
    with _open(file.url, offset) as response:
        resumed = offset > 0 and response.status == 206
        start = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = file.size or (start + int(length) if length else None)
        with open(partial, "ab" if resumed else "wb") as out, \
                tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=Path(file.name).name, disable=None if bar else True, leave=False) as progress:
            for chunk in _chunks(response, file.url):
                out.write(chunk)
                progress.update(len(chunk))
    return "resumed" if resumed else "downloaded"


def fetch_file(file: RemoteFile, dest_path: Path, partial: Path, bar: bool = True) -> str:
    """Make `dest_path` hold `file`, verified; "present", "resumed" or "downloaded".

    A file already in place that matches is left alone without any request. A partial file of the
    full published size is only verified (an earlier run stopped just before moving it).
    """
    if dest_path.is_file() and _mismatch(dest_path, file) is None:
        return "present"
    partial.parent.mkdir(parents=True, exist_ok=True)
    complete = file.size is not None and partial.is_file() and partial.stat().st_size == file.size
    status = "resumed" if complete else _stream(file, partial, bar)
    problem = _mismatch(partial, file)
    if problem:
        partial.unlink()
        what, expected, actual = problem
        raise MerError(f"{file.name}: {what} mismatch (expected {expected}, got {actual}); the corrupt "
                       "download was deleted, run the command again to retry")
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, dest_path)
    return status


def describe(status: str, file: RemoteFile) -> str:
    """What happened to one file, for the user: downloaded / resumed / skipped, and what was verified."""
    checks = [algorithm for algorithm in CHECKSUMS if getattr(file, algorithm)]
    verified = f"{'+'.join(checks)} verified" if checks else "no published checksum to verify"
    return {"present": f"already present, {verified}, skipped",
            "downloaded": f"downloaded, {verified}",
            "resumed": f"resumed, {verified}"}[status]


def prune(folder: Path) -> None:
    """Remove `folder` and its subfolders where they are empty (leftovers of finished partials)."""
    if folder.is_dir():
        for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
            with suppress(OSError):
                sub.rmdir()
        with suppress(OSError):
            folder.rmdir()


def fetch(url: str, dest_path: str | os.PathLike, sha256: str | None = None, md5: str | None = None,
          size: int | None = None) -> Path:
    """Download `url` to `dest_path`, resuming a partial download and verifying what is given.

    Streams to ``<folder>/.partial/<name>.part`` and moves the file into place only once its size,
    sha256 and md5 (those that are given) match; a file already in place that matches is kept
    without a request. Raises MerError on a mismatch (naming the file, expected and actual value;
    the bad download is deleted), an HTTP error, or an unreachable host.
    """
    dest_path = Path(dest_path)
    file = RemoteFile(dest_path.name, url, size, md5, sha256)
    status = fetch_file(file, dest_path, partial_path(dest_path.parent, dest_path.name))
    prune(dest_path.parent / PARTIAL_DIR)
    print(f"{dest_path}: {describe(status, file)}")
    return dest_path
