"""Feature extractors from keras.applications: MobileNetV3 Large and Small, ResNet50.

Each backbone is built by keras.applications itself, inline in the segmentation model
(`input_tensor=`), so its layers keep keras' names (`expanded_conv_5_add`,
`conv4_block6_out`, ...) and keras' ImageNet weights load into them by name. What kseg adds:

- the preprocessing each backbone was trained with, inside the model and computed in
  float32 (MobileNetV3: RGB scaled to [-1, 1], keras' own `Rescaling` layer taken out of
  the backbone and put before the padding; ResNet50: keras' "caffe" mode, BGR minus the
  ImageNet mean, as VGG16), so callers pass uint8 (or float) RGB in [0, 255];
- the taps: the feature maps at strides 8, 16 and 32 (and 2, 4 for U-Net and DeepLab
  v3+ decoders), named per backbone;
- dilation: a backbone's last stage(s) can run at stride 1 with dilated convolutions
  (output stride 16 or 8 instead of 32); the weights stay the same shape, so ImageNet
  weights load unchanged. `dilate` rebuilds a model with those layers changed
  (keras.models.clone_model), keeping every name.
"""

import dataclasses

import keras

from kseg.errors import ArgumentError
from kseg.models import keras_internals
from kseg.models.arguments import check_num_classes, check_weights_path, check_width
from kseg.models.layers import VGGPreprocessing, padded_model
from kseg.models.pretrained import assign_application_weights
from kseg.models.saving import config_dicts


@dataclasses.dataclass(frozen=True)
class Backbone:
    """One keras.applications backbone as kseg uses it.

    Args:
        application: str. The keras.applications function ("MobileNetV3Large").
        preprocessing: str. "unit" (RGB scaled to [-1, 1]) or "caffe" (BGR minus the
            ImageNet mean).
        taps: dict. Output stride (8, 16; 2 and 4 where the decoders that need them,
            U-Net and DeepLab v3+, are built on the backbone) -> name of the layer giving
            that feature map; stride 32 is the backbone's last output.
        stages: tuple. The stages that can be dilated, last first: (stride they start,
            layer names whose stride becomes 1, layer names that get the dilation,
            padding layers (name, the convolution they pad) that become the symmetric
            padding of the dilated convolution).
        width_weights: tuple. Widths (keras' alpha) with published ImageNet weights;
            empty for a backbone without a width option.
    """

    application: str
    preprocessing: str
    taps: dict
    stages: tuple
    width_weights: tuple = ()


@dataclasses.dataclass(frozen=True)
class Variant:
    """MobileNetV3's options; other backbones take only the defaults.

    Args:
        width: float. keras' alpha (ImageNet weights exist for 0.75 and 1).
        minimalistic: bool. The minimalistic variant (3x3 kernels, ReLU, no squeeze-excite).
    """

    width: float = 1.0
    minimalistic: bool = False


def _mobilenet_stage(stride, blocks):
    first = blocks[0]
    return (
        stride,
        (f"expanded_conv_{first}_depthwise",),
        tuple(f"expanded_conv_{block}_depthwise" for block in blocks),
        ((f"expanded_conv_{first}_depthwise_pad", f"expanded_conv_{first}_depthwise"),),
    )


def _resnet_stage(stride, stage, blocks):
    return (
        stride,
        (f"conv{stage}_block1_0_conv", f"conv{stage}_block1_1_conv"),
        tuple(f"conv{stage}_block{block}_2_conv" for block in range(1, blocks + 1)),
        (),
    )


BACKBONES = {
    "mobilenetv3large": Backbone(
        "MobileNetV3Large", "unit",
        taps={2: "expanded_conv_project_bn", 4: "expanded_conv_2_add", 8: "expanded_conv_5_add",
              16: "expanded_conv_11_add"},
        stages=(_mobilenet_stage(32, (12, 13, 14)),),
        width_weights=(0.75, 1.0),
    ),
    "mobilenetv3small": Backbone(
        "MobileNetV3Small", "unit",
        taps={8: "expanded_conv_2_add", 16: "expanded_conv_7_add"},
        stages=(_mobilenet_stage(32, (8, 9, 10)),),
        width_weights=(0.75, 1.0),
    ),
    "resnet50": Backbone(
        "ResNet50", "caffe",
        taps={2: "conv1_relu", 4: "conv2_block3_out", 8: "conv3_block4_out", 16: "conv4_block6_out"},
        stages=(_resnet_stage(32, 5, 3), _resnet_stage(16, 4, 6)),
    ),
}  # fmt: skip


def application_kwargs(backbone, variant=Variant()):
    """The keyword arguments of the keras.applications function, without weights."""
    kwargs = dict(include_top=False)
    if backbone.application.startswith("MobileNetV3"):
        kwargs.update(alpha=variant.width, minimalistic=variant.minimalistic, include_preprocessing=False)
    return kwargs


def validate_backbone_arguments(backbone, weights, variant):
    """Refuses widths and variants without published weights, and options a backbone lacks."""
    width, minimalistic = variant.width, variant.minimalistic
    if not backbone.width_weights:
        if width != 1:
            raise ArgumentError(
                f"{backbone.application} has no width option (it needs width 1). "
                f"Received: width={width}"
            )
        if minimalistic:
            raise ArgumentError(
                f"{backbone.application} has no minimalistic variant. "
                f"Received: minimalistic={minimalistic}"
            )
        return
    check_width(width)
    if weights == "imagenet":
        available = (1.0,) if minimalistic else backbone.width_weights
        if width not in available:
            raise ArgumentError(
                f"keras publishes ImageNet weights of {backbone.application}"
                f"{' (minimalistic)' if minimalistic else ''} only for width "
                f"{' or '.join(str(w) for w in available)}; use one of them or --weights none. "
                f"Received: width={width}"
            )


def backbone_features(x, backbone, variant=Variant()):
    """Builds `backbone` (random weights) on the preprocessed, padded tensor `x`.

    Returns:
        dict. Stride (2, 4, 8, 16, 32) -> feature tensor (strides of the undilated backbone;
        `dilate` changes them afterwards).
    """
    build = getattr(keras.applications, backbone.application)
    network = build(input_tensor=x, weights=None, **application_kwargs(backbone, variant))
    features = {stride: network.get_layer(name).output for stride, name in backbone.taps.items()}
    features[32] = network.output
    return features


def dilation_edits(model, backbone, output_stride):
    """{layer name: config changes} that bring `backbone`, built in `model`, from stride 32
    to `output_stride`.

    The stride-2 layers of each dilated stage get stride 1, and its 3x3 (or 5x5)
    convolutions a dilation rate of 2 for the last stage and 4 for the one before (at
    output stride 8), as in DeepLab v3. A MobileNetV3 stage starts with a zero padding
    made for the strided "valid" depthwise convolution; it becomes the symmetric padding
    of a dilated one.
    """
    stages = [stage for stage in backbone.stages if stage[0] > output_stride]
    if output_stride not in (8, 16, 32) or (output_stride == 8 and len(backbone.stages) < 2):
        strides = [32] + [stage[0] // 2 for stage in backbone.stages]
        raise ArgumentError(
            f"{backbone.application} can run at output stride {', '.join(map(str, strides))}. "
            f"Received: output_stride={output_stride}"
        )
    edits = {}
    for index, (_, strided, dilated, pads) in enumerate(stages):
        rate = 2 ** (len(stages) - index)  # the last stage the most
        for name in strided:
            edits.setdefault(name, {})["strides"] = (1, 1)
        for name in dilated:
            edits.setdefault(name, {})["dilation_rate"] = (rate, rate)
        for name, conv in pads:
            pad = rate * (model.get_layer(conv).kernel_size[0] - 1) // 2
            edits[name] = {"padding": ((pad, pad), (pad, pad))}
    return edits


def dilate(model, edits):
    """A copy of `model` (same layer names, fresh weights) with `edits` applied to the
    configs of the named layers; every edited layer must exist."""
    missing = sorted(set(edits) - {layer.name for layer in model.layers})
    if missing:
        raise ValueError(f"layers to dilate not found in the model: {', '.join(missing)}")

    def clone_layer(layer):
        config = layer.get_config()
        config.update(edits.get(layer.name, {}))
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone_layer)


def hard_sigmoids_as_layers(config):
    """Rewrites a functional model's config so that keras MobileNetV3's hard sigmoids,
    written as three graph nodes (an `x + 3` op, ReLU(6), a `* (1/6)` op), become one
    `Activation("hard_sigmoid")` layer each (the same function, relu6(x + 3) / 6).

    The two scalar ops are keras operations, not layers: they take no dtype policy, so a
    copy of the model rebuilt in another precision (`kseg predict --precision bf16`)
    could not be made. The new layer is named after the convolution it follows
    (`..._squeeze_excite_hard_sigmoid`).
    """
    entries = config["layers"]
    by_name = {entry["name"]: entry for entry in entries}
    consumers = {}
    for entry in entries:
        tensors = config_dicts(entry.get("inbound_nodes", []))
        for tensor in (node for node in tensors if node.get("class_name") == "__keras_tensor__"):
            consumers.setdefault(tensor["config"]["keras_history"][0], []).append(entry["name"])

    def only_consumer(name, class_name):
        found = consumers.get(name, [])
        return by_name[found[0]] if len(found) == 1 and by_name[found[0]]["class_name"] == class_name else None

    renamed, dropped = {}, set()
    for entry in entries:
        if entry.get("class_name") != "Add" or not entry.get("module", "").startswith("keras.src.ops"):
            continue
        args = entry["inbound_nodes"][0]["args"]
        relu = only_consumer(entry["name"], "ReLU")
        scale = relu and only_consumer(relu["name"], "Multiply")
        if len(args) != 2 or args[1] != 3.0 or not scale or relu["config"].get("max_value") != 6.0:
            continue
        if abs(scale["inbound_nodes"][0]["args"][1] - 1 / 6) > 1e-9:
            continue
        name = args[0]["config"]["keras_history"][0].removesuffix("_conv_1") + "_hard_sigmoid"
        replacement = {
            "module": "keras.layers", "class_name": "Activation", "registered_name": None, "name": name,
            "config": {"name": name, "trainable": True, "dtype": relu["config"]["dtype"],
                       "activation": "hard_sigmoid"},
            "inbound_nodes": [{"args": [args[0]], "kwargs": {}}],
        }  # fmt: skip
        entry.clear()
        entry.update(replacement)
        renamed[scale["name"]] = name
        dropped.update((relu["name"], scale["name"]))
    config["layers"] = [entry for entry in entries if entry["name"] not in dropped]
    return _rewire(config, renamed)


def _rewire(node, renamed):
    """`node` with every reference (layer name, node index, tensor index) to a layer of
    `renamed` pointing at its new name."""
    if isinstance(node, dict):
        return {key: _rewire(value, renamed) for key, value in node.items()}
    if isinstance(node, list | tuple):
        if len(node) == 3 and isinstance(node[0], str) and node[0] in renamed:
            return type(node)([renamed[node[0]], *node[1:]])
        return type(node)(_rewire(value, renamed) for value in node)
    return node


def _replace(previous, model):
    """Returns `model`, built from `previous`, which is thrown away: its variables, when
    built unallocated (`kseg.models.keras_internals.build_unallocated`, as parameter
    counts are), are taken off keras' list of variables waiting for a value."""
    keras_internals.forget_pending(previous.variables)
    return model


def build_on_backbone(backbone, head, num_classes, weights, output_stride, name, variant=Variant()):
    """A segmentation model: preprocessing, padding, `backbone` at `output_stride`, `head`,
    crop to the input size, float32 logits; with the backbone's weights loaded.

    Args:
        backbone: str. A name from `BACKBONES`.
        head: callable. (features {stride: tensor}, output_stride) -> scores at the
            padded input size. The features are taken at the backbone's taps; with
            dilation, "32" is the last feature map, at `output_stride`.
        num_classes: int. Checked here.
        weights: str or None. "imagenet" (keras' download and cache), None (random), or a
            path to a keras weights file of the backbone (include_top=False).
        output_stride: int. 32 (no dilation), 16 or 8 (last stage(s) dilated).
        name: str. The model's name.
        variant: Variant. MobileNetV3's width and minimalistic variant.
    """
    check_num_classes(num_classes)
    if backbone not in BACKBONES:
        raise ArgumentError(f"unknown backbone {backbone!r}; known: {', '.join(BACKBONES)}. "
                            f"Received: backbone={backbone!r}")
    spec = BACKBONES[backbone]
    validate_backbone_arguments(spec, weights, variant)
    check_weights_path(weights)
    # The model's first layer: RGB [0, 255] (uint8 or float) -> what the backbone expects.
    if spec.preprocessing == "caffe":
        preprocessing = VGGPreprocessing(name="preprocess")
    else:
        preprocessing = keras.layers.Rescaling(1 / 127.5, offset=-1.0, dtype="float32", name="preprocess")
    model = padded_model(name, lambda x: head(backbone_features(x, spec, variant), output_stride), output_stride,
                         preprocessing)  # fmt: skip
    if backbone.startswith("mobilenetv3"):
        model = _replace(model, keras.Model.from_config(hard_sigmoids_as_layers(model.get_config())))
    if output_stride != 32:
        model = _replace(model, dilate(model, dilation_edits(model, spec, output_stride)))
    set_batch_norm_momentum(model)
    if weights is not None:
        assign_application_weights(
            model, spec.application, weights, **application_kwargs(spec, variant)
        )
    return model


# The moving-average momentum of batch normalisation in every backbone (PyTorch's default,
# 0.1 there). A moving variance starts at 1 and a moving mean at 0, and after t steps a
# momentum m still gives those starting values the weight m**t. From random weights many of
# MobileNetV3's activations have variances of 0.003 to 0.05 (inputs in [-1, 1], small
# depthwise kernels), so that leftover swamps them: keras' 0.999 (its MobileNetV3
# default) keeps a third after 1100 steps, and even 0.99 keeps 6% after three CamVid
# epochs, enough to make an LR-ASPP predict one class in inference mode. 0.9 forgets the
# start within an epoch and follows weights that change quickly early in training. One
# value whatever the weights keeps a resumed run (built without weights, then loaded) the
# same.
BN_MOMENTUM = 0.9


def set_batch_norm_momentum(model, momentum=BN_MOMENTUM):
    """Gives every BatchNormalization layer of `model` this moving-average momentum (kept
    by get_config, so saved models keep it too)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
