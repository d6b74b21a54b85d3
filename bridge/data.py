"""Datasets: the `data:` section of a scenario, and the loaders that turn it into NCHW float32 tensors in `bounds`.

digits (sklearn's bundled 8x8 digits, no download) is the default. MNIST, Fashion-MNIST and CIFAR-10/100 are read
from their canonical distribution files (fetched and md5-checked on request); your own data comes from an image
folder or an .npz file. Splits never move with the scenario seed, so a model never sees its test samples; `select`
then draws `n_samples` from the split with that seed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import struct
import tarfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

SPLIT_SEED = 0  # the train/test split never moves with the scenario seed
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TEST_FOLDERS = ("test", "valid", "val")  # root/train + one of these: the image folder defines its own split

DATASETS = {
    "digits": "sklearn's bundled 8x8 handwritten digits (1797 images, 10 classes; no download)",
    "mnist": "MNIST 28x28 handwritten digits (60000 train / 10000 test, 10 classes; IDX files)",
    "fashion_mnist": "Fashion-MNIST 28x28 clothing images (60000 train / 10000 test, 10 classes; IDX files)",
    "cifar10": "CIFAR-10 32x32 colour images (50000 train / 10000 test, 10 classes; python tarball)",
    "cifar100": "CIFAR-100 32x32 colour images (50000 train / 10000 test, 100 fine classes; python tarball)",
    "image_folder": "your images: root/<class>/*.png|jpg|jpeg, or root/train/<class> and root/test/<class>",
    "npz": "your arrays: an .npz with x_train, y_train, x_test, y_test (or x, y), uint8 or float in [0, 1]",
}


class DatasetError(ValueError):
    """Data that cannot be loaded; str() is one line saying what is wrong and what to do."""


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
FIXED_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}

# Which options each dataset takes (a key left at its default is accepted everywhere).
APPLIES = {
    "root": ("mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder", "npz"),
    "download": tuple(REMOTE),
    "image_size": ("image_folder",),
    "grayscale": ("image_folder",),
    "test_fraction": ("image_folder", "npz"),
}


class DataConfig(BaseModel):
    """The `data:` section of a scenario: which data, which split, which samples, in which range."""

    model_config = ConfigDict(extra="forbid")

    dataset: Literal["digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder", "npz"] = "digits"
    split: Literal["train", "test"] = "test"
    n_samples: int | None = Field(default=None, gt=0)
    balanced: bool = False  # as equal a count per class as possible
    root: str | None = None  # the folder with the files (npz: the file); default $ADVBRIDGE_CACHE/data/<dataset>
    download: bool = False
    image_size: int | None = Field(default=None, gt=0)  # image_folder: resized to image_size x image_size
    grayscale: bool = False
    test_fraction: float = Field(default=0.2, gt=0, lt=1)  # data without its own test split
    bounds: tuple[float, float] = (0.0, 1.0)

    @field_validator(*APPLIES)
    @classmethod
    def _applies(cls, value: Any, info: ValidationInfo) -> Any:
        dataset, allowed = info.data.get("dataset"), APPLIES[info.field_name]
        if dataset is not None and dataset not in allowed and value != cls.model_fields[info.field_name].default:
            raise ValueError(f"only for dataset {', '.join(allowed)} (dataset is {dataset})")
        return value

    @field_validator("bounds")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not value[0] < value[1]:
            raise ValueError("the lower bound must be below the upper one")
        return value

    @model_validator(mode="after")
    def _root_given(self) -> DataConfig:
        if self.dataset in ("image_folder", "npz") and self.root is None:
            what = "the image folder" if self.dataset == "image_folder" else "the .npz file"
            raise ValueError(f"dataset {self.dataset} needs root: {what}")
        return self


@dataclass
class Dataset:
    """Inputs in `bounds`, NCHW float32, with integer labels; `fingerprint` identifies the exact samples."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    n_classes: int
    bounds: tuple[float, float] = (0.0, 1.0)
    fingerprint: str = ""  # a short hash of the exact samples (x, y) and bounds, computed when left empty

    def __post_init__(self) -> None:
        if not self.fingerprint:
            header = (str(self.x.dtype), tuple(self.x.shape), tuple(map(float, self.bounds)))
            digest = hashlib.sha256(repr(header).encode())
            digest.update(self.x.detach().cpu().contiguous().numpy().data)
            digest.update(self.y.cpu().to(torch.int64).contiguous().numpy().data)
            self.fingerprint = digest.hexdigest()[:16]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.y)


def _config(cfg: DataConfig | str) -> DataConfig:
    return DataConfig(dataset=cfg) if isinstance(cfg, str) else cfg


def data_root(cfg: DataConfig) -> Path:
    """`root`, or the default folder of a downloadable dataset (beside the model cache)."""
    if cfg.root is not None:
        return Path(cfg.root).expanduser()
    return Path(os.environ.get("ADVBRIDGE_CACHE", Path.home() / ".cache" / "advbridge")) / "data" / cfg.dataset


# --- checking, fetching --------------------------------------------------------------------------------------------


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path, md5: str) -> Path:
    """Download `url` to `dest` and check its md5; a failed download or a mismatch leaves no file behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise DatasetError(f"{url}: download failed ({exc})") from None
    got = md5sum(part)
    if got != md5:
        part.unlink()
        raise DatasetError(f"{url}: md5 {got} is not the known {md5}; the download was discarded")
    part.replace(dest)
    return dest


def _absent(cfg: DataConfig) -> list[str]:
    """The canonical files a downloadable dataset still needs (a CIFAR tarball is not needed once extracted)."""
    root = data_root(cfg)
    if cfg.dataset in CIFAR:
        spec = CIFAR[cfg.dataset]
        extracted = all((root / spec.folder / b).is_file() for split in spec.batches.values() for b in split)
        return [] if extracted or (root / spec.tarball).is_file() else [spec.tarball]
    return [name for name in REMOTE[cfg.dataset].md5 if not (root / name).is_file()]


def _npz_file(root: Path) -> Path | str:
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


def _image_layout(root: Path) -> tuple[dict[str, Path], list[str]]:
    """The split folders ({'train': .., 'test': ..}, or {'all': root}) and the sorted class names under them."""
    test = next((root / name for name in TEST_FOLDERS if (root / name).is_dir()), None)
    bases = {"train": root / "train", "test": test} if test and (root / "train").is_dir() else {"all": root}
    classes = {d.name for base in bases.values() for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")}
    return bases, sorted(classes)


def missing(cfg: DataConfig | str) -> str | None:
    """Why the data of `cfg` is not there (one line: what to get and where to put it), or None.

    Cheap (no loading), so validation can call it before anything runs; None when `download` will fetch it.
    """
    cfg = _config(cfg)
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
        if not _image_layout(root)[1]:
            return f"image_folder: {root} has no class subfolders; {where}"
    if name == "npz" and isinstance(found := _npz_file(root), str):
        return f"npz: {found}; save x_train, y_train, x_test, y_test (or x, y) with numpy.savez"
    return None


def download(cfg: DataConfig, log: Callable[[str], None] = print) -> None:
    """Fetch the canonical files `cfg`'s root lacks, each checked against its known md5."""
    remote, root = REMOTE[cfg.dataset], data_root(cfg)
    for name in _absent(cfg):
        log(f"downloading {remote.base_url}{name} into {root}")
        fetch(remote.base_url + name, root / name, remote.md5[name])


# --- readers: each returns x (N, C, H, W) as uint8, or float in [0, 1], and y int64 -------------------------------


def _digits(cfg: DataConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x, y = (bunch.images / 16.0).astype(np.float32)[:, None, :, :], bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=SPLIT_SEED)
    return (x_tr, y_tr) if split == "train" else (x_te, y_te)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """A gzipped IDX file of unsigned bytes (magic 0x0803 images, 0x0801 labels; big-endian dimensions)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable gzip file ({exc})") from None
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise DatasetError(f"{path}: IDX magic 0x{got:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: {body.size} bytes of data for dimensions {dims}")
    return body.reshape(dims)


def _mnist(cfg: DataConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = (data_root(cfg) / name for name in IDX_FILES[split])
    x, y = read_idx(images, 0x00000803), read_idx(labels, 0x00000801).astype(np.int64)
    if len(x) != len(y):
        raise DatasetError(f"{images}: {len(x)} images but {labels.name} has {len(y)} labels")
    return x[:, None], y


def _cifar_batch(f: IO[bytes], label_key: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch: data N x 3072 uint8 (CHW row-major), labels under `label_key` (bytes keys, as published)."""
    loaded = pickle.loads(f.read(), encoding="bytes")
    batch = (
        {k.decode() if isinstance(k, bytes) else k: v for k, v in loaded.items()} if isinstance(loaded, dict) else {}
    )
    if "data" not in batch or label_key not in batch:
        raise DatasetError(f"{where}: not a CIFAR batch (keys {sorted(batch)}; expected data and {label_key})")
    x = np.asarray(batch["data"], dtype=np.uint8)
    if x.ndim != 2 or x.shape[1] != 3072:
        raise DatasetError(f"{where}: data has shape {x.shape}, expected (N, 3072)")
    return x.reshape(-1, 3, 32, 32), np.asarray(batch[label_key], dtype=np.int64)


def _cifar(cfg: DataConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's batches, from the extracted folder when it is complete, else straight from the tarball."""
    spec, root = CIFAR[cfg.dataset], data_root(cfg)
    wanted = spec.batches[split]
    folder = root / spec.folder
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if all((folder / b).is_file() for b in wanted):
        for b in wanted:
            with open(folder / b, "rb") as f:
                parts[b] = _cifar_batch(f, spec.label_key, str(folder / b))
    else:
        tarball = root / spec.tarball
        try:
            with tarfile.open(tarball, "r:*") as tar:
                for member in tar:
                    batch = member.name.removeprefix(f"{spec.folder}/")
                    if batch in wanted and member.isfile():
                        parts[batch] = _cifar_batch(tar.extractfile(member), spec.label_key, f"{tarball}:{member.name}")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DatasetError(f"{tarball}: not a readable tarball ({exc})") from None
        lost = [f"{spec.folder}/{b}" for b in wanted if b not in parts]
        if lost:
            raise DatasetError(f"{tarball}: has no {', '.join(lost)}")
    xs, ys = zip(*(parts[b] for b in wanted), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def _stratified(y: np.ndarray, test_fraction: float, split: str) -> np.ndarray:
    """The indices of `split` in a fixed stratified split: a `test_fraction` share of each class is test."""
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        test[members[: int(len(members) * test_fraction + 0.5)]] = True
    return np.flatnonzero(test if split == "test" else ~test)


def _read_image(path: Path, size: int | None, grayscale: bool) -> np.ndarray:
    """One image as C x H x W uint8; 16-bit images (radiographs) keep their top 8 bits instead of clipping."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.mode.startswith("I"):
                img = Image.fromarray((np.asarray(img).astype(np.uint32).clip(0, 65535) >> 8).astype(np.uint8))
            img = img.convert("L" if grayscale else "RGB")
            if size is not None:
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(img)
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from None
    return array[None] if grayscale else array.transpose(2, 0, 1)


def _image_folder(cfg: DataConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    bases, classes = _image_layout(data_root(cfg))
    base = bases.get(split, bases.get("all"))
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (base / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        files += found
        labels += [label] * len(found)
    y = np.asarray(labels, dtype=np.int64)
    if "all" in bases:
        keep = _stratified(y, cfg.test_fraction, split)
        files, y = [files[i] for i in keep], y[keep]
    if not files:
        raise DatasetError(f"image_folder: no {split} images (png, jpg, jpeg) in the class folders of {base}")
    images = [_read_image(p, cfg.image_size, cfg.grayscale) for p in files]
    sizes = sorted({f"{a.shape[2]}x{a.shape[1]}" for a in images})
    if len(sizes) > 1:
        raise DatasetError(
            f"image_folder: the images in {base} differ in size ({', '.join(sizes)}); set data.image_size"
        )
    return np.stack(images), y


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) == 0 or y.min() < 0:
        raise DatasetError(f"{where}: labels must be non-negative integers of shape (N,) (got {y.dtype} {y.shape})")
    return y.astype(np.int64)


def _nchw(x: np.ndarray, where: str) -> np.ndarray:
    """NCHW from N x H x W, N x C x H x W or N x H x W x C, C being 1 or 3."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x
    if x.ndim == 4 and x.shape[3] in (1, 3):
        return x.transpose(0, 3, 1, 2)
    raise DatasetError(f"{where}: images of shape {x.shape}; expected NCHW or NHWC with 1 or 3 channels, or NHW")


def _npz_arrays(path: Path, split: str, test_fraction: float, labels_only: bool = False) -> dict[str, np.ndarray]:
    """x and y of `split` (or y alone, of every split) from an .npz, split by `test_fraction` when it has x, y."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    with archive as f:
        keys = set(f.files)
        if {"x_train", "y_train", "x_test", "y_test"} <= keys:
            if labels_only:
                return {"y": np.concatenate([_labels(f[k], f"{path}: {k}") for k in ("y_train", "y_test")])}
            return {"x": f[f"x_{split}"], "y": _labels(f[f"y_{split}"], f"{path}: y_{split}")}
        if {"x", "y"} <= keys:
            y = _labels(f["y"], f"{path}: y")
            if labels_only:
                return {"y": y}
            x = f["x"]
            if len(x) != len(y):
                raise DatasetError(f"{path}: {len(x)} images in x but {len(y)} labels in y")
            keep = _stratified(y, test_fraction, split)
            return {"x": x[keep], "y": y[keep]}
    raise DatasetError(f"{path}: has {', '.join(sorted(keys))}; expected x_train, y_train, x_test, y_test (or x, y)")


def _npz(cfg: DataConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    path = _npz_file(data_root(cfg))
    arrays = _npz_arrays(path, split, cfg.test_fraction)
    x, y = _nchw(arrays["x"], f"{path}: x_{split}"), arrays["y"]
    if len(x) != len(y):
        raise DatasetError(f"{path}: {len(x)} {split} images but {len(y)} labels")
    if x.dtype.kind == "f":
        if len(x) and not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
            raise DatasetError(f"{path}: float images must lie in [0, 1] (got [{x.min()}, {x.max()}])")
    elif x.dtype != np.uint8:
        raise DatasetError(f"{path}: images must be uint8 or float in [0, 1] (got {x.dtype})")
    return x, y


READERS: dict[str, Callable[[DataConfig, str], tuple[np.ndarray, np.ndarray]]] = {
    "digits": _digits,
    "mnist": _mnist,
    "fashion_mnist": _mnist,
    "cifar10": _cifar,
    "cifar100": _cifar,
    "image_folder": _image_folder,
    "npz": _npz,
}


# --- the public entry points ---------------------------------------------------------------------------------------


def load_split(cfg: DataConfig | str, split: str | None = None, log: Callable[[str], None] = print) -> Dataset:
    """The whole train or test split (default `cfg.split`), downloading it first when `cfg.download` asks.

    A dataset name stands for its default config. Raises `DatasetError` when the data is missing or malformed.
    """
    cfg = _config(cfg)
    split = split or cfg.split
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test (got {split!r})")
    if cfg.download:
        download(cfg, log)
    if problem := missing(cfg):
        raise DatasetError(problem)
    x, y = READERS[cfg.dataset](cfg, split)
    k = n_classes(cfg)
    if len(y) and y.max() >= k:
        raise DatasetError(f"{cfg.dataset}: label {y.max()} in the {split} split, but the dataset has {k} classes")
    lo, hi = cfg.bounds
    scaled = np.divide(x, 255, dtype=np.float32) if x.dtype == np.uint8 else x.astype(np.float32)
    if (lo, hi) != (0.0, 1.0):
        scaled *= hi - lo
        scaled += lo
    return Dataset(cfg.dataset, torch.from_numpy(scaled), torch.from_numpy(y), k, (lo, hi))


def select(data: Dataset, n_samples: int | None, seed: int, balanced: bool = False) -> Dataset:
    """`n_samples` drawn without replacement with `seed`, kept in split order; all when None.

    `balanced` takes the classes round-robin (each class's samples in a seeded order), so class counts differ by at
    most one until a class runs out.
    """
    if n_samples is None or n_samples >= len(data):
        return data
    rng = np.random.default_rng(seed)
    if balanced:
        y = data.y.cpu().numpy()
        classes = rng.permutation(np.unique(y))
        turn = np.empty(len(y), dtype=np.int64)  # the position of each sample in the round-robin
        for pos, c in enumerate(classes):
            members = rng.permutation(np.flatnonzero(y == c))
            turn[members] = np.arange(len(members)) * len(classes) + pos
        idx = np.sort(np.argsort(turn)[:n_samples])
    else:
        idx = np.sort(rng.choice(len(data), size=n_samples, replace=False))
    index = torch.from_numpy(idx)
    return Dataset(data.name, data.x[index], data.y[index], data.n_classes, data.bounds)


def n_classes(cfg: DataConfig | str) -> int:
    """The class count without loading the images (validation needs it before anything runs)."""
    cfg = _config(cfg)
    if cfg.dataset in FIXED_CLASSES:
        return FIXED_CLASSES[cfg.dataset]
    if problem := missing(cfg):
        raise DatasetError(problem)
    root = data_root(cfg)
    if cfg.dataset == "image_folder":
        return len(_image_layout(root)[1])
    return int(_npz_arrays(_npz_file(root), cfg.split, cfg.test_fraction, labels_only=True)["y"].max()) + 1
