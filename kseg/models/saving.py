"""Loading `.keras` model files with one copy of the weights in memory.

`keras.saving.load_model` builds the model with its random initializers and then assigns
the stored weights over them. For an FCN on VGG16 (134M parameters, 538 MB) that took a
process from 0.65 GB (TensorFlow alone) to 2.8 GB at its peak and left it at 2.0 GB: the
random draw of fc6 alone needs three times its size, and the initial buffers outlive the
assignment. Here the model is built with its variables left uninitialised (keras'
StatelessScope), and each variable is created directly from the stored array when keras
reads it: the process ends at 1.25 GB, with a peak of 1.9 GB while fc6 is read.
"""

import json
import zipfile

import keras


class _create_on_assign:
    """Within this context, an uninitialised variable's first `assign(value)` creates it
    from `value` instead of failing."""

    def __init__(self, variables):
        self.variables = [variable for variable in variables if variable._value is None]

    def __enter__(self):
        for variable in self.variables:
            variable.assign = self._creator(variable)
        return self

    def __exit__(self, *exc_info):
        for variable in self.variables:
            del variable.assign

    @staticmethod
    def _creator(variable):
        def assign(value):
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"the stored value of {variable.path} has shape {tuple(value.shape)}; the "
                    f"model expects {tuple(variable.shape)}"
                )
            variable._initialize(keras.ops.convert_to_tensor(value, dtype=variable.dtype))

        return assign


def load_keras_file(path, safe_mode=True):
    """Loads a `.keras` file like `keras.saving.load_model(path, compile=False,
    safe_mode=safe_mode)`, holding one copy of the weights (see the module)."""
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    config["compile_config"] = None  # compile=False: no optimizer, as keras does
    with keras.StatelessScope(initialize_variables=False):
        model = keras.saving.deserialize_keras_object(config, safe_mode=safe_mode)
    try:
        with _create_on_assign(model.variables):
            model.load_weights(path)
        for variable in model.variables:
            if variable._value is None:  # not stored (e.g. a dropout seed): as keras would
                variable._deferred_initialize()
    finally:
        _forget_uninitialized(model.variables)
    return model


def _forget_uninitialized(variables):
    """Takes `variables` off keras' list of variables to initialise on the next exit from
    a StatelessScope: they are loaded (or, after a failed load, thrown away)."""
    from keras.src.backend.common import global_state

    pending = global_state.get_global_attribute("uninitialized_variables")
    if pending:
        ours = {id(variable) for variable in variables}
        pending[:] = [variable for variable in pending if id(variable) not in ours]


def first_nonfinite_weight(model):
    """The first floating-point weight of `model` holding NaN or inf, as (path, "NaN" or
    "inf"), or None when every weight is finite.

    Checked on the device, one variable at a time: no second copy of the weights.
    """
    for variable in model.weights:
        if not keras.backend.is_float_dtype(variable.dtype):
            continue
        value = variable.value
        if bool(keras.ops.all(keras.ops.isfinite(value))):
            continue
        kind = "NaN" if bool(keras.ops.any(keras.ops.isnan(value))) else "inf"
        return variable.path, kind
    return None
