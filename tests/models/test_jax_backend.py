"""kseg/models is pure Keras: the same model builds and predicts alike under JAX."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import randomize_weights

from kseg.models import create_model

pytest.importorskip("jax")

JAX_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from kseg.models import create_model
    directory = sys.argv[1]
    for name in ("fcn32s", "fcn16s", "fcn8s"):
        model = create_model(name, num_classes=3, weights=None, width=0.0625)
        model.load_weights(f"{directory}/{name}.weights.h5")
        for size in ("37x53", "64x64"):
            images = np.load(f"{directory}/images_{size}.npy")
            np.save(f"{directory}/{name}_{size}_jax.npy", np.asarray(model.predict(images, verbose=0)))
    """
)


def test_models_build_and_predict_the_same_under_jax(tmp_path):
    rng = np.random.default_rng(0)
    expected = {}
    for size in ("37x53", "64x64"):
        height, width = map(int, size.split("x"))
        np.save(tmp_path / f"images_{size}.npy", rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8))
    for name in ("fcn32s", "fcn16s", "fcn8s"):
        model = randomize_weights(create_model(name, num_classes=3, weights=None, width=0.0625), scale=0.05)
        model.save_weights(tmp_path / f"{name}.weights.h5")
        for size in ("37x53", "64x64"):
            expected[name, size] = np.asarray(model(np.load(tmp_path / f"images_{size}.npy")))

    environment = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(tmp_path)],
        env=environment, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for (name, size), tf_logits in expected.items():
        jax_logits = np.load(tmp_path / f"{name}_{size}_jax.npy")
        assert jax_logits.shape == tf_logits.shape
        assert np.abs(tf_logits).max() > 0
        np.testing.assert_allclose(jax_logits, tf_logits, rtol=1e-4, atol=1e-4 * np.abs(tf_logits).max())
