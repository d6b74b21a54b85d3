"""The data loaders, on small files written here in each dataset's real format (no network)."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from crafted import PAYLOAD_TEXT, Payload
from PIL import Image
from pydantic import ValidationError

from bridge.data import files as D
from bridge.data.config import DATASETS, DOWNLOADABLE, DataConfig, DatasetError
from bridge.data.dataset import Dataset, load_split, n_classes, select
from bridge.data.files import fetch, md5sum, missing

RNG = np.random.default_rng(0)


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_idx_dataset(root: Path, n_train: int = 12, n_test: int = 6) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four MNIST-style IDX gz files; returns the raw images and labels of each split."""
    root.mkdir(parents=True, exist_ok=True)
    raw = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        images, labels = D.IDX_FILES[split]
        write_idx(root / images, x, 0x00000803)
        write_idx(root / labels, y, 0x00000801)
        raw[split] = (x, y)
    return raw


def pickled_batch(x: np.ndarray, labels: list[int], label_key: bytes) -> bytes:
    """A batch as the CIFAR python files hold it: a dict with bytes keys, data N x 3072 uint8."""
    batch = {b"batch_label": b"a test batch", label_key: labels, b"data": x.reshape(len(x), -1), b"filenames": []}
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [label // 5 for label in labels]
    return pickle.dumps(batch, protocol=2)


def make_cifar(root: Path, dataset: str, per_batch: int = 2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The python tarball of `dataset` with tiny batches; returns each split's images and labels."""
    spec = D.CIFAR[dataset]
    k = n_classes(dataset)
    root.mkdir(parents=True, exist_ok=True)
    raw: dict[str, list] = {"train": [], "test": []}
    with tarfile.open(root / spec.tarball, "w:gz") as tar:
        for split, batches in spec.batches.items():
            for i, name in enumerate(batches):
                x = RNG.integers(0, 256, (per_batch + i, 3, 32, 32), dtype=np.uint8)
                labels = [int(v) for v in RNG.integers(0, k, len(x))]
                body = pickled_batch(x, labels, spec.label_key.encode())
                info = tarfile.TarInfo(f"{spec.folder}/{name}")
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
                raw[split].append((x, np.asarray(labels)))
    return {s: (np.concatenate([b[0] for b in v]), np.concatenate([b[1] for b in v])) for s, v in raw.items()}


def save_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def rgb(h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- digits ------------------------------------------------------------------------------------------------------


def test_digits_keeps_its_split_and_call_sites() -> None:
    test, train = load_split("digits", "test"), load_split(DataConfig(), "train")
    assert (len(train), len(test)) == (1257, 540)
    assert test.x.shape == (540, 1, 8, 8) and test.x.dtype == torch.float32 and test.y.dtype == torch.int64
    assert 0 <= test.x.min() and test.x.max() <= 1 and test.n_classes == n_classes("digits") == 10
    assert load_split("digits", "test").fingerprint == test.fingerprint != train.fingerprint
    assert load_split(DataConfig(split="train")).fingerprint == train.fingerprint  # split defaults to cfg.split


# --- mnist, fashion_mnist -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_idx_files_load_exactly(tmp_path: Path, dataset: str) -> None:
    raw = make_idx_dataset(tmp_path)
    cfg = DataConfig(dataset=dataset, root=str(tmp_path))
    assert missing(cfg) is None and n_classes(cfg) == 10
    for split, (x, y) in raw.items():
        data = load_split(cfg, split)
        assert data.x.shape == (len(x), 1, 28, 28) and data.x.dtype == torch.float32
        assert torch.equal(data.x[:, 0], torch.from_numpy(x.astype(np.float32) / 255))
        assert data.y.dtype == torch.int64 and data.y.tolist() == y.tolist()
        assert data.name == dataset and data.n_classes == 10 and len(data.fingerprint) == 16
    scaled = load_split(cfg.model_copy(update={"bounds": (-1.0, 1.0)}), "test")
    assert scaled.bounds == (-1.0, 1.0) and scaled.x.min() >= -1 and scaled.x.max() <= 1
    assert torch.allclose(scaled.x, load_split(cfg, "test").x * 2 - 1)
    assert scaled.fingerprint != load_split(cfg, "test").fingerprint


def test_idx_fingerprint_follows_the_content(tmp_path: Path) -> None:
    raw = make_idx_dataset(tmp_path)
    cfg = DataConfig(dataset="mnist", root=str(tmp_path))
    before = load_split(cfg, "train").fingerprint
    assert load_split(cfg, "train").fingerprint == before
    x, _ = raw["train"]
    x[0, 0, 0] ^= 1
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x, 0x00000803)
    assert load_split(cfg, "train").fingerprint != before


def test_idx_header_is_checked(tmp_path: Path) -> None:
    make_idx_dataset(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros(6, dtype=np.uint8), 0x00000801)
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz: IDX magic 0x00000801, expected 0x00000803"):
        load_split(DataConfig(dataset="mnist", root=str(tmp_path)), "test")


# --- cifar --------------------------------------------------------------------------------------------------------


def test_cifar10_from_the_tarball_and_from_the_extracted_folder(tmp_path: Path) -> None:
    raw = make_cifar(tmp_path, "cifar10")
    cfg = DataConfig(dataset="cifar10", root=str(tmp_path))
    packed = {split: load_split(cfg, split) for split in ("train", "test")}
    for split, (x, y) in raw.items():
        assert packed[split].x.shape == (len(x), 3, 32, 32) and packed[split].n_classes == 10
        assert torch.equal(packed[split].x, torch.from_numpy(x.astype(np.float32) / 255))
        assert packed[split].y.tolist() == y.tolist()
    assert len(packed["train"]) == 2 + 3 + 4 + 5 + 6  # all five batches, in order
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    (tmp_path / "cifar-10-python.tar.gz").unlink()
    assert missing(cfg) is None
    for split in ("train", "test"):
        extracted = load_split(cfg, split)
        assert torch.equal(extracted.x, packed[split].x) and extracted.fingerprint == packed[split].fingerprint


def test_cifar100_reads_the_fine_labels(tmp_path: Path) -> None:
    raw = make_cifar(tmp_path, "cifar100", per_batch=5)
    cfg = DataConfig(dataset="cifar100", root=str(tmp_path))
    data = load_split(cfg, "test")
    assert data.x.shape == (5, 3, 32, 32) and data.n_classes == n_classes(cfg) == 100
    assert data.y.tolist() == raw["test"][1].tolist()


def test_a_tarball_without_a_batch_is_named(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        body = pickled_batch(np.zeros((1, 3, 32, 32), np.uint8), [0], b"labels")
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    cfg = DataConfig(dataset="cifar10", root=str(tmp_path))
    assert len(load_split(cfg, "test")) == 1
    with pytest.raises(DatasetError, match=r"has no cifar-10-batches-py/data_batch_1, .*data_batch_5$"):
        load_split(cfg, "train")


def test_a_crafted_cifar_batch_runs_nothing(tmp_path: Path) -> None:
    """A batch file in data.root is read by a restricted unpickler: a pickle that calls a function is refused."""
    marker = tmp_path / "ran.txt"
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar(tmp_path / "good", "cifar10")
    folder.mkdir()
    good = DataConfig(dataset="cifar10", root=str(tmp_path / "good"))
    assert len(load_split(good, "test")) == 2  # genuine batches still load
    crafted = pickle.dumps({b"data": Payload(marker), b"labels": [0]}, protocol=2)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(crafted)
    with pytest.raises(DatasetError, match=r"test_batch: not a CIFAR batch \(it names \S+, which a CIFAR batch"):
        load_split(DataConfig(dataset="cifar10", root=str(tmp_path)), "test")
    assert not marker.exists()
    pickle.loads(crafted)  # what plain unpickling would have done
    assert marker.read_text() == PAYLOAD_TEXT


# --- image folders ------------------------------------------------------------------------------------------------


def test_image_folder_with_classes_resizes_and_splits(tmp_path: Path) -> None:
    for i in range(8):
        save_image(tmp_path / "abnormal" / f"study{i}" / "image1.png", rgb(20 + i, 30))
        save_image(tmp_path / "normal" / f"{i}.JPG", rgb(16, 16))
    (tmp_path / "normal" / "notes.txt").write_text("not an image")
    cfg = DataConfig(dataset="image_folder", root=str(tmp_path), image_size=8, test_fraction=0.25)
    assert missing(cfg) is None and n_classes(cfg) == 2
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert (len(train), len(test)) == (12, 4) and test.x.shape == (4, 3, 8, 8) and test.x.dtype == torch.float32
    assert sorted(test.y.tolist()) == [0, 0, 1, 1]  # stratified: a quarter of each class
    assert 0 <= train.x.min() and train.x.max() <= 1 and train.n_classes == 2
    assert load_split(cfg, "test").fingerprint == test.fingerprint
    gray = load_split(cfg.model_copy(update={"grayscale": True}), "test")
    assert gray.x.shape == (4, 1, 8, 8) and gray.fingerprint != test.fingerprint
    with pytest.raises(DatasetError, match=r"differ in size \(16x16, 30x20, .*\); set data\.image_size$"):
        load_split(cfg.model_copy(update={"image_size": None}), "train")


def test_image_folder_with_its_own_split_keeps_png_pixels(tmp_path: Path) -> None:
    pixels = {}
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            for i in range(n):
                pixels[split, cls, i] = rgb(6, 5)
                save_image(tmp_path / split / cls / f"{i}.png", pixels[split, cls, i])
    save_image(tmp_path / "test" / "emu" / "0.jpeg", rgb(6, 5))
    cfg = DataConfig(dataset="image_folder", root=str(tmp_path))
    assert n_classes(cfg) == 3  # the classes of both splits
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert train.x.shape == (6, 3, 6, 5) and train.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert test.y.tolist() == [0, 0, 1, 1, 2] and test.n_classes == 3
    assert torch.equal(train.x[4], torch.from_numpy(pixels["train", "dog", 1].transpose(2, 0, 1) / np.float32(255)))


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        save_image(tmp_path / cls / "x.png", np.array([[0, 32768], [65535, 256]], dtype=np.uint16))
    cfg = DataConfig(dataset="image_folder", root=str(tmp_path), grayscale=True, test_fraction=0.5)
    x = load_split(cfg, "test").x[0, 0] * 255
    assert x.round().tolist() == [[0, 128], [255, 1]]


# --- npz ----------------------------------------------------------------------------------------------------------


def test_npz_nhwc_uint8_with_its_own_split(tmp_path: Path) -> None:
    x_train, x_test = rgb(40, 3).reshape(10, 4, 3, 3), rgb(12, 3).reshape(3, 4, 3, 3)
    y_train, y_test = np.arange(10) % 4, np.array([[1], [2], [6]])
    np.savez(tmp_path / "arrays.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    cfg = DataConfig(dataset="npz", root=str(tmp_path))  # the folder holding one .npz
    assert missing(cfg) is None and n_classes(cfg) == 7
    test = load_split(cfg, "test")
    assert test.x.shape == (3, 3, 4, 3) and test.y.tolist() == [1, 2, 6] and test.n_classes == 7
    assert torch.equal(test.x, torch.from_numpy(x_test.transpose(0, 3, 1, 2) / np.float32(255)))


def test_npz_nchw_float_split_by_fraction(tmp_path: Path) -> None:
    x = RNG.random((20, 1, 5, 5), dtype=np.float32)
    y = np.repeat([0, 1], 10)
    path = tmp_path / "xy.npz"
    np.savez(path, x=x, y=y)
    cfg = DataConfig(dataset="npz", root=str(path), test_fraction=0.3)
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert (len(train), len(test)) == (14, 6) and test.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert test.x.shape == (6, 1, 5, 5) and n_classes(cfg) == 2
    assert sorted(torch.cat([train.x, test.x]).flatten().tolist()) == sorted(x.flatten().tolist())
    np.savez(path, x=x[:-1], y=y)
    with pytest.raises(DatasetError, match=r"19 images in x but 20 labels in y$"):
        load_split(cfg, "test")
    np.savez(path, x=x * 2, y=y)
    with pytest.raises(DatasetError, match=r"float images must lie in \[0, 1\]"):
        load_split(cfg, "test")
    np.savez(path, images=x, y=y)
    with pytest.raises(DatasetError, match=r"has images, y; expected x_train, y_train, x_test, y_test \(or x, y\)$"):
        load_split(cfg, "test")


# --- missing data, downloads --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "names"),
    [
        ("mnist", ["t10k-images-idx3-ubyte.gz", "ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz"]),
        ("fashion_mnist", ["fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-labels-idx1-ubyte.gz"]),
        ("cifar10", ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"]),
        ("cifar100", ["https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"]),
        ("image_folder", ["does not exist", "<class>/ (png, jpg, jpeg)"]),
        ("npz", ["does not exist", "x_train, y_train, x_test, y_test"]),
    ],
)
def test_missing_data_is_one_line_naming_file_url_and_folder(tmp_path: Path, dataset: str, names: list[str]) -> None:
    root = tmp_path / "nothing-here"
    cfg = DataConfig(dataset=dataset, root=str(root))
    message = missing(cfg)
    assert message is not None and "\n" not in message and message.startswith(f"{dataset}: {root}")
    for name in names:
        assert name in message
    with pytest.raises(DatasetError) as err:
        load_split(cfg, "test")
    assert str(err.value) == message
    if dataset in D.REMOTE:
        assert message.endswith(f"into {root}, or set data.download: true")
        assert missing(cfg.model_copy(update={"download": True})) is None


def test_missing_lists_only_the_absent_files(tmp_path: Path) -> None:
    make_idx_dataset(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    message = missing(DataConfig(dataset="mnist", root=str(tmp_path)))
    assert f"{tmp_path} has no train-labels-idx1-ubyte.gz; download https://" in message
    assert "t10k" not in message and "d53e105ee54ea40749a09fcbcd1e9432" in message


def test_image_folder_and_npz_say_what_is_wrong(tmp_path: Path) -> None:
    assert "has no class subfolders" in missing(DataConfig(dataset="image_folder", root=str(tmp_path)))
    assert "holds no .npz file" in missing(DataConfig(dataset="npz", root=str(tmp_path)))
    for name in ("a.npz", "b.npz"):
        np.savez(tmp_path / name, x=np.zeros((1, 2, 2)), y=[0])
    assert "several .npz files (a.npz, b.npz); set data.root to one" in missing(
        DataConfig(dataset="npz", root=str(tmp_path))
    )
    with pytest.raises(DatasetError, match=r"/x does not exist; put the images in .*/x/<class>/"):
        n_classes(DataConfig(dataset="image_folder", root=str(tmp_path / "x")))


def test_default_root_sits_beside_the_model_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVBRIDGE_CACHE", str(tmp_path))
    assert D.data_root(DataConfig(dataset="cifar10")) == tmp_path / "data" / "cifar10"
    assert D.data_root(DataConfig(dataset="mnist", root="~/mnist")) == Path.home() / "mnist"


def test_fetch_checks_the_md5(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"the published bytes" * 1000)
    good = md5sum(source)
    dest = tmp_path / "into" / "file.bin"
    assert fetch(source.as_uri(), dest, good) == dest and dest.read_bytes() == source.read_bytes()
    dest.unlink()
    source.write_bytes(b"corrupted bytes" * 1000)
    with pytest.raises(
        DatasetError, match=rf"md5 {md5sum(source)} is not the known {good}; the download was discarded"
    ):
        fetch(source.as_uri(), dest, good)
    assert list(dest.parent.iterdir()) == []
    with pytest.raises(DatasetError, match="download failed"):
        fetch((tmp_path / "absent").as_uri(), dest, good)


def test_download_fetches_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    raw = make_idx_dataset(mirror)
    md5 = {name: md5sum(mirror / name) for name in D.REMOTE["mnist"].md5}
    monkeypatch.setitem(D.REMOTE, "mnist", D.Remote(mirror.as_uri() + "/", md5))
    root = tmp_path / "root"
    logged: list[str] = []
    data = load_split(DataConfig(dataset="mnist", root=str(root), download=True), "test", log=logged.append)
    assert data.y.tolist() == raw["test"][1].tolist() and len(logged) == 4
    assert sorted(p.name for p in root.iterdir()) == sorted(md5)
    load_split(DataConfig(dataset="mnist", root=str(root), download=True), "test", log=logged.append)
    assert len(logged) == 4  # nothing fetched twice


# --- selection ----------------------------------------------------------------------------------------------------


def toy(counts: list[int]) -> Dataset:
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    return Dataset("toy", torch.arange(len(y), dtype=torch.float32)[:, None], y, len(counts))


def test_selection_is_deterministic_and_in_split_order() -> None:
    data = toy([30, 30, 30])
    a, b, c = select(data, 20, seed=1), select(data, 20, seed=1), select(data, 20, seed=2)
    assert torch.equal(a.x, b.x) and a.fingerprint == b.fingerprint
    assert not torch.equal(a.x, c.x) and a.fingerprint != c.fingerprint != data.fingerprint
    assert (a.x[1:] > a.x[:-1]).all()  # kept in split order
    assert select(data, None, seed=1) is data and select(data, 90, seed=1) is data
    with pytest.raises(DatasetError, match=r"data.n_samples: 91 is more than the 90 samples .* or n_samples: all"):
        select(data, 91, seed=1)
    built = Dataset("toy", data.x, data.y, 3)
    assert len(built.fingerprint) == 16 and built.fingerprint == Dataset("other", data.x, data.y, 3).fingerprint


def test_balanced_selection_takes_classes_round_robin() -> None:
    data = toy([50, 10, 3])
    counts = torch.bincount(select(data, 10, seed=0, balanced=True).y, minlength=3).tolist()
    assert sorted(counts) == [3, 3, 4]
    counts = torch.bincount(select(data, 20, seed=0, balanced=True).y).tolist()
    assert counts[2] == 3 and sorted(counts[:2]) == [8, 9]  # class 2 runs out; the others share the rest
    chosen = select(data, 10, seed=5, balanced=True)
    assert (chosen.x[1:] > chosen.x[:-1]).all() and torch.equal(chosen.x, select(data, 10, 5, balanced=True).x)


# --- the config ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"dataset": "mnist", "image_size": 32}, r"image_size\n.*only for dataset image_folder \(dataset is mnist\)"),
        ({"dataset": "digits", "root": "/data"}, r"root\n.*only for dataset mnist, fashion_mnist, cifar10"),
        ({"dataset": "npz", "download": True, "root": "a.npz"}, r"download\n.*only for dataset mnist, fashion_mnist"),
        ({"dataset": "cifar10", "test_fraction": 0.1}, r"test_fraction\n.*only for dataset image_folder, npz"),
        ({"dataset": "image_folder"}, r"dataset image_folder needs root: the image folder"),
        ({"dataset": "npz"}, r"dataset npz needs root: the \.npz file"),
        ({"bounds": [1, 0]}, r"bounds\n.*the lower bound must be below the upper one"),
        ({"test_fraction": 1.0, "dataset": "npz", "root": "x"}, r"test_fraction\n.*less than 1"),
        ({"n_samples": 0}, r"n_samples\n.*greater than 0"),
        ({"datset": "mnist"}, r"datset\n.*Extra inputs are not permitted"),
    ],
)
def test_config_rejects_impossible_combinations(fields: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        DataConfig(**fields)


def test_config_accepts_defaults_everywhere_and_lists_every_dataset() -> None:
    assert DataConfig(dataset="mnist", grayscale=False, download=False).download is False
    assert list(DATASETS) == list(typing.get_args(DataConfig.model_fields["dataset"].annotation))
    assert set(D.REMOTE) == set(DOWNLOADABLE)
    assert list(DataConfig.model_fields)[:3] == ["dataset", "split", "n_samples"]  # the order validation messages show
