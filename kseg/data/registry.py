"""Dataset names -> specs: how `--data NAME --data-dir DIR` becomes a DatasetSpec."""

import os

from kseg.data.camvid import CamVidSpec
from kseg.data.cityscapes import ENV_VARIABLE, CityscapesSpec
from kseg.data.folder import FolderSpec
from kseg.data.synthetic import SyntheticSpec
from kseg.data.voc import VOCSpec
from kseg.errors import KsegError

DATASET_NAMES = ("cityscapes", "voc", "camvid", "folder", "synthetic")


def get_dataset_spec(name, data_dir=None, classes_file=None):
    """Returns the DatasetSpec for a dataset name.

    Args:
        name: str. One of DATASET_NAMES.
        data_dir: str or None. The dataset root. For cityscapes the default is
            $CITYSCAPES_DATASET; for synthetic it is ./data/synthetic (generated there if
            missing); the others need it.
        classes_file: str or None. The class list of folder/synthetic datasets (default
            DATA_DIR/classes.yaml); not accepted for the fixed-class datasets.

    Raises:
        KsegError: unknown name, or no root given or found.
    """
    if name not in DATASET_NAMES:
        raise KsegError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
    if classes_file is not None and name not in ("folder", "synthetic"):
        raise KsegError(f"--classes applies to folder and synthetic datasets, not {name}")
    if name == "synthetic":
        return SyntheticSpec(data_dir, classes_file)
    if name == "cityscapes":
        root = data_dir or os.environ.get(ENV_VARIABLE)
        if not root:
            raise KsegError(f"cityscapes: pass --data-dir or set ${ENV_VARIABLE} to the dataset root")
        return CityscapesSpec(root)
    if not data_dir:
        raise KsegError(f"{name}: pass --data-dir, the dataset's root folder")
    if name == "voc":
        return VOCSpec(data_dir)
    if name == "camvid":
        return CamVidSpec(data_dir)

    return FolderSpec(data_dir, classes_file)
