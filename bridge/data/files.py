"""Where a dataset's files live, whether they are there, and fetching them with their published checksums."""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bridge.core.paths import cache_root, write_whole
from bridge.data.config import DataConfig, DatasetError, as_config

TEST_FOLDERS = ("test", "valid", "val")  # root/train + one of these: the image folder defines its own split


@dataclass(frozen=True)
class Remote:
    """Where a dataset's canonical files are published, with the md5 of each."""

    base_url: str
    md5: dict[str, str]


IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


REMOTE = {
    "mnist": Remote(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion_mnist": Remote(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "cifar10": Remote(
        "https://www.cs.toronto.edu/~kriz/", {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}
    ),
    "cifar100": Remote(
        "https://www.cs.toronto.edu/~kriz/", {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"}
    ),
}


@dataclass(frozen=True)
class Cifar:
    """The layout of a CIFAR python tarball: its folder, the batch files of each split, the label key."""

    tarball: str
    folder: str
    batches: dict[str, tuple[str, ...]]
    label_key: str


CIFAR = {
    "cifar10": Cifar(
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        "labels",
    ),
    "cifar100": Cifar(
        "cifar-100-python.tar.gz", "cifar-100-python", {"train": ("train",), "test": ("test",)}, "fine_labels"
    ),
}


def data_root(cfg: DataConfig) -> Path:
    """`root`, or the default folder of a downloadable dataset (beside the model cache)."""
    if cfg.root is not None:
        return Path(cfg.root).expanduser()
    return cache_root() / "data" / cfg.dataset


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path, md5: str) -> Path:
    """Download `url` to `dest` and check its md5; a failed, interrupted or mismatched download leaves no file."""
    dest.parent.mkdir(parents=True, exist_ok=True)

    def download_checked(part: Path) -> None:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
        got = md5sum(part)
        if got != md5:
            raise DatasetError(f"{url}: md5 {got} is not the known {md5}; the download was discarded")

    try:
        write_whole(dest, download_checked)
    except OSError as exc:
        raise DatasetError(f"{url}: download failed ({exc})") from None
    return dest


def _absent(cfg: DataConfig) -> list[str]:
    """The canonical files a downloadable dataset still needs (a CIFAR tarball is not needed once extracted)."""
    root = data_root(cfg)
    if cfg.dataset in CIFAR:
        spec = CIFAR[cfg.dataset]
        extracted = all((root / spec.folder / b).is_file() for split in spec.batches.values() for b in split)
        return [] if extracted or (root / spec.tarball).is_file() else [spec.tarball]
    return [name for name in REMOTE[cfg.dataset].md5 if not (root / name).is_file()]


def npz_file(root: Path) -> Path | str:
    """The .npz that `root` names (the file, or the one .npz in the folder), else why there is none."""
    if root.is_file():
        return root
    if not root.is_dir():
        return f"{root} does not exist"
    found = sorted(root.glob("*.npz"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found)
        return f"{root} holds {f'several .npz files ({names})' if found else 'no .npz file'}; set data.root to one"
    return found[0]


def image_layout(root: Path) -> tuple[dict[str, Path], list[str]]:
    """The split folders ({'train': .., 'test': ..}, or {'all': root}) and the sorted class names under them."""
    test = next((root / name for name in TEST_FOLDERS if (root / name).is_dir()), None)
    bases = {"train": root / "train", "test": test} if test and (root / "train").is_dir() else {"all": root}
    classes = {d.name for base in bases.values() for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")}
    return bases, sorted(classes)


def missing(cfg: DataConfig | str) -> str | None:
    """Why the data of `cfg` is not there (one line: what to get and where to put it), or None.

    Cheap (no loading), so validation can call it before anything runs; None when `download` will fetch it.
    """
    cfg = as_config(cfg)
    root, name = data_root(cfg), cfg.dataset
    if name in REMOTE:
        absent = _absent(cfg)
        if not absent or cfg.download:
            return None
        remote = REMOTE[name]
        urls = ", ".join(f"{remote.base_url}{f} (md5 {remote.md5[f]})" for f in absent)
        return f"{name}: {root} has no {', '.join(absent)}; download {urls} into {root}, or set data.download: true"
    if name == "image_folder":
        where = (
            f"put the images in {root}/<class>/ (png, jpg, jpeg), or in {root}/train/<class>/ and {root}/test/<class>/"
        )
        if not root.is_dir():
            return f"image_folder: {root} does not exist; {where}"
        if not image_layout(root)[1]:
            return f"image_folder: {root} has no class subfolders; {where}"
    if name == "npz" and isinstance(found := npz_file(root), str):
        return f"npz: {found}; save x_train, y_train, x_test, y_test (or x, y) with numpy.savez"
    return None


def to_download(cfg: DataConfig) -> list[str]:
    """The files `run` downloads before it starts (`download: true` and not here yet); `validate` fetches nothing."""
    return _absent(cfg) if cfg.dataset in REMOTE and cfg.download else []


def download(cfg: DataConfig, log: Callable[[str], None] = print) -> None:
    """Fetch the canonical files `cfg`'s root lacks, each checked against its known md5."""
    remote, root = REMOTE[cfg.dataset], data_root(cfg)
    for name in _absent(cfg):
        log(f"downloading {remote.base_url}{name} into {root}")
        fetch(remote.base_url + name, root / name, remote.md5[name])
