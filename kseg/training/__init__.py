"""Training an FCN: `train(config) -> run_dir`, used by `kseg train` and from Python.

    loop.py          the epoch loop: `train`, `TrainingRun` (what one run works with)
    checkpoints.py   checkpoints with kseg_state.json, resume state, trained_with checks
    logs.py          log.csv, training_curves.png, TensorBoard scalars
    distribution.py  dtype policy, strategies, TF_CONFIG, waiting for workers, watchdog
    data_checks.py   verification of the splits, class weights
    build.py         the model of a config and its optimizer
    lock.py          one training process per run folder; temporaries of killed runs

The names below are the package's public ones; import them from `kseg.training`.
"""

from kseg.training.build import build_model, build_optimizer, resolve_init_from
from kseg.training.checkpoints import (
    STATE_MEMBER,
    RunState,
    check_trained_with,
    read_checkpoint_state,
    remove_stale_temporaries,
    save_checkpoint,
    seed_generator_variables,
    trained_with,
)
from kseg.training.data_checks import (
    check_dataset,
    check_validation_split,
    compute_class_weights,
    count_labelled_pixels,
)
from kseg.training.distribution import (
    PRECISION_POLICIES,
    Watchdog,
    dtype_policy,
    is_chief,
    make_strategy,
    parse_address,
    read_tf_config,
    resolve_precision,
    wait_for_workers,
)
from kseg.training.lock import RunLock, RunLockedError, default_run_dir, lock_run_dir, sweep_temporaries
from kseg.training.logs import LOG_COLUMNS, ScalarWriter, plot_training_curves, write_log_csv
from kseg.training.loop import TrainingRun, train

__all__ = [
    "LOG_COLUMNS", "PRECISION_POLICIES", "STATE_MEMBER", "RunLock", "RunLockedError",
    "RunState", "ScalarWriter", "TrainingRun", "Watchdog", "build_model", "build_optimizer",
    "check_dataset", "check_trained_with", "check_validation_split", "compute_class_weights",
    "count_labelled_pixels", "default_run_dir", "dtype_policy", "is_chief", "lock_run_dir",
    "make_strategy", "parse_address", "plot_training_curves", "read_checkpoint_state", "read_tf_config",
    "remove_stale_temporaries", "resolve_init_from", "resolve_precision",
    "save_checkpoint", "seed_generator_variables", "sweep_temporaries", "train", "trained_with",
    "wait_for_workers", "write_log_csv",
]  # fmt: skip
