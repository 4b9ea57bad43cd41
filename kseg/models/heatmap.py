"""The ImageNet VGG16 classifier as a fully convolutional heatmap model.

fc1, fc2 and predictions become fc6 (7x7), fc7 (1x1) and predictions (1x1) convolutions,
so an image of any size gives a map of 1000 ImageNet class probabilities at stride 32.
"""

from keras import layers

from kseg.models.fcn import INPUT_MULTIPLE
from kseg.models.layers import padded_model
from kseg.models.pretrained import assign_vgg16_weights
from kseg.models.vgg16 import fully_connected_as_convs, vgg16_trunk

IMAGENET_CLASSES = 1000


def imagenet_heatmap_model(weights="imagenet"):
    """Returns a model: RGB image (any size) -> (ceil(H/32), ceil(W/32), 1000) probabilities.

    Args:
        weights: str. "imagenet" or a path to a keras VGG16 classifier weights file.
    """

    def probabilities(x):
        x = fully_connected_as_convs(vgg16_trunk(x)["block5_pool"], dropout=0)
        return layers.Conv2D(IMAGENET_CLASSES, 1, activation="softmax", dtype="float32", name="predictions")(x)

    model = padded_model("vgg16_heatmap", probabilities, INPUT_MULTIPLE, crop=False)
    assign_vgg16_weights(model, weights, dense_as_conv=("fc1", "fc2", "predictions"))
    return model
