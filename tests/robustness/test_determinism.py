"""The same seed gives the same first-epoch loss on the CPU; another seed gives another."""

import csv
import os

import pytest
import robustness_corpus as corpus


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return corpus.write_dataset(tmp_path_factory.mktemp("seeded"), "odd_path")


def first_epoch_loss(data, run_dir, seed):
    from kseg.config import TrainConfig
    from kseg.training import train

    config = TrainConfig(
        model="fcn8s", data="folder", data_dir=data.root, weights="none", width=0.0625, epochs=1,
        batch_size=2, crop=[32, 32], optimizer="adam", lr=1e-3, dropout=0.5, val_split="none", train_split="all",
        mixed_precision="off", seed=seed, run_dir=str(run_dir),
    )
    train(config, verbose=0)
    with open(os.path.join(run_dir, "log.csv"), newline="") as handle:
        return float(next(csv.DictReader(handle))["loss"])


def test_same_seed_same_first_epoch_loss(data, tmp_path):
    first = first_epoch_loss(data, tmp_path / "a", seed=11)
    again = first_epoch_loss(data, tmp_path / "b", seed=11)
    other = first_epoch_loss(data, tmp_path / "c", seed=12)
    assert first == again
    assert other != first
