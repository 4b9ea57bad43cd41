"""Training on every keras backend: the data path without TensorFlow, JAX training,
resume and mixed precision, JAX checkpoints exported under TensorFlow, and what
--mixed-precision auto picks.

The JAX runs happen in one subprocess in which `import tensorflow` raises ImportError (a
meta-path finder installed before kseg is imported), so nothing there can use TensorFlow.
"""

import csv
import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kseg import runs
from kseg.cpu import native_bf16_flags, read_cpuinfo
from kseg.training.distribution import choose_auto_precision

AVX2_CPUINFO = textwrap.dedent(
    """\
    processor\t: 0
    vendor_id\t: GenuineIntel
    model name\t: Intel(R) Xeon(R) CPU
    flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2
    bogomips\t: 4400.00

    processor\t: 1
    flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2
    """
)
SAPPHIRE_RAPIDS_CPUINFO = AVX2_CPUINFO.replace("avx2 bmi2", "avx2 bmi2 avx512f avx512_bf16 amx_bf16 amx_tile")
COOPER_LAKE_CPUINFO = AVX2_CPUINFO.replace("avx2 bmi2", "avx2 avx512f avx512_bf16")


def test_auto_precision_from_cpuinfo():
    assert native_bf16_flags(AVX2_CPUINFO) == []
    assert native_bf16_flags(SAPPHIRE_RAPIDS_CPUINFO) == ["avx512_bf16", "amx_bf16"]
    assert native_bf16_flags("model name : avx512_bf16 inside a name\n") == []  # flags lines only
    assert choose_auto_precision(False, AVX2_CPUINFO)[0] == "float32"
    assert choose_auto_precision(False, "")[0] == "float32"
    policy, reason = choose_auto_precision(False, COOPER_LAKE_CPUINFO)
    assert policy == "mixed_bfloat16" and "avx512_bf16" in reason
    assert choose_auto_precision(False, SAPPHIRE_RAPIDS_CPUINFO)[0] == "mixed_bfloat16"
    # a CUDA GPU wins over the CPU
    assert choose_auto_precision(True, SAPPHIRE_RAPIDS_CPUINFO)[0] == "mixed_float16"


def test_auto_precision_on_this_machine_follows_its_cpuinfo():
    from kseg.training.distribution import cuda_gpu_visible, resolve_precision

    expected = choose_auto_precision(cuda_gpu_visible(), read_cpuinfo())[0]
    assert resolve_precision("auto") == expected
    if not cuda_gpu_visible() and not native_bf16_flags(read_cpuinfo()):
        assert expected == "float32"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from kseg.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(
        str(tmp_path_factory.mktemp("data") / "synthetic"), num_train=8, num_val=4, size=(32, 48), seed=0
    )


def _batches(dataset):
    return [(np.asarray(images), np.asarray(masks)) for images, masks in dataset]


@pytest.mark.parametrize("training,crop", [(True, (24, 24)), (True, None), (False, None)])
def test_python_pipeline_gives_the_tf_data_batches(tiny_data, training, crop):
    from kseg.data import DatasetOptions, get_dataset_spec, make_dataset

    spec = get_dataset_spec("synthetic", tiny_data)
    sizes = dict(training=training, batch_size=3)
    options = DatasetOptions(crop=crop, seed=7)
    python_options = dataclasses.replace(options, engine="python")
    expected = _batches(make_dataset(spec, "train", **sizes, options=options))
    python = make_dataset(spec, "train", **sizes, options=python_options)
    found = _batches(python[index] for index in range(len(python))) if training else _batches(python)
    assert len(found) == len(expected) == 3
    for (images, masks), (tf_images, tf_masks) in zip(found, expected):
        np.testing.assert_array_equal(images, tf_images)
        np.testing.assert_array_equal(masks, tf_masks)
    assert python.num_pairs == 8
    assert len(_batches(make_dataset(spec, "train", **sizes, options=python_options).take(2))) == 2


def test_python_pipeline_gives_the_tf_data_pass_set_epoch_chooses(tiny_data):
    from kseg.data import DatasetOptions, get_dataset_spec, make_dataset

    spec = get_dataset_spec("synthetic", tiny_data)
    options = DatasetOptions(crop=(24, 24), seed=7)
    tf_data = make_dataset(spec, "train", training=True, batch_size=3, options=options)
    _batches(tf_data)  # pass 0
    expected = _batches(tf_data)  # pass 1
    python_options = dataclasses.replace(options, engine="python")
    python = make_dataset(spec, "train", training=True, batch_size=3, options=python_options)
    first = _batches(python[index] for index in range(len(python)))
    taken = python.take(2)
    python.set_epoch(1)
    found = _batches(taken[index] for index in range(len(taken)))
    assert len(found) == 2
    assert not np.array_equal(found[0][0], first[0][0])
    for (images, masks), (tf_images, tf_masks) in zip(found, expected):
        np.testing.assert_array_equal(images, tf_images)
        np.testing.assert_array_equal(masks, tf_masks)


def test_python_pipeline_pads_batches_for_the_devices(tiny_data):
    from kseg.data import DatasetOptions, get_dataset_spec, make_dataset

    spec = get_dataset_spec("synthetic", tiny_data)
    options = DatasetOptions(crop=(24, 24), seed=7, engine="python")
    dataset = make_dataset(spec, "train", training=True, batch_size=3, options=dataclasses.replace(options, pad_to=2))
    plain = make_dataset(spec, "train", training=True, batch_size=3, options=options)
    images, masks = dataset[2]  # 8 pairs: the last batch has 2, already a multiple
    assert images.shape[0] == 2
    images, masks = dataset[0]
    assert images.shape == (4, 24, 24, 3)
    np.testing.assert_array_equal(images[:3], plain[0][0])
    assert not images[3].any() and (masks[3] == spec.ignore_index).all()


def test_event_files_are_read_by_tensorflow(tmp_path):
    import tensorflow as tf

    from kseg.training.logs import ScalarWriter

    writer = ScalarWriter(str(tmp_path))
    writer.write({"loss": 0.5, "lr": None, "mean_iou": 0.25}, 1)
    writer.write({"lr": None}, 2)
    writer.write({"loss": 0.125}, 3)
    writer.close()
    (name,) = os.listdir(tmp_path)
    records = [bytes(record.numpy()) for record in tf.data.TFRecordDataset(str(tmp_path / name))]  # checks CRCs
    events = [tf.compat.v1.Event.FromString(record) for record in records]
    assert events[0].file_version == "brain.Event:2"
    assert [(event.step, {value.tag: value.simple_value for value in event.summary.value}) for event in events[1:]] == [
        (1, {"loss": 0.5, "mean_iou": 0.25}), (3, {"loss": 0.125}),
    ]  # fmt: skip


JAX_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, logging, sys

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError("TensorFlow is not importable in this test")

    sys.meta_path.insert(0, NoTensorFlow())
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from kseg.cli.main import cli
    from kseg.config import TrainConfig, resolve
    from kseg.training import train

    data_dir, out = sys.argv[1], sys.argv[2]

    def config(name, **changes):
        values = dict(model="fcn8s", data="synthetic", data_dir=data_dir, weights="none", width=0.0625,
                      epochs=2, batch_size=4, crop=[32, 32], optimizer="adam", lr=3e-3,
                      run_dir=f"{out}/{name}", seed=0, dropout=0.5)
        values.update(changes)
        return TrainConfig(**values)

    class Interrupted(Exception):
        pass

    class StopBeforeSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise Interrupted()

    train(config("straight"), verbose=0)
    try:  # the same run stopped after its first epoch, then resumed
        train(config("resumed"), verbose=0, callbacks=[StopBeforeSecondEpoch()])
        raise AssertionError("not interrupted")
    except Interrupted:
        pass
    train(resolve(resume_dir=f"{out}/resumed"), resume=True, verbose=0)
    train(config("fp16", epochs=1, steps_per_epoch=1, val_split="none", mixed_precision="fp16"), verbose=0)
    # bf16 data-parallel over the two CPU devices of XLA_FLAGS; batches of 3 are padded to 4
    train(config("bf16", epochs=1, batch_size=3, mixed_precision="bf16", strategy="mirrored", val_steps=1),
          verbose=0)
    for arguments in (
        ["predict", "--model", f"{out}/straight", "--out", f"{out}/predictions", f"{data_dir}/images/val"],
        ["evaluate", f"{out}/straight", "--data", "synthetic", "--data-dir", data_dir, "--out",
         f"{out}/metrics.json"],
    ):
        cli(arguments, standalone_mode=False)
    print("tensorflow imported:", "tensorflow" in sys.modules)
    """
)


def read_log(run_dir):
    with open(os.path.join(run_dir, "log.csv"), newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def jax_runs(tiny_data, tmp_path_factory):
    pytest.importorskip("jax")
    out = tmp_path_factory.mktemp("jax")
    environment = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    environment["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, tiny_data, str(out)],
        env=environment, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "tensorflow imported: False" in result.stdout
    return out, result.stdout + result.stderr


def test_jax_training_without_tensorflow_writes_a_complete_run(jax_runs):
    out, output = jax_runs
    run_dir = out / "straight"
    for name in ("config.yaml", "classes.json", "log.csv", "training_curves.png"):
        assert os.path.isfile(run_dir / name), name
    for which in (runs.BEST, runs.LAST):
        assert os.path.isfile(runs.checkpoint_path(str(run_dir), which))
    for part in ("train", "validation"):
        assert any(name.startswith("events.out.tfevents") for name in os.listdir(run_dir / "tensorboard" / part))
    log = read_log(run_dir)
    assert [int(row["epoch"]) for row in log] == [1, 2]
    losses = [float(row["loss"]) for row in log]
    assert losses[-1] < losses[0], losses
    assert all(0 <= float(row["mean_iou"]) <= 1 for row in log)
    assert "--mixed-precision auto: " in output  # says what auto chose, and why


def test_jax_resume_is_exact(jax_runs):
    from kseg.models.saving import load_model

    out, _ = jax_runs
    straight = load_model(runs.checkpoint_path(str(out / "straight"), runs.LAST)).get_weights()
    resumed = load_model(runs.checkpoint_path(str(out / "resumed"), runs.LAST)).get_weights()
    assert len(straight) == len(resumed)
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(read_log(out / "straight"), read_log(out / "resumed")):
        assert a["loss"] == b["loss"] and a["mean_iou"] == b["mean_iou"]


def test_jax_mixed_precision_steps_are_finite(jax_runs):
    from kseg.config import TrainConfig

    out, output = jax_runs
    assert "with policy mixed_bfloat16 on 2 replica(s)" in output  # --strategy mirrored: DataParallel
    for mode in ("fp16", "bf16"):
        (row,) = read_log(out / mode)
        assert np.isfinite(float(row["loss"])) and float(row["loss"]) > 0
        assert TrainConfig.from_yaml(str(out / mode / "config.yaml")).mixed_precision == mode


def test_jax_predict_and_evaluate(jax_runs, tiny_data):
    out, _ = jax_runs
    labels = sorted(name for name in os.listdir(out / "predictions") if name[:-4].isdigit())
    assert len(labels) == 4
    with open(out / "metrics.json") as handle:
        metrics = json.load(handle)
    assert 0 <= metrics["mean_iou"] <= 1


def test_jax_checkpoint_resumes_and_exports_under_tensorflow(jax_runs, tmp_path):
    """A run trained under JAX continues under TensorFlow and exports to TFLite there."""
    import shutil

    from click.testing import CliRunner
    from kseg.cli.main import cli

    from kseg.config import resolve
    from kseg.training import train

    out, _ = jax_runs
    run_dir = tmp_path / "continued"
    shutil.copytree(out / "straight", run_dir)
    train(resolve({"epochs": 3}, resume_dir=str(run_dir)), resume=True, verbose=0)
    assert [int(row["epoch"]) for row in read_log(run_dir)] == [1, 2, 3]
    result = CliRunner().invoke(
        cli, ["export", str(out / "straight"), "--format", "tflite", "--out", str(tmp_path / "m.tflite"), "--check"]
    )
    assert result.exit_code == 0, result.output
    assert os.path.getsize(tmp_path / "m.tflite") > 0


def test_training_and_inference_read_one_answer_to_does_this_cpu_compute_bf16(monkeypatch):
    # the bf16 inference warning and --mixed-precision auto agree on every CPU
    from kseg import cpu

    for text, expected in ((AVX2_CPUINFO, False), (COOPER_LAKE_CPUINFO, True), ("", None)):
        monkeypatch.setattr(cpu, "read_cpuinfo", lambda text=text: text)
        assert cpu.cpu_has_bf16() is expected
        assert (choose_auto_precision(False, text)[0] == "mixed_bfloat16") is bool(expected)
