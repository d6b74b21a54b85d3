"""The readers: each returns x (N, C, H, W) as uint8, or float in [0, 1], and y int64, for one split."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from bridge.data.config import SPLIT_SEED, DataConfig, DatasetError
from bridge.data.files import CIFAR, IDX_FILES, data_root, image_layout, npz_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


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


class _CifarUnpickler(pickle.Unpickler):
    """Reads a CIFAR batch and nothing else: of the globals a pickle may name, only those that rebuild a numpy
    array are found; any other (a function a crafted file would call) is refused before it runs."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    })  # fmt: skip

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never holds")
        return super().find_class(module, name)


def _cifar_batch(f: IO[bytes], label_key: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch: data N x 3072 uint8 (CHW row-major), labels under `label_key` (bytes keys, as published).
    Read with `_CifarUnpickler`: a file in `data.root` is not trusted to run code."""
    try:
        loaded = _CifarUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise DatasetError(f"{where}: not a CIFAR batch ({exc})") from None
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
    bases, classes = image_layout(data_root(cfg))
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


def npz_arrays(path: Path, split: str, test_fraction: float, labels_only: bool = False) -> dict[str, np.ndarray]:
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
    path = npz_file(data_root(cfg))
    arrays = npz_arrays(path, split, cfg.test_fraction)
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
