"""Class statistics and median-frequency weights (kseg/data/stats.py)."""

import numpy as np
from data_helpers import make_folder

from kseg.data import get_dataset_spec
from kseg.data.stats import DatasetStats, compute_stats

IGNORE = 255


def test_median_frequency_by_hand():
    # Eigen & Fergus: f_c = pixels of c / all pixels of the images holding c.
    # image A: 3 px of class 0, 1 px of class 1; image B: 2 px of class 0, 2 px ignored.
    stats = DatasetStats(("a", "b", "c"))
    stats.add(np.array([[0, 0], [0, 1]], np.uint8))
    stats.add(np.array([[0, 0], [IGNORE, IGNORE]], np.uint8))
    np.testing.assert_array_equal(stats.pixels, [5, 1, 0])
    np.testing.assert_array_equal(stats.present_pixels, [8, 4, 0])
    median = np.median([5 / 8, 1 / 4])
    np.testing.assert_allclose(stats.median_frequency_weights(), [median / (5 / 8), median / (1 / 4), 0.0])
    np.testing.assert_allclose(stats.frequencies(), [5 / 6, 1 / 6, 0])


def test_training_uses_the_weights_data_stats_prints(tmp_path):
    from kseg.config import TrainConfig
    from kseg.training.data_checks import compute_class_weights

    make_folder(str(tmp_path), counts=(("train", 6), ("val", 1)), sizes=((24, 32), (20, 28)))
    spec = get_dataset_spec("folder", data_dir=str(tmp_path))
    config = TrainConfig(model="fcn8s", data="folder", data_dir=str(tmp_path), weights="none",
                         class_weights="median-frequency")
    expected = compute_stats(spec, "train").median_frequency_weights()
    assert expected.min() > 0
    np.testing.assert_allclose(compute_class_weights(config, spec), expected, atol=1e-6)
    milder = TrainConfig(model="fcn8s", data="folder", data_dir=str(tmp_path), weights="none",
                         class_weights="sqrt-median-frequency")
    np.testing.assert_allclose(compute_class_weights(milder, spec), np.sqrt(expected), atol=1e-6)
