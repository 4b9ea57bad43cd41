"""The values of kseg's enumerated options.

They live here, in a module that imports nothing, so the library checks against them and
the CLI builds its options (and a fast `--help`) from the same lists without loading keras.
"""

EXPORT_FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "fp16", "dynamic", "int8")  # TFLite
PRECISIONS = ("fp32", "bf16")  # what a Keras model computes in at inference
FITS = ("resize", "tile")  # an export of a fixed size on images of other sizes
BLENDS = ("center", "mean")  # tiles' overlap (kseg.inference)
LABEL_FORMATS = ("auto", "train-ids", "label-ids")  # label maps scored on Cityscapes
IMPORT_FORMATS = ("labelme", "coco", "cvat", "camvid-kaggle", "pix2pix-cityscapes")  # `kseg data import`
UNLABELLED = ("background", "ignore")  # importers: pixels no annotation covers
CROWD = ("ignore", "class")  # COCO crowd regions
CAFFE_MODELS = ("fcn32s_caffe", "fcn16s_caffe", "fcn8s_caffe", "fcn8s_atonce_caffe")  # released FCN weights
