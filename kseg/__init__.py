"""kseg: Fully Convolutional Networks for semantic segmentation with Keras 3."""

__version__ = "0.1.0"
