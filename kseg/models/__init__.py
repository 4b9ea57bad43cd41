"""Model builders, registered by name. `create_model("fcn8s", num_classes=19)`."""

from kseg.models.bilinear import BilinearUpsampling, bilinear_kernel_2d
from kseg.models.fcn import build_fcn, fcn8s, fcn16s, fcn32s
from kseg.models.heatmap import imagenet_heatmap_model
from kseg.models.registry import create_model, get_model_entry, list_models, register_model
from kseg.models.transfer import transfer_weights

__all__ = [
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
    "register_model",
    "transfer_weights",
]
