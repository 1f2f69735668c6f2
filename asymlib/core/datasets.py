"""The registry of the paper's five benchmark datasets: one ``DatasetRecord`` each.

Each record holds everything known about its dataset without reading it: raw files,
shape and task, where to obtain the files, which can be downloaded (with their
sha256), and its reader. ``DATASETS``, ``DATASET_SHAPES`` and ``RAW_FILES`` are views
of the registry for the code that needs only that. Adding a dataset takes one record
here and one reader in ``readers``. A user's own dataset (a profile's ``datasets:``
mapping) is added to ``DATASET_RECORDS``, ``DATASET_SHAPES`` and ``RAW_FILES`` at run time
by ``user_data.register``; ``DATASETS`` stays the five built-ins, ``registered()`` has all.
"""

from __future__ import annotations

from collections.abc import Iterable

from .dataset_record import DatasetRecord, Download
from .readers import read_adult, read_california, read_churn, read_mnist, read_otto

__all__ = [
    "BUILTIN_DATASETS",
    "DATASETS",
    "DATASET_RECORDS",
    "DATASET_SHAPES",
    "RAW_FILES",
    "check_name",
    "check_names",
    "dataset_order",
    "registered",
]

_MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_UCI_ADULT = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"

_CALIFORNIA = DatasetRecord(
    name="california",
    task="regression",
    n_rows=20640,
    n_features=8,
    n_classes=0,
    files=("cal_housing.data",),
    source=(
        "scikit-learn's fetch_california_housing archive of StatLib's data, "
        "https://ndownloader.figshare.com/files/5976036 (cal_housing.tgz; "
        "extract CaliforniaHousing/cal_housing.data)"
    ),
    reader=read_california,
    downloads=(
        Download(
            "cal_housing.data",
            "https://ndownloader.figshare.com/files/5976036",
            "aaa5c9a6afe2225cc2aed2723682ae403280c4a3695a2ddda4ffb5d8215ea681",
            member="CaliforniaHousing/cal_housing.data",
        ),
    ),
)

_CHURN = DatasetRecord(
    name="churn",
    task="binary",
    n_rows=10000,
    n_features=13,
    n_classes=2,
    files=("Churn_Modelling.csv",),
    source=(
        "Kaggle's churn-modelling dataset, "
        "https://www.kaggle.com/datasets/shrutimechlearn/churn-modelling "
        "(Churn_Modelling.csv)"
    ),
    reader=read_churn,
)

_ADULT = DatasetRecord(
    name="adult",
    task="binary",
    n_rows=48842,
    n_features=108,
    n_classes=2,
    files=("adult.data", "adult.test"),
    source=(
        "the UCI Adult dataset, https://archive.ics.uci.edu/dataset/2/adult (adult.data and adult.test, unmodified)"
    ),
    reader=read_adult,
    downloads=(
        Download(
            "adult.data",
            _UCI_ADULT + "adult.data",
            "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
        ),
        Download(
            "adult.test",
            _UCI_ADULT + "adult.test",
            "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
        ),
    ),
)

_MNIST = DatasetRecord(
    name="mnist",
    task="multiclass",
    n_rows=70000,
    n_features=784,
    n_classes=10,
    files=(
        "mnist/train-images-idx3-ubyte.gz",
        "mnist/train-labels-idx1-ubyte.gz",
        "mnist/t10k-images-idx3-ubyte.gz",
        "mnist/t10k-labels-idx1-ubyte.gz",
    ),
    source=(
        "Yann LeCun's MNIST page http://yann.lecun.com/exdb/mnist/ or its mirror "
        "https://ossci-datasets.s3.amazonaws.com/mnist/ (the four *-idx?-ubyte.gz files, "
        "into a mnist/ subfolder); the same images are OpenML's mnist_784"
    ),
    reader=read_mnist,
    downloads=(
        Download(
            "mnist/train-images-idx3-ubyte.gz",
            _MNIST_MIRROR + "train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        Download(
            "mnist/train-labels-idx1-ubyte.gz",
            _MNIST_MIRROR + "train-labels-idx1-ubyte.gz",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        Download(
            "mnist/t10k-images-idx3-ubyte.gz",
            _MNIST_MIRROR + "t10k-images-idx3-ubyte.gz",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        Download(
            "mnist/t10k-labels-idx1-ubyte.gz",
            _MNIST_MIRROR + "t10k-labels-idx1-ubyte.gz",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    ),
)

_OTTO = DatasetRecord(
    name="otto",
    task="multiclass",
    n_rows=61878,
    n_features=93,
    n_classes=9,
    files=("otto.csv.gz",),
    source=(
        "Kaggle's otto-group-product-classification-challenge, "
        "https://www.kaggle.com/c/otto-group-product-classification-challenge/data "
        "(train.csv, gzipped and saved as otto.csv.gz: gzip -c train.csv > otto.csv.gz)"
    ),
    reader=read_otto,
)

#: Every dataset's record, by name: the paper's five in its order, then the user datasets
#: that profiles registered in this process (``user_data.register``).
DATASET_RECORDS: dict[str, DatasetRecord] = {
    record.name: record for record in (_CALIFORNIA, _CHURN, _ADULT, _MNIST, _OTTO)
}

#: The paper's five built-in datasets, in its order (user datasets are in ``registered()``).
DATASETS = tuple(DATASET_RECORDS)
BUILTIN_DATASETS = DATASETS

#: (rows, features) of each whole dataset after preprocessing, known without reading it:
#: the runner starts the largest work units first (tests/test_data.py checks these figures
#: against the loaded files).
DATASET_SHAPES: dict[str, tuple[int, int]] = {name: record.shape for name, record in DATASET_RECORDS.items()}

#: Raw files each dataset needs, relative to the data folder.
RAW_FILES: dict[str, tuple[str, ...]] = {name: record.files for name, record in DATASET_RECORDS.items()}


def registered() -> tuple[str, ...]:
    """Every dataset known now: the built-ins, then the user datasets registered so far."""
    return tuple(DATASET_RECORDS)


def dataset_order(name: str) -> tuple[int, str]:
    """A sort key: the built-ins in the paper's order, then any other name alphabetically."""
    return (DATASETS.index(name), "") if name in DATASETS else (len(DATASETS), name)


def check_name(name: str) -> str:
    """``name`` if it is a registered dataset (``registered()``), else a ValueError listing them."""
    if name not in DATASET_RECORDS:
        raise ValueError(f"unknown dataset {name!r}; valid names are {', '.join(DATASET_RECORDS)}")
    return name


def check_names(names: str | Iterable[str]) -> tuple[str, ...]:
    """``names`` (one name, or several) as a checked tuple."""
    # A bare string would otherwise be iterated character by character.
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(check_name(n) for n in names)
