from setuptools import find_packages, setup

setup(
    name="kseg",
    version="0.1.0",
    description="Fully Convolutional Networks (FCN-32s/16s/8s) for semantic segmentation with Keras 3",
    python_requires=">=3.10",
    packages=find_packages(include=["kseg", "kseg.*"]) + ["kseg.cli"],
    package_dir={"kseg.cli": "cli"},
    # the training recipes (`kseg train --recipe NAME`) are data files of the package
    package_data={"kseg.recipes": ["*.yaml"]},
    install_requires=[
        "tensorflow-cpu==2.21.0",
        "keras==3.15.1",
        "numpy==2.4.6",
        "h5py==3.14.0",
        "opencv-python-headless==5.0.0.93",
        "albumentations==2.0.8",
        "click==8.4.0",
        "pyyaml==6.0.3",
        "tqdm==4.70.1",
        "tensorboard==2.21.0",  # the event-file writer of the runs' TensorBoard scalars
        "matplotlib==3.11.2",
        "pillow==13.0.0",  # image headers, EXIF, palette PNGs and label-map text chunks
        "cityscapesscripts==2.3.0",
        "pycocotools==2.0.11",
    ],
    extras_require={
        "export": [
            "ai-edge-litert==2.3.0",
            "tf2onnx==1.17.0",
            "onnx==1.23.2",
            "onnxruntime==1.31.1",
            "mediapipe==1.2.3",
            "opencv-contrib-python==5.0.0.93",  # mediapipe needs it; same cv2 as the headless build
        ],
        "test": [
            "pytest==9.2.0",
            "ruff==0.17.6",
            "jax[cpu]==0.10.2",
            "ai-edge-litert==2.3.0",
            "tf2onnx==1.17.0",
            "onnx==1.23.2",
            "onnxruntime==1.31.1",
            "mediapipe==1.2.3",
            "opencv-contrib-python==5.0.0.93",  # mediapipe needs it; same cv2 as the headless build
        ],
    },
    entry_points={"console_scripts": ["kseg=kseg.cli.main:cli"]},
)
