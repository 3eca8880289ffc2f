"""Datasets: CIFAR-10/100 from the official archives, scikit-learn's digits, and synthetic images.

Every loader returns uint8 image tensors (N, C, H, W) and int64 labels; the validation split is held
out of the training set with a fixed seed, stratified by class, the same for every strategy and seed.

The registry is light: torch, torchvision and numpy are imported inside the loaders, so that `list` and
checking a dataset's name need none of them.
"""

from __future__ import annotations

import dataclasses
import pickle
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np  # light; torch and torchvision are imported where data is loaded

from benchmark.errors import UsageError
from benchmark.registry import Registry

if TYPE_CHECKING:
    import torch
    from torchvision.datasets import CIFAR10

VALIDATION_SEED = 20210612  # fixed: the held-out split never depends on the run's seed
TRAIN_SUBSET_SEED = 20210613  # fixed: a `train_size` subset is the same for every strategy and seed


@dataclasses.dataclass
class Split:
    images: torch.Tensor  # uint8, (N, C, H, W)
    labels: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@dataclasses.dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    class_names: list[str]
    source: str  # what the run trained on, in words, recorded with every result
    mirror_invariant: bool  # horizontal flips are a valid augmentation
    verified: bool | None  # files match the official checksums (None: nothing to check)

    def to(self, device: torch.device) -> Splits:
        moved = {name: getattr(self, name).to(device) for name in ("train", "val", "test")}
        return dataclasses.replace(self, **moved)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    num_classes: int
    default_val_fraction: float
    mirror_invariant: bool  # a horizontal flip keeps the label (not so for digits)
    load: Callable[[Path, bool], tuple[Split, Split, list[str], str, bool | None]]


# --- CIFAR -------------------------------------------------------------------------------------------


def _cifar_class(name: str) -> type[CIFAR10]:
    from torchvision.datasets import CIFAR10, CIFAR100

    return {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]


_NUMPY_CORE = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed numpy.core


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What `_codecs.encode` does in the pickles of bytes written with protocol 2, and nothing more."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"unexpected encoding {encoding!r}")
    return text.encode("latin1")


class _CifarUnpickler(pickle.Unpickler):
    """Only what the official CIFAR batches hold: dicts, lists, strings, bytes and numpy arrays.

    Any other global (os.system, builtins.eval, ...) is refused, so a planted batch cannot run code."""

    ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _NUMPY_CORE.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _NUMPY_CORE.multiarray._reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _NUMPY_CORE.numeric._frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _NUMPY_CORE.numeric._frombuffer,
        ("_codecs", "encode"): _latin1_encode,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it refers to {module}.{name}, which CIFAR batches never do"
            ) from None


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as file:
            batch = _CifarUnpickler(file, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, OSError, TypeError, AttributeError) as error:
        raise UsageError(
            f"{path} is not a readable CIFAR batch ({error}); delete it and extract the archive again"
        ) from None
    if not isinstance(batch, dict):
        raise UsageError(f"{path} is not a CIFAR batch (a {type(batch).__name__}, not a dict)")
    return batch


def _read_cifar_folder(folder: Path, spec: type[CIFAR10]) -> tuple[Split, Split, list[str], bool]:
    """Read the official python layout: pickled batches of (N, 3072) uint8 rows and a meta file."""
    import torch
    from torchvision.datasets.utils import check_integrity

    expected = [name for name, _ in spec.train_list + spec.test_list] + [spec.meta["filename"]]
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing:
        raise UsageError(
            f"{folder} lacks {', '.join(missing)}; expected the files {', '.join(expected)} "
            f"from {spec.filename}"
        )

    def read(file_list: list[list[str]]) -> Split:
        images, labels = [], []
        for name, _ in file_list:
            batch = _read_pickle(folder / name)
            label_key = "labels" if "labels" in batch else "fine_labels"
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[label_key])
        return Split(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64))

    class_names = list(_read_pickle(folder / spec.meta["filename"])[spec.meta["key"]])
    verified = all(check_integrity(str(folder / name), md5) for name, md5 in spec.train_list + spec.test_list)
    return read(spec.train_list), read(spec.test_list), class_names, verified


def _extract(archive: Path, data_dir: Path, spec: type[CIFAR10]) -> None:
    """Extract into a temporary folder, then move into place, so a failure leaves nothing half-written."""
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".extract-") as scratch:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(scratch, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
            raise UsageError(
                f"{archive} is corrupt or truncated ({error}); delete it and download {spec.url} again"
            ) from None
        extracted = Path(scratch) / spec.base_folder
        if not extracted.is_dir():
            raise UsageError(
                f"{archive} does not hold the folder {spec.base_folder}/ of the official {spec.filename}"
            )
        shutil.move(str(extracted), data_dir / spec.base_folder)


def _load_cifar(name: str, data_dir: Path, download: bool):
    spec = _cifar_class(name)
    folder, archive = data_dir / spec.base_folder, data_dir / spec.filename
    if not folder.is_dir():
        if not archive.is_file():
            if not download:
                raise UsageError(f"{name} is not in {data_dir}: put {spec.filename} ({spec.url}) there")
            _download(spec, data_dir, name)
        _extract(archive, data_dir, spec)
    train, test, class_names, verified = _read_cifar_folder(folder, spec)
    checked = "matches the official checksums" if verified else "does NOT match the official checksums"
    return train, test, class_names, f"{name}: {folder} ({checked})", verified


def _download(spec: type[CIFAR10], data_dir: Path, name: str) -> None:
    from torchvision.datasets.utils import download_url

    created = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        download_url(spec.url, str(data_dir), spec.filename, spec.tgz_md5)  # verifies the md5
    except Exception as error:  # network errors come in many types; all mean the same to the user
        (data_dir / spec.filename).unlink(missing_ok=True)
        if created and not any(data_dir.iterdir()):
            data_dir.rmdir()  # a failed download leaves nothing behind
        raise UsageError(
            f"{name} is not in {data_dir} and could not be downloaded ({error}); put "
            f"{spec.filename} from {spec.url} in {data_dir}"
        ) from None


# --- digits and synthetic ----------------------------------------------------------------------------


def _stratified_holdout(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Boolean mask of a class-balanced random `fraction` of the examples (at least one per class)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        count = max(1, round(fraction * len(members)))
        mask[members[torch.randperm(len(members), generator=generator)[:count]]] = True
    return mask


def _load_digits(data_dir: Path, download: bool):
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()  # 1,797 real 8x8 handwritten digits, values 0..16, shipped with scikit-learn
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)
    images = torch.from_numpy(pixels)[:, None].expand(-1, 3, -1, -1).contiguous()  # grey to 3 channels
    labels = torch.from_numpy(digits.target).long()
    test_mask = _stratified_holdout(labels, 0.2, seed=VALIDATION_SEED + 1)  # fixed 20% test split
    train, test = Split(images[~test_mask], labels[~test_mask]), Split(images[test_mask], labels[test_mask])
    names = [str(digit) for digit in range(10)]
    return train, test, names, "digits: scikit-learn's 8x8 handwritten digits (real data, offline)", None


def _load_synthetic(data_dir: Path, download: bool):
    """Generated 16x16 images: a fixed random pattern per class plus noise, so there is something to learn."""
    import torch

    generator = torch.Generator().manual_seed(0)
    num_classes, size = 10, 16
    templates = torch.randn(num_classes, 3, size, size, generator=generator)

    def make(count: int) -> Split:
        labels = torch.arange(count) % num_classes
        noise = torch.randn(count, 3, size, size, generator=generator)
        pixels = 128 + 40 * templates[labels] + 40 * noise
        return Split(pixels.clamp(0, 255).round().to(torch.uint8), labels)

    train, test = make(600), make(200)
    names = [f"class_{index}" for index in range(num_classes)]
    return train, test, names, "synthetic: generated patterns + noise (not real images)", None


DATASETS: Registry[DatasetInfo] = Registry("dataset")
for _dataset in (
    DatasetInfo(
        "cifar10",
        "CIFAR-10, 32x32 colour images, official archive",
        10,
        0.02,
        True,
        lambda data_dir, download: _load_cifar("cifar10", data_dir, download),
    ),
    DatasetInfo(
        "cifar100",
        "CIFAR-100, 32x32 colour images, fine labels, official archive",
        100,
        0.02,
        True,
        lambda data_dir, download: _load_cifar("cifar100", data_dir, download),
    ),
    DatasetInfo(
        "digits", "scikit-learn's 8x8 handwritten digits: real data, no network", 10, 0.1, False, _load_digits
    ),
    DatasetInfo(
        "synthetic", "generated 16x16 class patterns + noise, for tests", 10, 0.1, False, _load_synthetic
    ),
):
    DATASETS.add(_dataset.name, _dataset)


def info(name: str) -> DatasetInfo:
    try:
        return DATASETS.get(name)
    except ValueError as error:
        raise UsageError(str(error)) from None


def load(name: str, data_dir: Path, val_fraction: float, download: bool = True) -> Splits:
    """Load a dataset and hold out a fixed, class-stratified validation split from its training set."""
    dataset = info(name)
    train, test, class_names, source, verified = dataset.load(Path(data_dir), download)
    val_mask = _stratified_holdout(train.labels, val_fraction, seed=VALIDATION_SEED)
    if val_mask.all():
        raise UsageError(
            f"--val-fraction {val_fraction} holds out all {len(val_mask)} training images of {name} "
            "for validation, leaving none to train on; give a smaller share"
        )
    return Splits(
        train=Split(train.images[~val_mask], train.labels[~val_mask]),
        val=Split(train.images[val_mask], train.labels[val_mask]),
        test=test,
        class_names=class_names,
        source=source,
        mirror_invariant=dataset.mirror_invariant,
        verified=verified,
    )


# --- training subsets (`train_size`) --------------------------------------------------------------------


def train_subset_index(labels: torch.Tensor, train_size: str) -> torch.Tensor | None:
    """Indices of the `train_size` subset ("N" images or "P%"), or None for "" (the whole split).

    Class-stratified and fixed: each class is shuffled with `TRAIN_SUBSET_SEED`, its k-th example gets the
    key k / class size, and the N smallest keys are kept. So every class is present once N >= classes,
    classes keep their shares (to within one image), and a smaller subset lies inside a larger one.
    """
    import torch

    if not train_size:
        return None
    count = _subset_count(len(labels), train_size)
    classes = labels.unique()
    if count < len(classes) or count > len(labels):
        raise UsageError(
            f"train_size {train_size} means {count} images; it must be between the {len(classes)} classes "
            f"and the {len(labels)} training images"
        )
    generator = torch.Generator().manual_seed(TRAIN_SUBSET_SEED)
    keys = torch.empty(len(labels), dtype=torch.float64)
    cpu_labels = labels.cpu()
    for label in classes.cpu():
        members = (cpu_labels == label).nonzero().flatten()
        shuffled = members[torch.randperm(len(members), generator=generator)]
        keys[shuffled] = torch.arange(len(members), dtype=torch.float64) / len(members)
    # Stable sort: equal keys keep index order, so ties break the same way every time.
    chosen = torch.sort(keys, stable=True).indices[:count]
    return chosen.sort().values.to(labels.device)


def _subset_count(available: int, train_size: str) -> int:
    if train_size.endswith("%"):
        return round(float(train_size[:-1]) / 100 * available)
    return int(train_size)


def train_count(splits: Splits, train_size: str) -> int:
    """Training images a run with this `train_size` uses."""
    index = train_subset_index(splits.train.labels, train_size)
    return len(splits.train) if index is None else len(index)


def train_subset(splits: Splits, train_size: str) -> Splits:
    """`splits` with its training split cut to the `train_size` subset (validation and test unchanged)."""
    index = train_subset_index(splits.train.labels, train_size)
    if index is None:
        return splits
    return dataclasses.replace(splits, train=Split(splits.train.images[index], splits.train.labels[index]))
