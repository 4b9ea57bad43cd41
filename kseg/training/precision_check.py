"""Does a reduced precision train like float32 on this machine? Checked before a run trusts it.

A mixed policy (mixed_bfloat16, mixed_float16) is only worth its speed if it learns what
float32 learns. That depends on the machine's kernels, not only on its instruction set: on
an Intel Xeon with AMX, TensorFlow's oneDNN computed the demo's bf16 forward pass right but
its training diverged (loss 20 after one epoch, a model that predicts one class), while the
same run learned on a CPU with AVX512-BF16 and no AMX, and with oneDNN turned off.

`check_precision` therefore trains two copies of the run's model, one in float32 and one in
the reduced policy, from the same initial weights with the run's optimizer, loss and class
weights, for `STEPS` updates on one fixed batch of the run's own training data, and
compares their losses. It costs seconds (the batch is at most `MAX_IMAGES` images of at most
`MAX_SIDE` pixels a side; dropout is off in both copies, so they differ only in precision).

The reduced policy agrees when, after the last update, its loss is finite, within
`LOSS_TOLERANCE` of float32's (relative to the larger of float32's last loss and the loss it
lost on the batch), and it made at least `MIN_PROGRESS` of the progress float32 made.

When it does not, `disagreeing_layers` looks for the layers to blame, one at a time: each
layer with weights gets the input the float32 model gives it, and its output and gradients
(with respect to its input and its weights) in the reduced policy are compared with
float32's. A wrong kernel shows there as a relative error far above bfloat16's rounding
(`LAYER_TOLERANCE`). `with_float32_layers` then keeps just those layers in float32, and
the whole-model check is run again on that model: the run trains in the reduced policy
with those exceptions only if that check agrees too.
"""

import contextlib
import dataclasses
import gc
import inspect
import math
import time

import keras
import numpy as np

import kseg.data
from kseg.losses import make_loss
from kseg.models import create_model
from kseg.models.keras_internals import read_biases_in_float32
from kseg.training.build import build_optimizer, builder_options, dataset_options, with_float32_biases
from kseg.training.distribution import dtype_policy

STEPS = 6  # optimizer updates compared
MAX_IMAGES = 4  # images in the check's batch
MAX_SIDE = 256  # longest side of the check's crops, in pixels
LOSS_TOLERANCE = 0.1  # largest gap of the last losses (see `PrecisionCheck.problem`)
# Largest relative error of one layer's output or gradient. bfloat16 rounding alone gives
# 0.2-0.6% on the FCN's layers, but a layer with a ReLU inside gets a few percent more
# (the rounding moves pre-activations near zero across it, which switches whole gradient
# entries); a wrong kernel gives errors of order 1.
LAYER_TOLERANCE = 0.3
MIN_PROGRESS = 0.5  # share of float32's loss decrease the reduced precision must make too


@dataclasses.dataclass
class PrecisionCheck:
    """What `check_precision` measured.

    Args:
        policy: str. The reduced policy checked, e.g. "mixed_bfloat16".
        float32_losses: list of float. The loss before each update and after the last.
        reduced_losses: list of float. The loss of each step under `policy` (steps whose
            update loss scaling skipped included) and after the last update.
        images: int. Images in the batch.
        size: tuple. (height, width) of the batch.
        seconds: float. What the check cost, both models built and trained.
        reduced_updates: int or None. Updates applied under `policy` before its last loss
            (fewer than the float32 copy's when loss scaling skipped some); None: as many.
    """

    policy: str
    float32_losses: list
    reduced_losses: list
    images: int
    size: tuple
    seconds: float
    reduced_updates: int = None

    @property
    def updates(self):
        """Updates behind the last reduced loss, and the float32 loss after as many."""
        count = len(self.float32_losses) - 1 if self.reduced_updates is None else self.reduced_updates
        return min(count, len(self.float32_losses) - 1)

    @property
    def agrees(self):
        return not self.problem

    @property
    def problem(self):
        """Why the reduced policy does not train like float32 ("" when it does)."""
        ours, theirs = self.reduced_losses, self.float32_losses[: self.updates + 1]
        if not all(math.isfinite(value) for value in theirs):
            return ""  # float32 itself diverges on this batch: nothing to compare with
        if not all(math.isfinite(value) for value in ours):
            return "its loss became NaN or infinite"
        # Relative to the larger of float32's last loss and the distance it travelled: when a
        # small batch is learnt fast, a few hundredths apart is a large share of what is left.
        gap = abs(ours[-1] - theirs[-1]) / max(abs(theirs[-1]), abs(theirs[0] - theirs[-1]), 1e-3)
        if gap > LOSS_TOLERANCE:
            return f"its loss ended {gap:.0%} {'above' if ours[-1] > theirs[-1] else 'below'} float32's"
        progress = theirs[0] - theirs[-1]
        if progress > 0.02 * abs(theirs[0]) and ours[0] - ours[-1] < MIN_PROGRESS * progress:
            return f"it made {max(ours[0] - ours[-1], 0) / progress:.0%} of float32's progress"
        return ""

    def describe(self):
        """One line of figures: the last losses, the batch and the cost."""
        return (
            f"loss after {self.updates} updates on one batch of {self.images} "
            f"{self.size[0]}x{self.size[1]} images: {self.reduced_losses[-1]:.4g} in {self.policy}, "
            f"{self.float32_losses[self.updates]:.4g} in float32 (from {self.float32_losses[0]:.4g}); "
            f"checked in {self.seconds:.1f} s"
        )


def check_batch(config, spec):
    """One fixed batch of the run's training data (augmented as in training, seeded):
    (images uint8 [B, H, W, 3], masks uint8 [B, H, W]) as numpy arrays."""
    dataset = kseg.data.make_dataset(spec, config.train_split, training=True,
                                     batch_size=min(config.batch_size, MAX_IMAGES), options=dataset_options(config))
    if hasattr(dataset, "as_numpy_iterator"):  # tf.data
        images, masks = next(iter(dataset.take(1).as_numpy_iterator()))
    else:
        with contextlib.closing(dataset):  # its reader threads, also when the batch cannot be read
            images, masks = dataset[0]
    # The top-left corner of larger crops: the cost of a step grows with its pixels.
    return np.asarray(images)[:, :MAX_SIDE, :MAX_SIDE], np.asarray(masks)[:, :MAX_SIDE, :MAX_SIDE]


def _losses(model, images, masks, steps):
    """The loss of each `train_on_batch` call until `steps` updates were applied, the loss
    after them (one call more), and the updates applied before it. Under mixed_float16
    keras skips the update of a step whose scaled gradients overflowed while it lowers its
    loss scale; those calls are not counted (at most 3 x `steps` calls in all)."""
    losses = []
    for _ in range(3 * steps):
        losses.append(float(np.ravel(model.train_on_batch(images, masks))[0]))
        if _updates(model) >= steps:
            break
    updates = _updates(model)
    return [*losses, float(np.ravel(model.train_on_batch(images, masks))[0])], updates


def _updates(model):
    """Optimizer updates applied so far (a loss-scale optimizer counts only applied ones)."""
    return int(np.asarray(model.optimizer.iterations))


def compare_precisions(build, compile_model, batch, policy):
    """Trains a float32 and a `policy` copy of a model `STEPS` updates on one batch; returns a PrecisionCheck.

    Args:
        build: callable() -> keras.Model, built under the global dtype policy in force.
        compile_model: callable(model). Compiles it (a fresh optimizer for each copy).
        batch: tuple. (images, masks) numpy arrays.
        policy: str. The reduced keras dtype policy, e.g. "mixed_bfloat16".
    """
    start = time.perf_counter()
    images, masks = batch
    losses, updates = {}, 0
    weights = None
    for name in ("float32", policy):
        with dtype_policy(name):
            keras.utils.set_random_seed(0)
            model = build()
            weights = model.get_weights() if weights is None else weights
            model.set_weights(weights)  # both copies start from float32's initial weights
            compile_model(model)
            losses[name], updates = _losses(model, images, masks, STEPS)
        del model
        gc.collect()
    return PrecisionCheck(
        policy=policy, float32_losses=losses["float32"], reduced_losses=losses[policy], images=len(images),
        size=tuple(images.shape[1:3]), seconds=time.perf_counter() - start, reduced_updates=updates,
    )  # fmt: skip


def _run_model(config, spec, float32_layers=()):
    """A builder of the run's model as `kseg.training.build.build_model` makes it, from
    random weights and without dropout (so that two copies differ only in precision)."""
    options = builder_options(config)
    if "dropout" in options:
        options["dropout"] = 0.0

    def build():
        model = create_model(config.model, num_classes=spec.num_classes, weights=None, **options)
        if float32_layers:
            model = with_float32_layers(model, float32_layers)
        return with_float32_biases(model)

    return build


def check_precision(config, spec, policy, class_weights, total_steps, float32_layers=()):
    """Checks that `policy` trains the model of `config` like float32 on this machine.

    Args:
        config: TrainConfig. The run's (resolved) config.
        spec: DatasetSpec. The run's dataset.
        policy: str. The reduced policy the run would train under.
        class_weights: list of float or None. The run's class weights.
        total_steps: int. The run's optimizer steps (for its learning-rate schedule).
        float32_layers: sequence of str. Layers that compute in float32 in the reduced copy.

    Returns:
        PrecisionCheck.
    """
    def compile_model(model):
        model.compile(
            # the learning rate of a run's first steps, even for runs of a few steps
            optimizer=build_optimizer(config, max(total_steps, 100 * STEPS)),
            loss=make_loss(config.loss, spec.num_classes, spec.ignore_index, class_weights),
        )

    build = _run_model(config, spec, float32_layers)
    return compare_precisions(build, compile_model, check_batch(config, spec), policy)


def blame_layers(config, spec, policy):
    """The layers of the run's model whose output or gradients in `policy` are off
    (`disagreeing_layers`), on the check's batch."""
    return disagreeing_layers(_run_model(config, spec), check_batch(config, spec)[0], policy)


def with_float32_layers(model, names):
    """A copy of a functional `model` (same weights) whose layers `names` compute in float32."""
    config = model.get_config()
    for layer in config["layers"]:
        if layer["config"].get("name") in names:
            layer["config"]["dtype"] = "float32"
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _relative_error(ours, reference):
    ours = np.asarray(ours, np.float64)
    reference = np.asarray(reference, np.float64)
    scale = np.linalg.norm(reference)
    if not np.all(np.isfinite(ours)):
        return math.inf
    if scale == 0:
        return 0.0 if np.linalg.norm(ours) == 0 else math.inf
    return float(np.linalg.norm(ours - reference) / scale)


def _output_and_gradients(layer, inputs, weights):
    """The layer's output on `inputs` (training mode) and the gradients of a fixed random
    projection of it with respect to its input and its trainable weights, as numpy.

    The layer is called through a one-layer model, so that its inputs and weights are cast
    to its compute dtype as in the whole model (a bare `stateless_call` would not).
    """
    extra = {"training": True} if "training" in inspect.signature(layer.call).parameters else {}
    placeholder = keras.Input(inputs.shape[1:], batch_size=inputs.shape[0])
    wrapper = keras.Model(placeholder, layer(placeholder, **extra))
    projection = keras.ops.convert_to_tensor(weights)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(inputs)
        variables = [variable.value for variable in wrapper.trainable_variables]
        with tf.GradientTape() as tape:
            tape.watch(x)
            output = keras.ops.cast(wrapper(x), "float32")
            total = keras.ops.sum(output * projection)
        gradients = tape.gradient(total, [x, *variables])
    else:  # jax (`layer_errors` asks for no other backend)
        import jax

        others = [variable.value for variable in wrapper.non_trainable_variables]

        def projected(values, x):
            output, _ = wrapper.stateless_call(values, others, x)
            output = keras.ops.cast(output, "float32")
            return keras.ops.sum(output * projection), output

        trainable = [variable.value for variable in wrapper.trainable_variables]
        (_, output), (input_gradient, weight_gradients) = jax.value_and_grad(
            projected, argnums=(1, 0), has_aux=True
        )(trainable, inputs)
        gradients = [input_gradient, *weight_gradients]
    return [keras.ops.convert_to_numpy(output)] + [keras.ops.convert_to_numpy(g) for g in gradients]


def layer_errors(model, images, policy):
    """{layer name: largest relative error of its output or gradients in `policy` against
    float32}, for every single-input layer of the float32 `model` that has trainable
    weights, each given the input the float32 model gives it. Empty on a backend where
    gradients are not taken here (PyTorch)."""
    layers = [layer for layer in model.layers if layer.trainable_weights and not isinstance(layer, keras.Model)
              and not isinstance(layer.input, (list, tuple))]  # fmt: skip
    if not layers or keras.backend.backend() not in ("tensorflow", "jax"):
        return {}
    probe = keras.Model(model.input, [layer.input for layer in layers])
    inputs = probe.predict_on_batch(images)
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    rng = np.random.default_rng(0)
    errors = {}
    for layer, x in zip(layers, inputs):
        x = np.asarray(x, np.float32)
        with dtype_policy(policy):
            twin = layer.__class__.from_config({**layer.get_config(), "dtype": policy})
            twin.build(x.shape)
        twin.set_weights(layer.get_weights())
        read_biases_in_float32(twin)  # as the run's model reads them
        weights = rng.standard_normal(layer.compute_output_shape(x.shape)).astype("float32")
        reference = _output_and_gradients(layer, x, weights)
        ours = _output_and_gradients(twin, x, weights)
        errors[layer.name] = max(_relative_error(a, b) for a, b in zip(ours, reference))
    return errors


def disagreeing_layers(build, images, policy):
    """The names of the layers of `build()`'s model (built in float32) whose output or
    gradients in `policy` are off by more than LAYER_TOLERANCE, worst first."""
    with dtype_policy("float32"):
        keras.utils.set_random_seed(0)
        model = build()
    errors = layer_errors(model, images, policy)
    return sorted((name for name, error in errors.items() if error > LAYER_TOLERANCE), key=lambda n: -errors[n])
