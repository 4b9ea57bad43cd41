"""The models kseg knows, declared as data: one preset row per model (`--model fcn8s`).

A row names an architecture (a builder in `ARCHITECTURES`), the arguments that make it
this model (backbone, stride, batch norm), the options a user may change (width,
dropout, learn_upsampling) and its default weights. `create_model` builds any row;
`kseg models`, `parameter_count` and training read the table. Of the builders, `fcn32s`,
`fcn16s` and `fcn8s` are the documented Python API, keras-applications style.
"""

import dataclasses
import difflib
import functools
import importlib
import random

from kseg.errors import KsegError
from kseg.models import keras_internals
from kseg.models.arguments import check_random_weights

# Each architecture's builder, imported on first use (reading the table imports no keras).
ARCHITECTURES = {
    "fcn": "kseg.models.fcn:build_fcn",
    "caffe_fcn": "kseg.models.caffe_fcn:caffe_fcn",
    "backbone_fcn": "kseg.models.backbone_fcn:build_backbone_fcn",
    "lraspp": "kseg.models.lraspp:build_lraspp",
    "deeplabv3": "kseg.models.deeplab:build_deeplabv3",
    "deeplabv3plus": "kseg.models.deeplab:build_deeplabv3plus",
    "unet": "kseg.models.unet:build_unet",
    "backbone_unet": "kseg.models.unet:build_backbone_unet",
    "segnet": "kseg.models.segnet:build_segnet",
}
# The options `kseg train` maps onto a model (--width, --dropout, --learn-upsampling).
MODEL_OPTIONS = ("width", "dropout", "learn_upsampling")


@dataclasses.dataclass(frozen=True)
class ModelPreset:
    """One model kseg can build by name.

    Args:
        name: str. The name users pass to `create_model` and `--model`.
        architecture: str or callable. A key of `ARCHITECTURES`, or (for a model added
            from outside kseg) the builder itself; it is called with `params`, the weights
            and the caller's keyword arguments, and returns a `keras.Model`.
        backbone: str. The feature extractor, e.g. "vgg16".
        output_stride: int. The stride of the coarsest prediction before upsampling.
        description: str. One line for `kseg models`.
        params: dict. The builder arguments that make this model (not the user's to change).
        options: tuple of str. Which of `MODEL_OPTIONS` the model takes.
        weights: str or None. The default weights: "imagenet" or None (random).
    """

    name: str
    architecture: object
    backbone: str
    output_stride: int
    description: str
    params: dict = dataclasses.field(default_factory=dict)
    options: tuple = ()
    weights: object = None

    @property
    def builder(self):
        """The function that builds this model."""
        if callable(self.architecture):
            return self.architecture
        module, _, function = ARCHITECTURES[self.architecture].partition(":")
        return getattr(importlib.import_module(module), function)

    def build(self, **kwargs):
        """Builds the model with `kwargs` (num_classes, weights, options) over `params`."""
        fixed = sorted(set(kwargs) & set(self.params))
        if fixed:
            raise KsegError(f"{self.name}: {', '.join(fixed)} is part of the model's definition; "
                            f"choose another model instead")
        return self.builder(**{"weights": self.weights, **self.params, **kwargs})


def _vgg16_fcn(stride, description, batch_norm=False):
    """A row of FCN-`stride`s on VGG16 (ImageNet weights) or VGG16-BN (random weights)."""
    name = f"fcn{stride}s" + ("_vgg16bn" if batch_norm else "")
    params = {"output_stride": stride, **({"batch_norm": True} if batch_norm else {})}
    return ModelPreset(name, "fcn", "vgg16bn" if batch_norm else "vgg16", stride, description, params,
                       MODEL_OPTIONS, None if batch_norm else "imagenet")


def _caffe_fcn(variant, stride, description):
    """A row of a Caffe-exact FCN (weights come from `kseg weights convert`)."""
    return ModelPreset(f"{variant}_caffe", "caffe_fcn", "vgg16-caffe", stride, description,
                       {"variant": variant}, MODEL_OPTIONS)


def _on_backbone(name, architecture, backbone, stride, description, options, **params):
    """A row of a head on a keras.applications backbone (ImageNet weights by default)."""
    if backbone.startswith("mobilenetv3"):
        options = ("width", *options)
    return ModelPreset(name, architecture, backbone, stride, description, {"backbone": backbone, **params},
                       options, "imagenet")


def _backbone_fcn(stride, backbone, description):
    """A row of FCN-`stride`s on a keras.applications backbone."""
    return _on_backbone(f"fcn{stride}s_{backbone}", "backbone_fcn", backbone, stride, description,
                        ("learn_upsampling",), skips=stride)


MODEL_PRESETS = (
    _vgg16_fcn(32, "FCN-32s: VGG16, single x32 upsampling"),
    _vgg16_fcn(16, "FCN-16s: FCN-32s + pool4 skip"),
    _vgg16_fcn(8, "FCN-8s: FCN-16s + pool3 skip"),
    _vgg16_fcn(32, "FCN-32s on VGG16 with batch norm, for training from random weights", batch_norm=True),
    _vgg16_fcn(16, "FCN-16s on VGG16 with batch norm (random weights)", batch_norm=True),
    _vgg16_fcn(8, "FCN-8s on VGG16 with batch norm (random weights)", batch_norm=True),
    _caffe_fcn("fcn32s", 32, "FCN-32s exactly as the released Caffe net (pad 100, ceil pooling, crops)"),
    _caffe_fcn("fcn16s", 16, "FCN-16s exactly as the released Caffe net"),
    _caffe_fcn("fcn8s", 8, "FCN-8s exactly as the released Caffe net"),
    _caffe_fcn("fcn8s_atonce", 8, "FCN-8s trained at once (scaled skips), as the released Caffe net"),
    _backbone_fcn(32, "mobilenetv3large", "FCN-32s on MobileNetV3Large"),
    _backbone_fcn(16, "mobilenetv3large", "FCN-16s on MobileNetV3Large (+ stride-16 skip)"),
    _backbone_fcn(8, "mobilenetv3large", "FCN-8s on MobileNetV3Large (+ stride-16 and stride-8 skips)"),
    _backbone_fcn(32, "mobilenetv3small", "FCN-32s on MobileNetV3Small"),
    _backbone_fcn(16, "mobilenetv3small", "FCN-16s on MobileNetV3Small"),
    _backbone_fcn(8, "mobilenetv3small", "FCN-8s on MobileNetV3Small"),
    _backbone_fcn(32, "resnet50", "FCN-32s on ResNet50"),
    _backbone_fcn(16, "resnet50", "FCN-16s on ResNet50"),
    _backbone_fcn(8, "resnet50", "FCN-8s on ResNet50"),
    _on_backbone("lraspp_mobilenetv3large", "lraspp", "mobilenetv3large", 16,
                 "LR-ASPP on MobileNetV3Large (last stage dilated)", ()),
    _on_backbone("lraspp_mobilenetv3small", "lraspp", "mobilenetv3small", 16,
                 "LR-ASPP on MobileNetV3Small (last stage dilated)", ()),
    _on_backbone("deeplabv3_resnet50", "deeplabv3", "resnet50", 16,
                 "DeepLab v3 on ResNet50, ASPP rates 6/12/18 (conv5 dilated)", ("dropout",), output_stride=16),
    _on_backbone("deeplabv3_resnet50_os8", "deeplabv3", "resnet50", 8,
                 "DeepLab v3 on ResNet50, ASPP rates 12/24/36 (conv4, conv5 dilated)", ("dropout",),
                 output_stride=8),
    _on_backbone("deeplabv3plus_resnet50", "deeplabv3plus", "resnet50", 16,
                 "DeepLab v3+ on ResNet50: ASPP 6/12/18 + decoder over stride-4 features", ("dropout",),
                 output_stride=16),
    _on_backbone("deeplabv3plus_resnet50_os8", "deeplabv3plus", "resnet50", 8,
                 "DeepLab v3+ on ResNet50 at output stride 8 (ASPP 12/24/36)", ("dropout",), output_stride=8),
    _on_backbone("deeplabv3plus_mobilenetv3large", "deeplabv3plus", "mobilenetv3large", 16,
                 "DeepLab v3+ on MobileNetV3Large (last stage dilated), for phones", ("dropout",),
                 output_stride=16),
    ModelPreset("unet", "unet", "unet", 16,
                "U-Net as in the paper: 4 down / 4 up stages, concatenated skips (random weights)",
                options=("width",)),
    ModelPreset("unet_bn", "unet", "unet-bn", 16,
                "U-Net with batch norm after every convolution (random weights)",
                {"batch_norm": True, "name": "unet_bn"}, ("width",)),
    _on_backbone("unet_resnet50", "backbone_unet", "resnet50", 32,
                 "U-Net decoder on ResNet50 (skips at strides 16, 8, 4, 2)", ()),
    _on_backbone("unet_mobilenetv3large", "backbone_unet", "mobilenetv3large", 32,
                 "U-Net decoder on MobileNetV3Large (skips at strides 16, 8, 4, 2)", ()),
    ModelPreset("segnet", "segnet", "vgg16bn", 32,
                "SegNet: VGG16-BN encoder, decoder unpooling with its max-pooling indices (random weights)",
                options=("width",)),
)  # fmt: skip

_REGISTRY = {preset.name: preset for preset in MODEL_PRESETS}
# Backbones that keras publishes no pretrained weights for: their models start random.
RANDOM_ONLY_BACKBONES = frozenset({"vgg16bn", "unet", "unet-bn"})


def add_model_preset(preset):
    """Adds a `ModelPreset` row to the table; a repeated name is an error."""
    if preset.name in _REGISTRY:
        raise ValueError(
            f"A model named '{preset.name}' is already registered. Received: name={preset.name}"
        )
    _REGISTRY[preset.name] = preset
    return preset


def register_model(name, output_stride, description="", backbone="", options=(), weights=None):
    """Decorator form of `add_model_preset` for a builder defined outside kseg; `options`
    names the `MODEL_OPTIONS` it takes."""

    def decorate(builder):
        add_model_preset(ModelPreset(name, builder, backbone, output_stride, description, {}, tuple(options),
                                     weights))  # fmt: skip
        return builder

    return decorate


def check_weights(name, weights):
    """Refuses pretrained `weights` for a preset whose backbone has none published.

    The builders refuse them too; this lets `kseg train` say so before it spends time on
    anything else (the precision check, the data checks).
    """
    if get_model_entry(name).backbone in RANDOM_ONLY_BACKBONES:
        check_random_weights(name, weights)


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
    """Builds the registered model `name`: `num_classes`, `weights` (default: the preset's)
    and the builder's other keyword arguments (width, dropout, ...)."""
    return get_model_entry(name).build(**kwargs)


@functools.cache
def parameter_count(name, num_classes=21, **kwargs):
    """The number of parameters of `create_model(name, num_classes=num_classes,
    weights=None, **kwargs)`, counted from a build whose variables get no memory (a full
    FCN holds 134M parameters). Leaves Python's random state, from which keras draws
    default seeds, as it found it: a model built afterwards gets the same weights."""
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
