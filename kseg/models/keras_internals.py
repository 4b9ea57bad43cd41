"""The one place where kseg reaches into keras' private parts.

kseg builds models whose variables have a shape but no value yet (keras' StatelessScope
with `initialize_variables=False`), so that a `.keras` file loads with one copy of its
weights and a parameter count allocates nothing. Doing so reads and writes keras
internals: a variable's `_value`, `_initialize`, `_deferred_initialize` and keras' global
list of variables waiting to be initialised; and, for training under a mixed policy, a bias
variable's `_autocast` (`read_biases_in_float32`). These change between keras releases, so
every entry point here first checks the keras version against the one kseg was tested
with, and fails with one line naming both on any other.

Set KSEG_UNTESTED_KERAS=1 to skip the check (at your own risk: a wrong guess shows up as
keras errors while loading models, or wrong parameter counts).
"""

import contextlib
import functools
import os

import keras

from kseg import __version__
from kseg.errors import KsegError

TESTED_KERAS = "3.15"  # major.minor; setup.py pins the patch release
ESCAPE_VARIABLE = "KSEG_UNTESTED_KERAS"


@functools.cache
def check_keras_version(found=None):
    """Raises a `KsegError` unless keras (or `found`) is the major.minor kseg was tested with."""
    found = found or keras.__version__
    if ".".join(found.split(".")[:2]) == TESTED_KERAS or os.environ.get(ESCAPE_VARIABLE) == "1":
        return
    raise KsegError(
        f"kseg {__version__} was tested with keras {TESTED_KERAS}; found {found}: kseg's model "
        "loading relies on keras internals that may have changed; install the tested release "
        f"(pip install 'keras=={TESTED_KERAS}.*'), or set {ESCAPE_VARIABLE}=1 to try anyway"
    )


def build_unallocated(build, *args, **kwargs):
    """Calls `build(*args, **kwargs)` with variable creation deferred: every variable made
    inside has its shape and initializer but no value, and waits on keras' list of
    variables to initialise until `allocate_on_assign`, `allocate_initial` or
    `forget_pending` deals with it."""
    check_keras_version()
    before = list(pending_variables())
    try:
        with keras.StatelessScope(initialize_variables=False):
            return build(*args, **kwargs)
    except BaseException:
        pending_variables()[:] = before  # a failed build leaves nothing pending
        raise


def is_allocated(variable):
    """Whether `variable` holds a value (False for one made by `build_unallocated`)."""
    return variable._value is not None


def allocate_initial(variable):
    """Gives an unallocated `variable` the value of its own initializer, as keras would."""
    variable._deferred_initialize()


@contextlib.contextmanager
def allocate_on_assign(variables):
    """Within this context, an unallocated variable's first `assign(value)` creates it
    from `value` (one copy, no initializer run) instead of failing."""
    check_keras_version()
    variables = [variable for variable in variables if not is_allocated(variable)]
    for variable in variables:
        variable.assign = _creator(variable)
    try:
        yield
    finally:
        for variable in variables:
            del variable.assign


def _creator(variable):
    def assign(value):
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"the stored value of {variable.path} has shape {tuple(value.shape)}; the "
                f"model expects {tuple(variable.shape)}"
            )
        variable._initialize(keras.ops.convert_to_tensor(value, dtype=variable.dtype))

    return assign


def pending_variables():
    """keras' list of variables waiting to be initialised on the next exit from a
    StatelessScope (empty when none)."""
    from keras.src.backend.common import global_state

    return global_state.get_global_attribute("uninitialized_variables") or []


def forget_pending(variables):
    """Takes `variables` off keras' list of variables to initialise: they are allocated
    already, or thrown away."""
    pending = pending_variables()
    if pending:
        ours = {id(variable) for variable in variables}
        pending[:] = [variable for variable in pending if id(variable) not in ours]


def read_biases_in_float32(model):
    """Makes every bias variable of `model` read as float32 under a mixed dtype policy.

    keras casts a layer's variables to its compute dtype when the layer reads them. For a
    bias under mixed_bfloat16 that makes `outputs + bias` a bfloat16 addition, and the
    bias gradient (the sum of the output gradient over batch and pixels) is then summed
    in bfloat16 by TensorFlow's CPU kernels: 4.5% off at 1,536 pixels, 16% at 98,304 and
    46% at 691,200 (a CamVid batch of 4 at 360x480), where the kernel gradient stays
    within 0.3% (benchmarks/bf16_gradients.py). A float32 bias makes the addition, and
    the sum of its gradient, float32; the output of the layer is float32 then, which the
    next layer casts back. Returns the number of variables changed.

    Only for training: the flag is not saved with the model.
    """
    check_keras_version()
    changed = 0
    for variable in model.trainable_variables:
        if variable.name == "bias" and variable._autocast:
            variable._autocast = False
            changed += 1
    return changed
