"""The models kseg knows, declared as data: one preset row per model (`--model fcn8s`).

A new model family plugs in as rows of `MODEL_PRESETS` naming its builder function;
`create_model`, `kseg models` and `parameter_count` read the table. The builders
themselves (`kseg.models.fcn.fcn8s`, ...) stay the public API, keras-applications style.
"""

import dataclasses
import difflib
import functools
import importlib
import random

from kseg.errors import KsegError


@dataclasses.dataclass(frozen=True)
class ModelPreset:
    """One model kseg can build by name.

    Args:
        name: str. The name users pass to `create_model` and `--model`.
        backbone: str. The feature extractor, e.g. "vgg16".
        head: str. The decoder on top of it, e.g. "fcn".
        output_stride: int. The stride of the coarsest prediction before upsampling.
        description: str. One line for `kseg models`.
        builder: str or callable. "module:function" (imported on first use, so reading the
            table imports no keras) or the function itself; called with the builder's own
            keyword arguments (num_classes, weights, ...), returns a `keras.Model`.
    """

    name: str
    backbone: str
    head: str
    output_stride: int
    description: str
    builder: object

    def build(self, **kwargs):
        """Calls the builder with `kwargs`."""
        return resolve_builder(self.builder)(**kwargs)


ModelEntry = ModelPreset  # the name this class had before the table

MODEL_PRESETS = (
    ModelPreset("fcn32s", "vgg16", "fcn", 32, "FCN-32s: VGG16, single x32 upsampling",
                "kseg.models.fcn:fcn32s"),
    ModelPreset("fcn16s", "vgg16", "fcn", 16, "FCN-16s: FCN-32s + pool4 skip",
                "kseg.models.fcn:fcn16s"),
    ModelPreset("fcn8s", "vgg16", "fcn", 8, "FCN-8s: FCN-16s + pool3 skip",
                "kseg.models.fcn:fcn8s"),
    ModelPreset("fcn32s_vgg16bn", "vgg16bn", "fcn", 32,
                "FCN-32s on VGG16 with batch norm, for training from random weights",
                "kseg.models.fcn:fcn32s_vgg16bn"),
    ModelPreset("fcn16s_vgg16bn", "vgg16bn", "fcn", 16,
                "FCN-16s on VGG16 with batch norm (random weights)", "kseg.models.fcn:fcn16s_vgg16bn"),
    ModelPreset("fcn8s_vgg16bn", "vgg16bn", "fcn", 8,
                "FCN-8s on VGG16 with batch norm (random weights)", "kseg.models.fcn:fcn8s_vgg16bn"),
    ModelPreset("fcn32s_caffe", "vgg16-caffe", "fcn", 32,
                "FCN-32s exactly as the released Caffe net (pad 100, ceil pooling, crops)",
                "kseg.models.caffe_fcn:fcn32s_caffe"),
    ModelPreset("fcn16s_caffe", "vgg16-caffe", "fcn", 16,
                "FCN-16s exactly as the released Caffe net", "kseg.models.caffe_fcn:fcn16s_caffe"),
    ModelPreset("fcn8s_caffe", "vgg16-caffe", "fcn", 8,
                "FCN-8s exactly as the released Caffe net", "kseg.models.caffe_fcn:fcn8s_caffe"),
    ModelPreset("fcn8s_atonce_caffe", "vgg16-caffe", "fcn", 8,
                "FCN-8s trained at once (scaled skips), as the released Caffe net",
                "kseg.models.caffe_fcn:fcn8s_atonce_caffe"),
    ModelPreset("fcn32s_mobilenetv3large", "mobilenetv3large", "fcn", 32,
                "FCN-32s on MobileNetV3Large", "kseg.models.backbone_fcn:fcn32s_mobilenetv3large"),
    ModelPreset("fcn16s_mobilenetv3large", "mobilenetv3large", "fcn", 16,
                "FCN-16s on MobileNetV3Large (+ stride-16 skip)",
                "kseg.models.backbone_fcn:fcn16s_mobilenetv3large"),
    ModelPreset("fcn8s_mobilenetv3large", "mobilenetv3large", "fcn", 8,
                "FCN-8s on MobileNetV3Large (+ stride-16 and stride-8 skips)",
                "kseg.models.backbone_fcn:fcn8s_mobilenetv3large"),
    ModelPreset("fcn32s_mobilenetv3small", "mobilenetv3small", "fcn", 32,
                "FCN-32s on MobileNetV3Small", "kseg.models.backbone_fcn:fcn32s_mobilenetv3small"),
    ModelPreset("fcn16s_mobilenetv3small", "mobilenetv3small", "fcn", 16,
                "FCN-16s on MobileNetV3Small", "kseg.models.backbone_fcn:fcn16s_mobilenetv3small"),
    ModelPreset("fcn8s_mobilenetv3small", "mobilenetv3small", "fcn", 8,
                "FCN-8s on MobileNetV3Small", "kseg.models.backbone_fcn:fcn8s_mobilenetv3small"),
    ModelPreset("fcn32s_resnet50", "resnet50", "fcn", 32, "FCN-32s on ResNet50",
                "kseg.models.backbone_fcn:fcn32s_resnet50"),
    ModelPreset("fcn16s_resnet50", "resnet50", "fcn", 16, "FCN-16s on ResNet50",
                "kseg.models.backbone_fcn:fcn16s_resnet50"),
    ModelPreset("fcn8s_resnet50", "resnet50", "fcn", 8, "FCN-8s on ResNet50",
                "kseg.models.backbone_fcn:fcn8s_resnet50"),
    ModelPreset("lraspp_mobilenetv3large", "mobilenetv3large", "lraspp", 16,
                "LR-ASPP on MobileNetV3Large (last stage dilated)",
                "kseg.models.lraspp:lraspp_mobilenetv3large"),
    ModelPreset("lraspp_mobilenetv3small", "mobilenetv3small", "lraspp", 16,
                "LR-ASPP on MobileNetV3Small (last stage dilated)",
                "kseg.models.lraspp:lraspp_mobilenetv3small"),
    ModelPreset("deeplabv3_resnet50", "resnet50", "deeplabv3", 16,
                "DeepLab v3 on ResNet50, ASPP rates 6/12/18 (conv5 dilated)",
                "kseg.models.deeplab:deeplabv3_resnet50"),
    ModelPreset("deeplabv3_resnet50_os8", "resnet50", "deeplabv3", 8,
                "DeepLab v3 on ResNet50, ASPP rates 12/24/36 (conv4, conv5 dilated)",
                "kseg.models.deeplab:deeplabv3_resnet50_os8"),
    ModelPreset("deeplabv3plus_resnet50", "resnet50", "deeplabv3plus", 16,
                "DeepLab v3+ on ResNet50: ASPP 6/12/18 + decoder over stride-4 features",
                "kseg.models.deeplab:deeplabv3plus_resnet50"),
    ModelPreset("deeplabv3plus_resnet50_os8", "resnet50", "deeplabv3plus", 8,
                "DeepLab v3+ on ResNet50 at output stride 8 (ASPP 12/24/36)",
                "kseg.models.deeplab:deeplabv3plus_resnet50_os8"),
    ModelPreset("deeplabv3plus_mobilenetv3large", "mobilenetv3large", "deeplabv3plus", 16,
                "DeepLab v3+ on MobileNetV3Large (last stage dilated), for phones",
                "kseg.models.deeplab:deeplabv3plus_mobilenetv3large"),
    ModelPreset("unet", "unet", "unet", 16,
                "U-Net as in the paper: 4 down / 4 up stages, concatenated skips (random weights)",
                "kseg.models.unet:unet"),
    ModelPreset("unet_bn", "unet-bn", "unet", 16,
                "U-Net with batch norm after every convolution (random weights)",
                "kseg.models.unet:unet_bn"),
    ModelPreset("unet_resnet50", "resnet50", "unet", 32,
                "U-Net decoder on ResNet50 (skips at strides 16, 8, 4, 2)",
                "kseg.models.unet:unet_resnet50"),
    ModelPreset("unet_mobilenetv3large", "mobilenetv3large", "unet", 32,
                "U-Net decoder on MobileNetV3Large (skips at strides 16, 8, 4, 2)",
                "kseg.models.unet:unet_mobilenetv3large"),
    ModelPreset("segnet", "vgg16bn", "segnet", 32,
                "SegNet: VGG16-BN encoder, decoder unpooling with its max-pooling indices "
                "(random weights)", "kseg.models.segnet:segnet"),
)  # fmt: skip

_REGISTRY = {preset.name: preset for preset in MODEL_PRESETS}
# Backbones that keras publishes no pretrained weights for: their models start random.
RANDOM_ONLY_BACKBONES = frozenset({"vgg16bn", "unet", "unet-bn"})


def resolve_builder(builder):
    """Returns the function a preset's `builder` names ("module:function") or is."""
    if callable(builder):
        return builder
    module, _, function = builder.partition(":")
    return getattr(importlib.import_module(module), function)


def add_model_preset(preset):
    """Adds a `ModelPreset` row to the table; a repeated name is an error."""
    if preset.name in _REGISTRY:
        raise ValueError(
            f"A model named '{preset.name}' is already registered. Received: name={preset.name}"
        )
    _REGISTRY[preset.name] = preset
    return preset


def register_model(name, output_stride, description="", backbone="", head=""):
    """Decorator form of `add_model_preset` for a builder defined outside kseg."""

    def decorate(builder):
        add_model_preset(ModelPreset(name, backbone, head, output_stride, description, builder))
        return builder

    return decorate


def check_weights(name, weights):
    """Refuses pretrained `weights` for a preset whose backbone has none published.

    The builders refuse them too; this lets `kseg train` say so before it spends time on
    anything else (the precision check, the data checks).
    """
    preset = get_model_entry(name)
    if weights is not None and preset.backbone in RANDOM_ONLY_BACKBONES:
        raise KsegError(f"{name} trains from random weights (no pretrained {preset.backbone} weights exist); "
                        f"pass --weights none. Received: --weights {weights}")


def list_models():
    """Returns the registered names, sorted."""
    return sorted(_REGISTRY)


def get_model_entry(name):
    """Returns the `ModelPreset` for `name`, or raises a `KsegError` listing the known names."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list_models(), n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise KsegError(f"unknown model '{name}'{hint}; known models: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(name, **kwargs):
    """Builds the registered model `name` with the builder's keyword arguments."""
    return get_model_entry(name).build(**kwargs)


@functools.cache
def parameter_count(name, num_classes=21, **kwargs):
    """The number of parameters of `create_model(name, num_classes=num_classes,
    weights=None, **kwargs)`, counted from a build whose variables get no memory (a full
    FCN holds 134M parameters). Leaves Python's random state, from which keras draws
    default seeds, as it found it: a model built afterwards gets the same weights."""
    from kseg.models import keras_internals

    state = random.getstate()  # keras draws default seeds from Python's generator
    try:
        model = keras_internals.build_unallocated(
            create_model, name, num_classes=num_classes, weights=None, **kwargs
        )
        try:
            return model.count_params()
        finally:
            keras_internals.forget_pending(model.variables)
    finally:
        random.setstate(state)
