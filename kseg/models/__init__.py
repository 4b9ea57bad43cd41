"""Model builders, declared by name in a preset table (`kseg.models.registry.MODEL_PRESETS`).

`create_model("fcn8s", num_classes=19)` or `fcn8s(num_classes=19)`.
"""

from kseg.models.bilinear import BilinearUpsampling, bilinear_kernel_2d
from kseg.models.fcn import build_fcn, fcn8s, fcn16s, fcn32s
from kseg.models.heatmap import imagenet_heatmap_model
from kseg.models.registry import (
    MODEL_PRESETS,
    ModelPreset,
    add_model_preset,
    create_model,
    get_model_entry,
    list_models,
    parameter_count,
    register_model,
)
from kseg.models.transfer import transfer_weights

__all__ = [
    "MODEL_PRESETS",
    "ModelPreset",
    "add_model_preset",
    "BilinearUpsampling",
    "bilinear_kernel_2d",
    "build_fcn",
    "create_model",
    "fcn8s",
    "fcn16s",
    "fcn32s",
    "get_model_entry",
    "imagenet_heatmap_model",
    "list_models",
    "parameter_count",
    "register_model",
    "transfer_weights",
]
