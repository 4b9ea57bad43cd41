"""kseg: Fully Convolutional Networks for semantic segmentation with Keras 3.

The library's four calls, one per `kseg` verb (each verb calls its own once):

    import kseg
    from kseg.config import resolve

    run_dir = kseg.train(resolve({"model": "fcn8s", "data": "camvid", "data_dir": "data/camvid"}))
    result = kseg.evaluate(run_dir, data="camvid", data_dir="data/camvid", split="test")
    print(result.scores["mean_iou"])
    kseg.predict(["street.png"], model=run_dir, out="predictions")
    kseg.export(run_dir, format="tflite")

Their options beyond the first few are `kseg.config.TrainConfig`,
`kseg.evaluation.EvaluateOptions`, `kseg.prediction.PredictOptions` and
`kseg.exporting.ExportOptions`.
"""

import importlib

__version__ = "0.1.0"

# Where each call lives. They load keras and TensorFlow, so `import kseg` (and the CLI's
# `--help`) only imports their module when one is first used.
API = {
    "train": "kseg.training.loop",
    "evaluate": "kseg.evaluation",
    "predict": "kseg.prediction",
    "export": "kseg.exporting",
}
__all__ = [*API, "__version__"]


def __getattr__(name):
    if name in API:
        return getattr(importlib.import_module(API[name]), name)
    raise AttributeError(f"module 'kseg' has no attribute {name!r}")
