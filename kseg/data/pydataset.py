"""The data path without TensorFlow: (image, mask) batches for the JAX and PyTorch backends.

    pairs -> [seeded order, one seed per sample] -> read (+ augment) on reader threads
          -> [skip bad pairs] -> batch (padding image 0, mask 255)

The same reading (`DatasetSpec.read_pair`) and augmentation (`TrainAugmenter`, OpenCV and
albumentations) as the tf.data pipeline of `kseg.data.pipeline`, with the same order and
per-sample seeds (`epoch_order`): for one seed, training batches of fixed-size crops hold
the very same pixels under every backend. Batches are numpy arrays.

Training batches are a `keras.utils.PyDataset` (random access; each batch's samples read
on `workers` threads, the next batch started while one is used); evaluation batches, which
group images of one size like tf.data's `group_by_window`, are read in order by
`kseg.parallel.ordered_map` threads and handed to keras as a generator. Every wait for a
reader thread is bounded (`kseg.parallel.wait_for`, `KSEG_READ_TIMEOUT`).

`pad_to` rounds every batch up to a multiple of the number of devices data-parallel
training splits it over, with blank samples (image 0, mask 255): the loss is the mean over
labelled pixels and the confusion matrix skips 255, so the blanks change neither.
"""

import itertools
import math
import threading

import keras
import numpy as np

from kseg.data.augment import epoch_order
from kseg.parallel import ReaderPool, default_workers, ordered_map, read_timeout, wait_for


class Samples:
    """Reads the samples at positions of one pass; None for a bad pair under skip_bad.

    Pass 0 until `set_epoch` chooses another (its order and sample seeds: `epoch_order`).
    """

    def __init__(self, loader, seed, shuffle):
        self.loader = loader
        self.seed = seed
        self.shuffle = shuffle
        self.set_epoch(0)

    def set_epoch(self, epoch):
        self.order, self.seeds = epoch_order(len(self.loader.pairs), self.seed, self.shuffle, epoch)

    def __len__(self):
        return len(self.order)

    def describe(self, position):
        """The image of the pair at `position`, for messages."""
        return str(self.loader.pairs[int(self.order[position])][0])

    def read(self, position):
        return self.loader.read(self.order[position], self.seeds[position])


def stack_batch(samples, ignore_index, pad_to=1):
    """Stacks (image, mask) samples into one batch, padding smaller ones at the bottom and
    right (image 0, mask `ignore_index`) and adding blank samples up to a multiple of
    `pad_to` (at least one sample)."""
    height = max((image.shape[0] for image, _ in samples), default=1)
    width = max((image.shape[1] for image, _ in samples), default=1)
    count = math.ceil(max(len(samples), 1) / pad_to) * pad_to
    images = np.zeros((count, height, width, 3), np.uint8)
    masks = np.full((count, height, width), ignore_index, np.uint8)
    for number, (image, mask) in enumerate(samples):
        images[number, : image.shape[0], : image.shape[1]] = image
        masks[number, : mask.shape[0], : mask.shape[1]] = mask
    return images, masks


class _Batches:
    """What both kinds of batches keep: the samples, how they are batched, and `take`."""

    def __init__(self, samples, batch_size, pad_to=1, limit=None, workers=None):
        self.samples = samples
        self.batch_size = int(batch_size)
        self.ignore_index = int(samples.loader.spec.ignore_index)  # the mask value of padding
        self.pad_to = max(int(pad_to), 1)
        self.limit = limit
        self.threads = workers
        self.skipped = samples.loader.skipped
        self.num_pairs = len(samples)

    def take(self, batches):
        """The first `batches` batches (like tf.data's take)."""
        return type(self)(self.samples, self.batch_size, self.pad_to, self._limit(int(batches)), self.threads)


class TrainingBatches(_Batches, keras.utils.PyDataset):
    """Training batches of one pass: batch `i` holds the samples at positions
    [i * batch_size, (i + 1) * batch_size) of the seeded order.

    The samples of a batch are read on `workers` threads of the dataset's own, and
    the next batch's are started while the current one is used. Not keras' own
    workers: its queue, started for a first look at the data before training, goes on
    from where that look stopped, so the first epoch of a model would see its batches
    shifted by one (and a resumed run would differ from an uninterrupted one).
    """

    def __init__(self, samples, batch_size, pad_to=1, limit=None, workers=None):
        keras.utils.PyDataset.__init__(self, workers=1, use_multiprocessing=False)
        _Batches.__init__(self, samples, batch_size, pad_to, limit, workers or default_workers())
        self._pool = None
        self._pending = {}
        self._lock = threading.Lock()

    def __len__(self):  # keras' PyDataset gives it as `num_batches` too
        batches = math.ceil(len(self.samples) / self.batch_size)
        return batches if self.limit is None else min(batches, self.limit)

    def _submit(self, index):
        if self._pool is None:
            self._pool = ReaderPool(self.threads, name="kseg-data")
        start = index * self.batch_size
        positions = range(start, min(start + self.batch_size, len(self.samples)))
        return [(position, self._pool.submit(self.samples.read, position)) for position in positions]

    def __getitem__(self, index):
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} of {self.num_batches}")
        with self._lock:
            futures = self._pending.pop(index, None) or self._submit(index)
            following = index + 1
            if following < self.num_batches and following not in self._pending:
                self._pending[following] = self._submit(following)
        timeout = read_timeout()
        read = (wait_for(future, lambda position=position: self.samples.describe(position), timeout)
                for position, future in futures)  # fmt: skip
        samples = [sample for sample in read if sample is not None]
        return stack_batch(samples, self.ignore_index, self.pad_to)

    def on_epoch_end(self):
        self.close()

    def set_epoch(self, epoch):
        """Makes every later pass pass `epoch` (and those of the datasets `take` made from this one)."""
        self.close()
        self.samples.set_epoch(epoch)

    def close(self):
        """Stops the reader threads (they start again when a batch is asked for)."""
        with self._lock:
            pool, self._pool, self._pending = self._pool, None, {}
        if pool is not None:
            pool.shutdown()

    def _limit(self, batches):
        return min(batches, self.num_batches)


class EvaluationBatches(_Batches):
    """Evaluation batches in the pairs' order, each of images of one size only.

    Like tf.data's `group_by_window`: a sample joins the open batch of its size, which is
    given out once it holds `batch_size` samples; what is left is given out at the end.
    Iterating gives (images uint8 [B, H, W, 3], masks uint8 [B, H, W]) numpy batches.
    """

    def _limit(self, batches):
        return batches  # at most that many: iteration stops at the last batch

    def __iter__(self):
        return itertools.islice(self._batches(), None if self.limit is None else max(self.limit, 0))

    def _batches(self):
        windows = {}
        for sample in ordered_map(self.samples.read, range(len(self.samples)), self.threads,
                                  describe=self.samples.describe):
            if sample is None:
                continue
            window = windows.setdefault(sample[0].shape[:2], [])
            window.append(sample)
            if len(window) == self.batch_size:
                del windows[sample[0].shape[:2]]
                yield stack_batch(window, self.ignore_index, self.pad_to)
        for window in windows.values():
            yield stack_batch(window, self.ignore_index, self.pad_to)

    def generator(self):
        """A generator over the batches (what keras' fit takes as validation data)."""
        yield from self
