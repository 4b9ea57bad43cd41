"""tf.data pipelines: (image, mask) batches for training and evaluation.

(Under the JAX and PyTorch backends `make_dataset` gives the same batches without
TensorFlow, from `kseg.data.pydataset`.)

    pairs -> [epoch order: seeded shuffle when training] -> parallel read (+ augment)
          -> [skip bad pairs] -> batch (padding image 0, mask 255) -> prefetch

Reading and augmentation run in OpenCV/albumentations through `tf.numpy_function`, in
parallel threads (OpenCV releases the GIL while decoding and resizing). Every sample gets
its own seed from (seed, epoch, position), so the output is the same from run to run
whatever the thread timing. The dataset is finite: one pass is one epoch.
"""

import contextlib
import dataclasses
import logging
import operator
import threading

import numpy as np

from kseg.data.augment import DEFAULT_SCALE_RANGE, TrainAugmenter, check_crop, epoch_order
from kseg.errors import KsegError

logger = logging.getLogger("kseg")

# Marks messages of errors raised inside the pipeline so `data_errors` can recover them
# from the TensorFlow error that carries them out of tf.numpy_function.
ERROR_MARKER = "[kseg-data] "


class SkippedPairs:
    """Counts the bad pairs a `skip_bad` pipeline has left out (each pair counted once).

    Attributes:
        count: int. Number of distinct bad pairs seen so far.
        problems: list. (mask_or_image_path, message) for each of them.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._seen = set()
        self.problems = []

    @property
    def count(self):
        return len(self.problems)

    def add(self, pair, message):
        with self._lock:
            if pair in self._seen:
                return
            self._seen.add(pair)
            self.problems.append((pair[0], message))
            total = len(self.problems)
        logger.warning("skipping bad pair (%d so far): %s", total, message)


class _EpochOrder:
    """A generator factory: each call yields one epoch's (indices, sample seeds) as two
    arrays, once (the pipeline unbatches them: one Python call per pass, not per sample).
    Passes are numbered 0, 1, 2, ... until `set_epoch(n)`: every pass after it is pass n
    (until it is called again), however many iterators are made meanwhile."""

    def __init__(self, size, seed, shuffle):
        self.size = size
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        self.chosen = None
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            epoch = self.epoch if self.chosen is None else self.chosen
            self.epoch += 1
        order, seeds = epoch_order(self.size, self.seed, self.shuffle, epoch)
        yield order.astype(np.int64), seeds.astype(np.int64)

    def set_epoch(self, epoch):
        with self._lock:
            self.chosen = int(epoch)


class _PairLoader:
    """Reads (and augments) the pair at an index, for both engines."""

    def __init__(self, spec, pairs, augmenter, skip_bad, skipped):
        self.spec = spec
        self.pairs = pairs
        self.augmenter = augmenter
        self.skip_bad = skip_bad
        self.skipped = skipped

    def read(self, index, seed):
        """(image, mask), or None for a bad pair under skip_bad (else its KsegError)."""
        pair = self.pairs[int(index)]
        try:
            image, mask = self.spec.read_pair(*pair)
        except KsegError as error:
            if not self.skip_bad:
                raise
            self.skipped.add(pair, str(error))
            return None
        if self.augmenter is not None:
            image, mask = self.augmenter(image, mask, int(seed))
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)

    def __call__(self, index, seed):
        """`read` for tf.numpy_function: (image, mask, ok), an error's message marked."""
        try:
            sample = self.read(index, seed)
        except KsegError as error:
            raise ValueError(ERROR_MARKER + str(error)) from None
        if sample is None:
            return np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.uint8), np.False_
        return *sample, np.True_


@dataclasses.dataclass(frozen=True)
class DatasetOptions:
    """How `make_dataset` reads, augments and batches a split.

    Args:
        crop: tuple or None. (height, width) of training crops; smaller scaled images are
            padded. Ignored when not training.
        scale_range: tuple. (low, high) random scale factors for training.
        seed: int. Fixes the shuffle and every augmentation.
        skip_bad: bool. Leave out pairs that cannot be read (counted in
            `dataset.skipped`, a SkippedPairs, and logged); otherwise the first bad pair
            stops iteration with an error naming the file (see `data_errors`).
        workers: int or None. Reader threads; None lets tf.data tune it (one per core, at
            most 8, without tf.data).
        engine: str or None. "tf.data", "python", or None: tf.data under the TensorFlow
            backend, python under the others.
        pad_to: int. Without tf.data only: blank samples (image 0, mask ignored) round every
            batch up to a multiple of it (the devices a data-parallel step splits it over).
        max_pairs: int or None. Read only the split's first N pairs (evaluation batches
            group images by size, so the first N batches may not be the first N images).
    """

    crop: tuple = None
    scale_range: tuple = DEFAULT_SCALE_RANGE
    seed: int = 0
    skip_bad: bool = False
    workers: int = None
    engine: str = None
    pad_to: int = 1
    max_pairs: int = None


def make_dataset(spec, split, *, training, batch_size, options=DatasetOptions()):
    """Builds a tf.data.Dataset of (images uint8 [B, H, W, 3], masks uint8 [B, H, W]).

    Under other keras backends (or engine="python") `kseg.data.pydataset` gives the same
    batches without TensorFlow: a keras PyDataset when training, else numpy batches.

    Args:
        spec: DatasetSpec. From `get_dataset_spec`.
        split: str. The split to read, e.g. "train" or "val".
        training: bool. True: seeded shuffle and augmentation (random scale, pad/crop to
            the crop, horizontal flip, colour jitter). False: fixed order, whole images.
        batch_size: int. Samples per batch; the last batch may be smaller. Images of
            different sizes in one batch are padded (image 0, mask 255).
        options: DatasetOptions. Crop, scales, seed, bad pairs, readers and engine.

    Returns:
        tf.data.Dataset, finite, with `skipped` (a SkippedPairs), `num_pairs` (pairs read)
        and `set_epoch(n)`: every later pass (also of datasets made from it by `take`) is
        pass n, its order and augmentation chosen by the seed and n. Without it, tf.data's
        passes are 0, 1, 2, ...; the python engine's all 0.

    Raises:
        KsegError: bad arguments, or a split `spec.pairs` cannot list (no root, empty).
    """
    try:
        size = operator.index(batch_size)
    except TypeError:
        size = 0
    if size < 1:
        raise KsegError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
    batch_size = size
    crop = None if options.crop is None else check_crop(options.crop)
    pairs = spec.pairs(split)[: options.max_pairs]
    augmenter = TrainAugmenter(crop=crop, scale_range=options.scale_range) if training else None
    skipped = SkippedPairs()
    loader = _PairLoader(spec, pairs, augmenter, options.skip_bad, skipped)
    engine = options.engine
    if (engine or default_engine()) == "python":
        from kseg.data.pydataset import EvaluationBatches, Samples, TrainingBatches

        samples = Samples(loader, options.seed, shuffle=training)
        kind = TrainingBatches if training else EvaluationBatches
        return kind(samples, batch_size, options.pad_to, workers=options.workers)
    if engine not in (None, "tf.data"):
        raise KsegError(f"engine must be 'tf.data' or 'python'. Received: engine={engine!r}")
    import tensorflow as tf

    order = _EpochOrder(len(pairs), options.seed, shuffle=training)
    dataset = _read_pairs(order, loader, options.skip_bad, options.workers)
    dataset = _batch(dataset, batch_size, crop if training else None, training, spec.ignore_index)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    dataset.skipped, dataset.num_pairs, dataset.set_epoch = skipped, len(pairs), order.set_epoch
    return dataset


def default_engine():
    """"tf.data" under keras' TensorFlow backend, "python" (no TensorFlow) under the others."""
    import keras

    return "tf.data" if keras.backend.backend() == "tensorflow" else "python"


def _read_pairs(order, loader, skip_bad, workers):
    """(image, mask) samples in `order`, read by `loader` on tf.data's threads."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_generator(
        order,
        output_signature=(tf.TensorSpec((None,), tf.int64), tf.TensorSpec((None,), tf.int64)),
    ).unbatch()

    def read(index, sample_seed):
        image, mask, ok = tf.numpy_function(
            loader, [index, sample_seed], [tf.uint8, tf.uint8, tf.bool], stateful=False
        )
        image.set_shape([None, None, 3])
        mask.set_shape([None, None])
        ok.set_shape([])
        return image, mask, ok

    parallel = tf.data.AUTOTUNE if workers is None else int(workers)
    dataset = dataset.map(read, num_parallel_calls=parallel, deterministic=True)
    if skip_bad:
        dataset = dataset.filter(lambda image, mask, ok: ok)
    return dataset.map(lambda image, mask, ok: (image, mask))


def _batch(dataset, batch_size, crop, training, ignore_index):
    """Batches samples: fixed-size crops as they are, evaluation images by size, padded
    whole training images otherwise (image 0, mask `ignore_index`)."""
    import tensorflow as tf

    if training and crop is not None:
        height, width = crop
        dataset = dataset.map(
            lambda image, mask: (tf.ensure_shape(image, [height, width, 3]), tf.ensure_shape(mask, [height, width]))
        )
        return dataset.batch(batch_size)
    if not training:
        # Evaluation batches hold images of one size only. Padding to the largest image in
        # a batch would change the scores of real pixels (VGG16 sees hundreds of pixels
        # around each one), so results would depend on the batch size.
        def size_key(image, mask):
            shape = tf.shape(image, out_type=tf.int64)
            return shape[0] * 65536 + shape[1]

        return dataset.group_by_window(
            key_func=size_key,
            reduce_func=lambda key, window: window.batch(batch_size),
            window_size=batch_size,
        )
    return dataset.padded_batch(
        batch_size,
        padded_shapes=([None, None, 3], [None, None]),
        padding_values=(tf.constant(0, tf.uint8), tf.constant(ignore_index, tf.uint8)),
    )


@contextlib.contextmanager
def data_errors():
    """Turns a bad-pair error raised while iterating a kseg dataset back into KsegError.

    TensorFlow carries errors out of a pipeline as its own error types; inside this
    context the message the pipeline gave (naming the file) is raised as a KsegError.
    Without TensorFlow (another keras backend) the pipeline raises KsegError itself, and
    this context does nothing.

        with data_errors():
            model.fit(make_dataset(spec, "train", training=True, batch_size=8), ...)
    """
    if default_engine() != "tf.data":
        yield
        return
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as error:
        message = str(error.message if hasattr(error, "message") else error)
        # tf.data keeps only the text of an error raised inside the pipeline: the marker
        # put in front of it is how kseg's own errors are told from TensorFlow's.
        if ERROR_MARKER not in message:
            raise
        text = message.split(ERROR_MARKER, 1)[1].splitlines()[0].strip()
        raise KsegError(text) from None
