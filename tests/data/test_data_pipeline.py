"""make_dataset: shapes, dtypes, padding, determinism and bad pairs."""

import collections

import numpy as np
import pytest
from data_helpers import make_folder

from kseg.data import DatasetOptions, data_errors, get_dataset_spec, make_dataset
from kseg.errors import KsegError


@pytest.fixture
def spec(tmp_path):
    make_folder(str(tmp_path), counts=(("train", 5), ("val", 3)), sizes=((24, 32), (20, 28), (30, 18)))
    return get_dataset_spec("folder", data_dir=str(tmp_path))


def _collect(dataset):
    images, masks = [], []
    for image, mask in dataset:
        images.append(image.numpy())
        masks.append(mask.numpy())
    return images, masks


def test_training_batches_have_crop_shape(spec):
    dataset = make_dataset(spec, "train", training=True, batch_size=2, options=DatasetOptions(crop=(16, 20), seed=3))
    assert dataset.element_spec[0].shape.as_list() == [None, 16, 20, 3]
    assert dataset.element_spec[1].shape.as_list() == [None, 16, 20]
    images, masks = _collect(dataset)
    assert [len(batch) for batch in images] == [2, 2, 1]  # one pass = one epoch, no repeat
    for image, mask in zip(images, masks):
        assert image.dtype == np.uint8 and mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) <= {0, 1, 2, 255}
    assert dataset.num_pairs == 5 and dataset.skipped.count == 0


def test_evaluation_batches_whole_images_of_one_size_without_padding(tmp_path):
    sizes = ((24, 32), (20, 28), (30, 18))
    make_folder(str(tmp_path), counts=(("train", 1), ("val", 5)), sizes=sizes)
    spec = get_dataset_spec("folder", data_dir=str(tmp_path))
    images, masks = _collect(make_dataset(spec, "val", training=False, batch_size=3))
    expected = [spec.read_pair(*pair) for pair in spec.pairs("val")]
    # five images of three sizes (2 + 2 + 1): same-size images share a batch, none is padded
    by_size = collections.Counter(image.shape for image, _ in expected)
    assert sorted(by_size.values()) == [1, 2, 2]
    assert sorted(batch.shape for batch in images) == sorted((n, *shape) for shape, n in by_size.items())
    found = [(image, mask) for batch, mask_batch in zip(images, masks) for image, mask in zip(batch, mask_batch)]
    assert len(found) == len(expected)
    for image, mask in expected:
        assert any(np.array_equal(image, i) and np.array_equal(mask, m) for i, m in found)


def test_training_without_crop_pads_images_with_0_and_masks_with_255(spec):
    images, masks = _collect(make_dataset(spec, "train", training=True, batch_size=5, options=DatasetOptions(seed=0)))
    assert len(images) == 1
    for image, mask in zip(images[0], masks[0]):
        labelled = (mask != 255).any(axis=1)
        rows = np.flatnonzero(labelled)
        assert (image[rows[-1] + 1 :] == 0).all()  # below the image: black, ignored
        assert (mask[rows[-1] + 1 :] == 255).all()


def test_training_is_deterministic_by_seed_and_epochs_differ(spec):
    def first_epochs(seed):
        options = DatasetOptions(crop=(16, 16), seed=seed)
        dataset = make_dataset(spec, "train", training=True, batch_size=5, options=options)
        return [_collect(dataset) for _ in range(2)]

    first, again, other = first_epochs(1), first_epochs(1), first_epochs(2)
    for epoch in range(2):
        np.testing.assert_array_equal(first[epoch][0][0], again[epoch][0][0])
        np.testing.assert_array_equal(first[epoch][1][0], again[epoch][1][0])
    assert not np.array_equal(first[0][0][0], other[0][0][0])
    assert not np.array_equal(first[0][0][0], first[1][0][0])


def test_set_epoch_chooses_the_pass_for_the_dataset_and_what_take_makes_of_it(spec):
    def dataset():
        return make_dataset(spec, "train", training=True, batch_size=2, options=DatasetOptions(crop=(16, 16), seed=4))

    straight = dataset()
    passes = [_collect(straight) for _ in range(3)]  # passes 0, 1, 2
    chosen = dataset()
    chosen.set_epoch(1)
    iter(chosen)  # an iterator made and never read changes nothing
    for _ in range(2):  # the chosen pass, as often as it is read
        images, masks = _collect(chosen)
        np.testing.assert_array_equal(images[0], passes[1][0][0])
        np.testing.assert_array_equal(masks[-1], passes[1][1][-1])
    original = dataset()
    taken = original.take(1)
    original.set_epoch(2)
    np.testing.assert_array_equal(_collect(taken)[0][0], passes[2][0][0])


def test_bad_pair_is_skipped_and_counted_or_named(spec, tmp_path):
    bad_image = spec.pairs("train")[1][0]
    with open(bad_image, "rb") as handle:
        data = handle.read()
    with open(bad_image, "wb") as handle:
        handle.write(data[: len(data) // 3])  # truncated PNG
    options = DatasetOptions(crop=(16, 16), skip_bad=True)
    dataset = make_dataset(spec, "train", training=True, batch_size=2, options=options)
    images, _ = _collect(dataset)
    assert sum(len(batch) for batch in images) == 4
    assert dataset.skipped.count == 1 and dataset.skipped.problems[0][0] == bad_image
    strict = make_dataset(spec, "train", training=False, batch_size=1)
    with pytest.raises(KsegError, match="train1.png"), data_errors():
        _collect(strict)


def test_bad_arguments(spec):
    with pytest.raises(KsegError, match="batch_size"):
        make_dataset(spec, "train", training=True, batch_size=0)
    with pytest.raises(KsegError, match=r"Received: batch_size=2\.5$"):  # the value given, not a stand-in
        make_dataset(spec, "train", training=True, batch_size=2.5)
    with pytest.raises(KsegError, match="crop"):
        make_dataset(spec, "train", training=True, batch_size=1, options=DatasetOptions(crop=(16,)))
    with pytest.raises(KsegError, match="no split folder"):
        make_dataset(spec, "test", training=False, batch_size=1)
