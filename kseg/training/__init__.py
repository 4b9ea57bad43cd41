"""Training an FCN: `train(config) -> run_dir`, used by `kseg train` and from Python.

    loop.py          `train`, `TrainingRun` (what one run works with): one keras fit
                     over all epochs, with kseg's callbacks around the user's
    checkpoints.py   checkpoints with kseg_state.json, resume state, trained_with checks
    logs.py          log.csv, training_curves.png, TensorBoard scalars
    distribution.py  dtype policy, strategies, TF_CONFIG, waiting for workers, watchdog
    data_checks.py   verification of the splits, class weights
    build.py         the model of a config and its optimizer
    lock.py          one training process per run folder; temporaries of killed runs

The names below are the package's public ones: training, and what a run's checkpoint
says of it. The rest is imported from the modules that define it.
"""

from kseg.training.checkpoints import RunState, read_checkpoint_state
from kseg.training.loop import TrainingRun, train

__all__ = ["RunState", "TrainingRun", "read_checkpoint_state", "train"]
