"""Datasets: specs (classes, files, mask encodings), tf.data pipelines, verification.

    spec = get_dataset_spec("camvid", data_dir="...")
    dataset = make_dataset(spec, "train", training=True, batch_size=8, options=DatasetOptions(crop=(360, 480)))

Images stay uint8 RGB until the model (which does its own preprocessing); masks hold
train ids 0..num_classes-1 and 255 for "ignore", in every dataset.
"""

from kseg.data.pipeline import DatasetOptions, data_errors, make_dataset
from kseg.data.registry import DATASET_NAMES, get_dataset_spec
from kseg.data.spec import DatasetSpec
from kseg.labels import IGNORE_INDEX

__all__ = [
    "DATASET_NAMES", "IGNORE_INDEX", "DatasetOptions", "DatasetSpec", "data_errors", "get_dataset_spec",
    "make_dataset",
]
