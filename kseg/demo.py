"""The embedded demo: runs kseg end to end on data it makes itself (no download).

For now it builds each registered FCN (small width, random weights) and runs a forward
pass on a generated sample image of an odd size, checking that the logits have the
image's size.
"""

import numpy as np


def main():
    from kseg.models import create_model, list_models

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(1, 181, 243, 3), dtype=np.uint8)
    for name in list_models():
        model = create_model(name, num_classes=5, weights=None, width=0.125)
        logits = model.predict(image, verbose=0)
        assert logits.shape[1:3] == image.shape[1:3], (name, logits.shape)
        print(f"{name}: image {image.shape[1]}x{image.shape[2]} -> logits {logits.shape}")


if __name__ == "__main__":
    main()
