"""Does a reduced precision train like float32 on this machine? Checked before a run trusts it.

A mixed policy (mixed_bfloat16, mixed_float16) is only worth its speed if it learns what
float32 learns. That depends on the machine's kernels, not only on its instruction set: on
an Intel Xeon with AMX, TensorFlow's oneDNN computed the demo's bf16 forward pass right but
its training diverged (loss 20 after one epoch, a model that predicts one class), while the
same run learned on a CPU with AVX512-BF16 and no AMX, and with oneDNN turned off.

`check_precision` therefore trains two copies of the run's model, one in float32 and one in
the reduced policy, from the same initial weights with the run's optimizer, loss and class
weights, for `STEPS` steps on one fixed batch of the run's own training data, and compares
their losses. It costs seconds (the batch is at most `MAX_IMAGES` images of at most
`MAX_SIDE` pixels a side; dropout is off in both copies, so they differ only in precision).

The reduced policy agrees when, after the last step, its loss is finite, within
`LOSS_TOLERANCE` (relative) of float32's, and it made at least `MIN_PROGRESS` of the
progress float32 made on the batch.
"""

import dataclasses
import gc
import logging
import math
import time

import numpy as np

logger = logging.getLogger("kseg")

STEPS = 6  # optimizer updates compared
MAX_IMAGES = 8  # images in the check's batch
MAX_SIDE = 256  # longest side of the check's crops, in pixels
LOSS_TOLERANCE = 0.1  # largest relative gap of the last losses
MIN_PROGRESS = 0.5  # share of float32's loss decrease the reduced precision must make too


@dataclasses.dataclass
class PrecisionCheck:
    """What `check_precision` measured.

    Args:
        policy: str. The reduced policy checked, e.g. "mixed_bfloat16".
        float32_losses: list of float. The loss before each update and after the last.
        reduced_losses: list of float. The same under `policy`.
        images: int. Images in the batch.
        size: tuple. (height, width) of the batch.
        seconds: float. What the check cost, both models built and trained.
    """

    policy: str
    float32_losses: list
    reduced_losses: list
    images: int
    size: tuple
    seconds: float

    @property
    def agrees(self):
        return not self.problem

    @property
    def problem(self):
        """Why the reduced policy does not train like float32 ("" when it does)."""
        ours, theirs = self.reduced_losses, self.float32_losses
        if not all(math.isfinite(value) for value in ours):
            return "its loss became NaN or infinite"
        if not all(math.isfinite(value) for value in theirs):
            return ""  # float32 itself diverges on this batch: nothing to compare with
        gap = abs(ours[-1] - theirs[-1]) / max(abs(theirs[-1]), 1e-3)
        if gap > LOSS_TOLERANCE:
            return f"its loss ended {gap:.0%} {'above' if ours[-1] > theirs[-1] else 'below'} float32's"
        progress = theirs[0] - theirs[-1]
        if progress > 0.02 * abs(theirs[0]) and ours[0] - ours[-1] < MIN_PROGRESS * progress:
            return f"it made {max(ours[0] - ours[-1], 0) / progress:.0%} of float32's progress"
        return ""

    def describe(self):
        """One line of figures: the last losses, the batch and the cost."""
        return (
            f"loss after {len(self.float32_losses) - 1} steps on one batch of {self.images} "
            f"{self.size[0]}x{self.size[1]} images: {self.reduced_losses[-1]:.4g} in {self.policy}, "
            f"{self.float32_losses[-1]:.4g} in float32 (from {self.float32_losses[0]:.4g}); "
            f"checked in {self.seconds:.1f} s"
        )


def check_batch(config, spec, engine=None):
    """One fixed batch of the run's training data (augmented as in training, seeded):
    (images uint8 [B, H, W, 3], masks uint8 [B, H, W]) as numpy arrays."""
    import kseg.data

    dataset = kseg.data.make_dataset(
        spec, config.train_split, training=True, batch_size=min(config.batch_size, MAX_IMAGES),
        crop=config.training_crop, seed=config.seed, scale_range=tuple(config.scale), engine=engine,
    )  # fmt: skip
    if hasattr(dataset, "as_numpy_iterator"):  # tf.data
        images, masks = next(iter(dataset.take(1).as_numpy_iterator()))
    else:
        images, masks = dataset[0]
        dataset.close()
    # The top-left corner of larger crops: the cost of a step grows with its pixels.
    return np.asarray(images)[:, :MAX_SIDE, :MAX_SIDE], np.asarray(masks)[:, :MAX_SIDE, :MAX_SIDE]


def _losses(model, images, masks, steps):
    losses = []
    for _ in range(steps + 1):  # the last call's loss is that of the weights after `steps` updates
        value = model.train_on_batch(images, masks)
        losses.append(float(np.asarray(value).reshape(-1)[0]))
    return losses


def compare_precisions(build, compile_model, batch, policy, steps=STEPS):
    """Trains a float32 and a `policy` copy of a model on one batch; returns a PrecisionCheck.

    Args:
        build: callable() -> keras.Model, built under the global dtype policy in force.
        compile_model: callable(model). Compiles it (a fresh optimizer for each copy).
        batch: tuple. (images, masks) numpy arrays.
        policy: str. The reduced keras dtype policy, e.g. "mixed_bfloat16".
        steps: int. Optimizer updates.
    """
    import keras

    from kseg.training.distribution import dtype_policy

    start = time.perf_counter()
    images, masks = batch
    losses = {}
    weights = None
    for name in ("float32", policy):
        with dtype_policy(name):
            keras.utils.set_random_seed(0)
            model = build()
            if weights is None:
                weights = model.get_weights()
            else:
                model.set_weights(weights)
            compile_model(model)
            losses[name] = _losses(model, images, masks, steps)
        del model
        gc.collect()
    return PrecisionCheck(
        policy=policy, float32_losses=losses["float32"], reduced_losses=losses[policy], images=len(images),
        size=tuple(images.shape[1:3]), seconds=time.perf_counter() - start,
    )  # fmt: skip


def check_precision(config, spec, policy, class_weights, total_steps):
    """Checks that `policy` trains the model of `config` like float32 on this machine.

    Args:
        config: TrainConfig. The run's (resolved) config.
        spec: DatasetSpec. The run's dataset.
        policy: str. The reduced policy the run would train under.
        class_weights: list of float or None. The run's class weights.
        total_steps: int. The run's optimizer steps (for its learning-rate schedule).

    Returns:
        PrecisionCheck.
    """
    from kseg.losses import MaskedSparseCrossEntropy
    from kseg.models import create_model
    from kseg.training.build import build_optimizer, builder_options

    options = builder_options(config)
    if "dropout" in options:
        options["dropout"] = 0.0  # both copies must see the same network

    def build():
        return create_model(config.model, num_classes=spec.num_classes, weights=None, **options)

    def compile_model(model):
        model.compile(
            optimizer=build_optimizer(config, total_steps),
            loss=MaskedSparseCrossEntropy(spec.num_classes, spec.ignore_index, class_weights),
        )

    return compare_precisions(build, compile_model, check_batch(config, spec), policy)
