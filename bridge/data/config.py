"""The `data:` section of a scenario: which dataset, which split, which samples, in which range."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from bridge.core.errors import BridgeError
from bridge.core.schema import Strict

SPLIT_SEED = 0  # the train/test split never moves with the scenario seed
DOWNLOADABLE = ("mnist", "fashion_mnist", "cifar10", "cifar100")  # published files, fetched with `download: true`

DATASETS = {
    "digits": "sklearn's bundled 8x8 handwritten digits (1797 images, 10 classes; no download)",
    "mnist": "MNIST 28x28 handwritten digits (60000 train / 10000 test, 10 classes; IDX files)",
    "fashion_mnist": "Fashion-MNIST 28x28 clothing images (60000 train / 10000 test, 10 classes; IDX files)",
    "cifar10": "CIFAR-10 32x32 colour images (50000 train / 10000 test, 10 classes; python tarball)",
    "cifar100": "CIFAR-100 32x32 colour images (50000 train / 10000 test, 100 fine classes; python tarball)",
    "image_folder": "your images: root/<class>/*.png|jpg|jpeg, or root/train/<class> and root/test/<class>",
    "npz": "your arrays: an .npz with x_train, y_train, x_test, y_test (or x, y), uint8 or float in [0, 1]",
}


FIXED_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}


# Which options each dataset takes (a key left at its default is accepted everywhere).
APPLIES = {
    "root": ("mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder", "npz"),
    "download": DOWNLOADABLE,
    "image_size": ("image_folder",),
    "grayscale": ("image_folder",),
    "test_fraction": ("image_folder", "npz"),
}


def _all(value: Any) -> Any:
    return None if value == "all" else value


class DatasetError(BridgeError):
    """Data that cannot be loaded; str() is one line saying what is wrong and what to do."""


class DataConfig(Strict):
    """The `data:` section of a scenario: which data, which split, which samples, in which range."""

    dataset: Literal["digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder", "npz"] = "digits"
    split: Literal["train", "test"] = "test"
    # how many samples of the split are evaluated: all when left out (or `all`); more than the split has is an error
    n_samples: Annotated[Annotated[int, Field(gt=0)] | None, BeforeValidator(_all)] = None
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


def as_config(cfg: DataConfig | str) -> DataConfig:
    return DataConfig(dataset=cfg) if isinstance(cfg, str) else cfg
