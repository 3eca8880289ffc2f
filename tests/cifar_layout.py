"""Write CIFAR-10/100 in the exact official python layout (pickled batches, meta file, .tar.gz archive),
with small, known contents."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

LAYOUT = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "archive": "cifar-10-python.tar.gz",
        "classes": 10,
        "train": [f"data_batch_{index}" for index in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "names_key": "label_names",
        "labels_key": "labels",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "archive": "cifar-100-python.tar.gz",
        "classes": 100,
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "names_key": "fine_label_names",
        "labels_key": "fine_labels",
    },
}


def pixels(start: int, count: int) -> np.ndarray:
    """Image i has every byte equal to i % 251, so tests can tell which image landed where."""
    return np.repeat((np.arange(start, start + count) % 251).astype(np.uint8)[:, None], 3072, axis=1)


def write_folder(root: Path, name: str, per_class_train: int = 10, per_class_test: int = 2) -> dict:
    spec = LAYOUT[name]
    folder = root / spec["folder"]
    folder.mkdir(parents=True)
    classes = spec["classes"]
    train_labels = np.tile(np.arange(classes), per_class_train)
    chunks = np.array_split(np.arange(len(train_labels)), len(spec["train"]))
    for file_name, chunk in zip(spec["train"], chunks, strict=True):
        batch = {
            "batch_label": file_name,
            spec["labels_key"]: train_labels[chunk].tolist(),
            "data": pixels(int(chunk[0]), len(chunk)),
            "filenames": [f"{i}.png" for i in chunk],
        }
        if name == "cifar100":
            batch["coarse_labels"] = (train_labels[chunk] // 5).tolist()
        (folder / file_name).write_bytes(pickle.dumps(batch))
    test_labels = np.tile(np.arange(classes), per_class_test)
    test = {
        spec["labels_key"]: test_labels.tolist(),
        "data": pixels(1000, len(test_labels)),
        "batch_label": "test",
    }
    (folder / spec["test"][0]).write_bytes(pickle.dumps(test))
    names = [f"{name}_class_{index}" for index in range(classes)]
    (folder / spec["meta"]).write_bytes(pickle.dumps({spec["names_key"]: names}))
    return {"train_labels": train_labels, "test_labels": test_labels, "class_names": names, "folder": folder}


def write_archive(root: Path, name: str, **sizes) -> dict:
    """The folder, packed as the official .tar.gz, and the loose folder removed."""
    staging = root / "staging"
    written = write_folder(staging, name, **sizes)
    archive = root / LAYOUT[name]["archive"]
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(written["folder"], arcname=LAYOUT[name]["folder"])
    for file in written["folder"].iterdir():
        file.unlink()
    written["folder"].rmdir()
    staging.rmdir()
    return written | {"archive": archive}
