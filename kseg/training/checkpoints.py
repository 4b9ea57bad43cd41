"""Checkpoints and what a resumed run must match.

`checkpoints/last.keras` holds the model, the optimizer state (so the learning rate
schedule, which is a function of the optimizer's step count, continues where it stopped)
and, as an extra `kseg_state.json` member of the zip, the epoch count, the best score, the
history and the dropout random-generator states (`RunState`). Each checkpoint is written
under a temporary name and renamed, so a kill (even SIGKILL) leaves the previous one
whole; `train(config, resume=True)` continues from it with the same result an
uninterrupted run would have had.

A resumed run keeps what the checkpoint depends on (`kseg.config.FIXED_ON_RESUME`):
`kseg.config.resolve` refuses options that would change it, `check_trained_with` refuses a config.yaml edited
since the checkpoint was written.
"""

import dataclasses
import json
import math
import os
import warnings
import zipfile

import keras
import numpy as np

from kseg.config import FIXED_ON_RESUME, same_setting
from kseg.errors import KsegError, is_disk_full
from kseg.files import brief, one_line
from kseg.outputs import writing
from kseg.training.distribution import resolve_precision

STATE_MEMBER = "kseg_state.json"


def save_checkpoint(model, path, state=None):
    """Saves `model` to the `.keras` file `path` atomically, with `state` inside the zip.

    Args:
        model: keras.Model. Saved with its optimizer state when compiled.
        path: str. Destination `.keras` file.
        state: dict or None. JSON-serialisable training state, stored as kseg_state.json.
    """
    with writing(path) as temporary:
        model.save(temporary)
        if state is not None:
            with zipfile.ZipFile(temporary, "a") as archive:
                archive.writestr(STATE_MEMBER, json.dumps(state))
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())


def read_checkpoint_state(path):
    """Returns the training state stored in a `last.keras` checkpoint."""
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.getinfo(STATE_MEMBER).file_size > 64 << 20:
                raise ValueError(f"{STATE_MEMBER} is too large")
            state = json.loads(archive.read(STATE_MEMBER))
        if not isinstance(state, dict):
            raise ValueError(f"{STATE_MEMBER} is not a JSON object")
        return state
    except KeyError:
        raise KsegError(f"{path}: no training state inside; it cannot be resumed from") from None
    # RuntimeError: an encrypted member, an unknown compression method (NotImplementedError),
    # JSON nested too deeply (RecursionError).
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError) as error:
        raise KsegError(f"{path}: unreadable checkpoint ({brief(str(error), 200)[1:-1]})") from None


@dataclasses.dataclass
class RunState:
    """What a checkpoint remembers of the run besides the weights and optimizer."""

    epoch: int = 0  # completed epochs
    best_score: float = -math.inf
    best_epoch: int = 0
    history: list = dataclasses.field(default_factory=list)
    seed_generators: list = dataclasses.field(default_factory=list)
    # What the weights and optimizer state were made with (FIXED_ON_RESUME, num_classes);
    # empty in checkpoints of kseg versions before it was stored.
    trained_with: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_checkpoint(cls, path):
        """The state stored in a checkpoint, checked (a bad one is a one-line KsegError)."""
        kinds = {"epoch": int, "best_epoch": int, "best_score": (int, float), "history": list,
                 "seed_generators": list, "trained_with": dict}  # fmt: skip
        state = {}
        for key, value in read_checkpoint_state(path).items():
            if key not in kinds:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, kinds[key])
                or (key == "epoch" and value < 0)
                or (key == "history" and not all(map(_is_log_row, value)))
            ):
                raise KsegError(f"{path}: unreadable training state ({key} is {brief(value, 40)})")
            state[key] = value
        return cls(**state)


def _is_log_row(row):
    """Whether `row` is a history row as kseg writes them (log.csv, training_curves.png and
    the not-learning check read them): numbers or None by name, with an epoch and a loss."""
    if not isinstance(row, dict) or row.get("epoch") is None or row.get("loss") is None:
        return False
    return all(value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
               for value in row.values())  # fmt: skip


def trained_with(config, num_classes):
    """What a checkpoint's weights and optimizer state depend on, as stored inside it."""
    return dict({key: getattr(config, key) for key in FIXED_ON_RESUME}, num_classes=int(num_classes))


def check_trained_with(config, state, num_classes, checkpoint, run_dir):
    """Refuses to resume when config.yaml (or the dataset) no longer matches the checkpoint."""
    current = trained_with(config, num_classes)
    for key, saved in state.trained_with.items():
        if key not in current or current[key] == saved:
            continue
        if key == "num_classes":
            raise KsegError(
                f"{checkpoint}: the checkpoint was trained for {brief(saved)} classes, but the dataset of "
                f"{run_dir}/config.yaml has {current[key]}; use the dataset the run was trained on, or "
                "start a new run (--init-from keeps the matching layers)"
            )
        # config.yaml's value may still be the same setting, e.g. `auto` precision (a
        # config.yaml edited to auto), resolved on this machine to the mode the run used.
        if key == "mixed_precision":
            same = resolve_precision(current[key]) == resolve_precision(saved)
        else:
            same = same_setting(key, current[key], saved)
        if same:
            continue
        raise KsegError(
            f"{run_dir}/config.yaml says {key} {brief(current[key], 60)}, the checkpoint {checkpoint} "
            f"was trained with {brief(saved, 60)}; put {key} back in config.yaml, or start a new run "
            f"(e.g. --init-from {run_dir})"
        )


def load_checkpoint_weights(model, path, run_dir):
    """Loads a checkpoint's weights and optimizer state; any mismatch is one short line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as error:
            if is_disk_full(error) or isinstance(error, MemoryError):
                raise
            first = " ".join(str(error).strip().splitlines()[0].split()) if str(error).strip() else ""
            raise KsegError(
                f"{path}: cannot resume from this checkpoint: it does not fit the model {run_dir}/config.yaml "
                f"describes ({first[:160] or type(error).__name__}); restore config.yaml as it was, or start "
                "a new run"
            ) from None
    # keras reports a layer or optimizer state that does not fit only as a warning with this
    # text (no warning class of its own), so the text is the only way to tell it apart.
    skipped_loading = [str(w.message) for w in caught if "Skipping variable loading" in str(w.message)]
    if skipped_loading:  # keras only warns when optimizer or layer state does not fit
        raise KsegError(
            f"{path}: the checkpoint does not fit this run ({one_line(skipped_loading[0], 160)}); "
            f"restore {run_dir}/config.yaml as it was, or start a new run"
        )


def seed_generator_variables(model):
    """The random-generator state variables (dropout) that `.keras` files do not keep."""
    return [v for v in model.variables if "seed_generator_state" in v.path]


def seed_generator_states(model):
    """The dropout generators' states, as JSON-ready lists (for `RunState.seed_generators`)."""
    return [np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in seed_generator_variables(model)]


def restore_seed_generators(model, states, path):
    """Sets the dropout generators' states stored in the checkpoint `path` (a bad one, or
    one per generator of another count, is a one-line KsegError; none stored leaves them)."""
    try:
        for variable, value in zip(seed_generator_variables(model), states, strict=bool(states)):
            variable.assign(np.asarray(value, dtype=variable.dtype))
    except (ValueError, TypeError, OverflowError):
        raise KsegError(f"{path}: unreadable training state (seed_generators is {brief(states, 40)})") from None
