"""Datasets: the official CIFAR layouts (folder and archive), validation split, digits, errors."""

from __future__ import annotations

import pytest
import torch

from benchmark.data import datasets
from benchmark.errors import UsageError
from tests.cifar_layout import LAYOUT, write_archive, write_folder


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_reads_the_official_folder_layout(tmp_path, name):
    written = write_folder(tmp_path, name)
    splits = datasets.load(name, tmp_path, val_fraction=0.2, download=False)
    classes = LAYOUT[name]["classes"]
    assert splits.class_names == written["class_names"]
    assert len(splits.train) + len(splits.val) == len(written["train_labels"])
    assert len(splits.test) == len(written["test_labels"])
    assert splits.train.images.shape[1:] == (3, 32, 32) and splits.train.images.dtype == torch.uint8
    # Image i was written with every byte equal to i % 251: labels stay with their images.
    assert torch.equal(splits.test.labels, torch.as_tensor(written["test_labels"]))
    assert torch.equal(splits.test.images[:, 0, 0, 0].long(), (1000 + torch.arange(len(splits.test))) % 251)
    # Validation: 20% of each class, stratified.
    assert torch.equal(torch.bincount(splits.val.labels, minlength=classes), torch.full((classes,), 2))
    assert splits.verified is False and "does NOT match the official checksums" in splits.source


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_extracts_the_official_archive(tmp_path, name):
    written = write_archive(tmp_path, name)
    splits = datasets.load(name, tmp_path, val_fraction=0.1, download=False)
    assert (tmp_path / LAYOUT[name]["folder"]).is_dir()
    assert len(splits.train) + len(splits.val) == len(written["train_labels"])
    assert splits.class_names == written["class_names"]


def test_validation_split_is_fixed_and_disjoint(tmp_path):
    write_folder(tmp_path, "cifar10")
    first = datasets.load("cifar10", tmp_path, 0.2, download=False)
    second = datasets.load("cifar10", tmp_path, 0.2, download=False)
    assert torch.equal(first.val.images, second.val.images)
    train_ids = set(first.train.images[:, 0, 0, 0].tolist())
    val_ids = set(first.val.images[:, 0, 0, 0].tolist())
    assert not train_ids & val_ids


def test_truncated_archive_is_a_clear_error(tmp_path):
    written = write_archive(tmp_path, "cifar10")
    content = written["archive"].read_bytes()
    written["archive"].write_bytes(content[: len(content) // 2])
    with pytest.raises(UsageError, match="corrupt or truncated"):
        datasets.load("cifar10", tmp_path, 0.02, download=False)
    assert not (tmp_path / LAYOUT["cifar10"]["folder"]).exists(), "a failed extraction left a folder behind"


def test_folder_missing_a_batch_is_a_clear_error(tmp_path):
    written = write_folder(tmp_path, "cifar10")
    (written["folder"] / "data_batch_3").unlink()
    with pytest.raises(UsageError, match="lacks data_batch_3"):
        datasets.load("cifar10", tmp_path, 0.02, download=False)


def test_absent_dataset_says_where_to_put_the_archive(tmp_path):
    with pytest.raises(UsageError, match="put cifar-100-python.tar.gz"):
        datasets.load("cifar100", tmp_path, 0.02, download=False)


def test_digits_are_the_real_scikit_learn_digits():
    splits = datasets.load("digits", "unused", 0.1)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797
    assert splits.train.images.shape[1:] == (3, 8, 8)
    assert splits.mirror_invariant is False
    assert "real data" in splits.source


def test_unknown_dataset_suggests_the_closest():
    with pytest.raises(UsageError, match="Did you mean 'cifar10'"):
        datasets.info("cifar1O")
