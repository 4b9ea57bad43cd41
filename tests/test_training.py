import csv
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from kseg import runs
from kseg.config import TrainConfig, resolve
from kseg.errors import KsegError
from kseg.models.saving import load_model

WORKER = os.path.join(os.path.dirname(__file__), "training_worker.py")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from kseg.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(
        str(tmp_path_factory.mktemp("data") / "synthetic"), num_train=8, num_val=4, size=(32, 48), seed=0
    )


def tiny_config(data_dir, run_dir, **changes):
    values = dict(
        model="fcn8s", data="synthetic", data_dir=data_dir, weights="none", width=0.0625,
        epochs=3, batch_size=4, crop=[32, 32], optimizer="adam", lr=1e-3, run_dir=str(run_dir),
        seed=0,
    )  # fmt: skip
    values.update(changes)
    return TrainConfig(**values)


def read_log(run_dir):
    with open(os.path.join(run_dir, "log.csv"), newline="") as handle:
        return list(csv.DictReader(handle))


def model_weights(path):
    return load_model(path).get_weights()


@pytest.fixture(scope="module")
def trained_run(tiny_data, tmp_path_factory):
    from kseg.training import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    config = tiny_config(tiny_data, run_dir, class_weights="median-frequency")
    return train(config, verbose=0)


def test_run_directory_and_loss_goes_down(trained_run):
    for name in ("config.yaml", "classes.json", "log.csv", "training_curves.png"):
        assert os.path.isfile(os.path.join(trained_run, name)), name
    for which in (runs.BEST, runs.LAST):
        assert os.path.isfile(runs.checkpoint_path(trained_run, which))
    for part in ("train", "validation"):
        folder = os.path.join(trained_run, "tensorboard", part)
        assert any(name.startswith("events.out.tfevents") for name in os.listdir(folder))
    log = read_log(trained_run)
    assert [int(row["epoch"]) for row in log] == [1, 2, 3]
    losses = [float(row["loss"]) for row in log]
    assert losses[-1] < losses[0]
    assert all(0 <= float(row["mean_iou"]) <= 1 for row in log)
    # The resolved config holds the computed class weights, one per class.
    saved = TrainConfig.from_yaml(os.path.join(trained_run, "config.yaml"))
    assert isinstance(saved.class_weights, list) and len(saved.class_weights) == 6
    classes = runs.read_classes(trained_run)
    assert classes["dataset"] == "synthetic" and len(classes["class_names"]) == 6
    model = load_model(runs.checkpoint_path(trained_run, runs.BEST))
    logits = model.predict(np.zeros((1, 37, 41, 3), np.uint8), verbose=0)
    assert logits.shape == (1, 37, 41, 6)
    # one output tensor, as the builders' models have (export wraps checkpoints)
    import keras

    assert not isinstance(model(keras.Input((None, None, 3))), (list, tuple))


def test_a_run_is_one_fit_whose_callbacks_see_the_validation_scores(tiny_data, tmp_path):
    import keras

    from kseg.training import train

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.fits, self.epochs, self.tests, self.val_losses = 0, [], 0, []

        def on_train_begin(self, logs=None):
            self.fits += 1

        def on_test_begin(self, logs=None):
            self.tests += 1

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append((epoch, sorted(logs), self.params["epochs"]))
            self.val_losses.append(float(logs["val_loss"]))

    record = Record()
    run_dir = tmp_path / "run"
    train(tiny_config(tiny_data, run_dir, epochs=2, mixed_precision="off"), verbose=0, callbacks=[record])
    assert record.fits == 1 and record.tests == 2
    assert [epoch for epoch, _, _ in record.epochs] == [0, 1]
    for _, keys, epochs in record.epochs:
        assert {"loss", "mean_iou", "val_loss", "val_mean_iou"} <= set(keys) and epochs == 2
    log = read_log(run_dir)
    assert [float(row["val_loss"]) for row in log] == pytest.approx(record.val_losses, rel=1e-5)


def test_resume_of_finished_run_does_nothing(trained_run):
    from kseg.training import train

    before = os.path.getmtime(runs.checkpoint_path(trained_run, runs.LAST))
    train(resolve(resume_dir=trained_run), resume=True, verbose=0)
    assert os.path.getmtime(runs.checkpoint_path(trained_run, runs.LAST)) == before


def poison_weights(when):
    """A callback that sets the first weight of the model to NaN at `when` ("train" or
    "test"): the loss of every later step is NaN, as after a divergence."""
    import keras

    class Poison(keras.callbacks.Callback):
        def poison(self):
            variable = self.model.trainable_variables[0]
            variable.assign(np.full(variable.shape, np.nan, variable.dtype))

        def on_train_batch_begin(self, batch, logs=None):
            if when == "train":
                self.poison()

        def on_test_begin(self, logs=None):
            if when == "test":
                self.poison()

    return Poison()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(trained_run, tmp_path):
    from kseg.training import read_checkpoint_state, train

    run_dir = str(tmp_path / "copy")
    shutil.copytree(trained_run, run_dir)
    last = runs.checkpoint_path(run_dir, runs.LAST)
    weights = model_weights(last)
    config = resolve({"epochs": 5}, resume_dir=run_dir)
    # Where the kernels propagate NaN the loss shows it; where one drops NaN (oneDNN's max
    # pooling) the loss stays finite and the weight check at the end of the epoch finds it.
    with pytest.raises(KsegError, match=r"(loss|weight \S+) became (nan|inf|NaN)"):
        train(config, resume=True, verbose=0, callbacks=[poison_weights("train")])
    assert read_checkpoint_state(last)["epoch"] == 3
    for before, after in zip(weights, model_weights(last)):
        np.testing.assert_array_equal(before, after)
    assert len(read_log(run_dir)) == 3


@pytest.mark.parametrize("steps_per_epoch", [None, 1])
def test_a_run_stopped_mid_epoch_leaves_no_reader_threads_of_the_python_engine(
    tiny_data, tmp_path, monkeypatch, reader_threads_left, steps_per_epoch
):
    import keras

    import kseg.data.pipeline
    import kseg.training.loop
    from kseg.training import train

    for module in (kseg.data.pipeline, kseg.training.loop):  # as under JAX and PyTorch
        monkeypatch.setattr(module, "default_engine", lambda: "python")

    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise KsegError("stopped by a callback")

    config = tiny_config(tiny_data, tmp_path / "run", batch_size=2, steps_per_epoch=steps_per_epoch)
    with pytest.raises(KsegError, match="stopped by a callback"):
        train(config, verbose=0, callbacks=[Stop()])

    assert not reader_threads_left()


def test_a_run_whose_logs_fail_to_close_still_leaves_no_reader_threads(
    tiny_data, tmp_path, monkeypatch, reader_threads_left, caplog
):
    import keras

    import kseg.data.pipeline
    import kseg.training.loop
    from kseg.training import train
    from kseg.training.logs import RunLogs

    for module in (kseg.data.pipeline, kseg.training.loop):  # as under JAX and PyTorch
        monkeypatch.setattr(module, "default_engine", lambda: "python")
    close = RunLogs.close

    def close_then_fail(self):
        close(self)
        raise OSError("the TensorBoard files could not be closed")

    monkeypatch.setattr(RunLogs, "close", close_then_fail)

    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise KsegError("stopped by a callback")

    # the reason training stopped is the error raised; the failure to close is a warning
    with caplog.at_level(logging.WARNING, logger="kseg"), pytest.raises(KsegError, match="stopped by a callback"):
        train(tiny_config(tiny_data, tmp_path / "run", batch_size=2), verbose=0, callbacks=[Stop()])
    assert "while stopping: the TensorBoard files could not be closed" in caplog.text
    assert not reader_threads_left()
    # after a run that ended well, the failure to close is the error
    with pytest.raises(OSError, match="could not be closed"):
        train(tiny_config(tiny_data, tmp_path / "run2", epochs=1, batch_size=2), verbose=0)


def test_a_weight_that_became_infinite_stops_training_though_every_loss_was_finite(tiny_data, tmp_path):
    """The last kernel turns inf after the epoch's losses were computed: no loss can show
    it, on any CPU; the run must stop before saving that epoch."""
    import keras

    from kseg.training import read_checkpoint_state, train

    class PoisonAfterTheLosses(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                variable = self.model.trainable_variables[-1]
                variable.assign(np.full(variable.shape, np.inf, variable.dtype))

    run_dir = tmp_path / "run"
    config = tiny_config(tiny_data, run_dir, epochs=3, mixed_precision="off")
    with pytest.raises(KsegError, match=r"the weight \S+ became inf at epoch 2.*epoch 1 are kept") as error:
        train(config, verbose=0, callbacks=[PoisonAfterTheLosses()])
    assert "\n" not in str(error.value)
    assert read_checkpoint_state(runs.checkpoint_path(run_dir, runs.LAST))["epoch"] == 1
    assert all(np.isfinite(weight).all() for weight in model_weights(runs.checkpoint_path(run_dir, runs.LAST)))


def test_resume_refuses_incompatible_changes(trained_run):

    with pytest.raises(KsegError, match="--optimizer: cannot change on --resume"):
        resolve({"optimizer": "sgd"}, resume_dir=trained_run)
    assert resolve({"epochs": 9, "optimizer": "adam"}, resume_dir=trained_run).epochs == 9
    # the options the run was started with are accepted again, though config.yaml holds
    # them resolved (computed weights, the precision auto chose on this CPU)
    same = {"class_weights": "median-frequency", "mixed_precision": "auto"}
    assert isinstance(resolve(same, resume_dir=trained_run).class_weights, list)
    with pytest.raises(KsegError, match="--class-weights: cannot change"):
        resolve({"class_weights": "none"}, resume_dir=trained_run)
    chosen = TrainConfig.from_yaml(os.path.join(trained_run, "config.yaml")).mixed_precision
    other = "bf16" if chosen == "off" else "off"  # auto chose off or bf16, by this CPU
    with pytest.raises(KsegError, match="--mixed-precision: cannot change"):
        resolve({"mixed_precision": other}, resume_dir=trained_run)


def test_bad_pairs_refused_unless_skip_bad(tiny_data, tmp_path):
    from kseg.training import train

    data_dir = str(tmp_path / "data")
    shutil.copytree(tiny_data, data_dir)
    with open(os.path.join(data_dir, "masks", "train", "00003.png"), "wb") as handle:
        handle.write(b"not a png")
    with pytest.raises(KsegError, match="--skip-bad"):
        train(tiny_config(data_dir, tmp_path / "refused", epochs=1), verbose=0)
    assert not os.path.exists(tmp_path / "refused")
    run_dir = train(tiny_config(data_dir, tmp_path / "skipped", epochs=1, skip_bad=True), verbose=0)
    assert len(read_log(run_dir)) == 1


def test_missing_imagenet_weights_is_a_clear_error(tiny_data, tmp_path, monkeypatch):
    from kseg.models import pretrained
    from kseg.training import train

    def offline(*args, **kwargs):
        raise Exception("offline")

    monkeypatch.setattr(pretrained.keras.utils, "get_file", offline)
    config = tiny_config(tiny_data, tmp_path / "run", weights="imagenet", width=1.0)
    with pytest.raises(KsegError, match="ImageNet VGG16 weights"):
        train(config, verbose=0)
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_a_step(policy):
    import keras

    from kseg.losses import MaskedSparseCrossEntropy
    from kseg.models import create_model
    from kseg.training.distribution import dtype_policy

    original = keras.config.dtype_policy().name
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, size=(2, 32, 32)).astype(np.uint8)
    labels[:, :4] = 255
    with dtype_policy(policy):
        model = create_model("fcn8s", num_classes=3, weights=None, width=0.0625)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=MaskedSparseCrossEntropy(3))
        assert model.get_layer("fc6").compute_dtype == policy.split("_")[1]
        loss = model.train_on_batch(images, labels)
        logits = model(images, training=False)
    assert keras.config.dtype_policy().name == original
    assert np.isfinite(loss)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_dtype_policy_restored_after_error():
    import keras

    from kseg.training.distribution import dtype_policy

    original = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError), dtype_policy("mixed_bfloat16"):
        raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == original


# -- in fresh processes ------------------------------------------------------------------


def run_worker(config, tmp_path, *args, name="config", env=None, wait=True):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config.to_dict()))
    command = [sys.executable, WORKER, str(path), *args]
    environment = dict(os.environ, **(env or {}))
    if not wait:
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
        )
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(tiny_data, tmp_path):
    from kseg.training import read_checkpoint_state

    straight = tiny_config(tiny_data, tmp_path / "straight", dropout=0.5)
    killed = tiny_config(tiny_data, tmp_path / "killed", dropout=0.5)
    run_worker(straight, tmp_path, name="straight")

    process = run_worker(killed, tmp_path, "--pause-at-epoch", "1", name="killed", wait=False)
    deadline = time.time() + 300
    for line in process.stdout:
        if "PAUSED" in line or time.time() > deadline:
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    last = runs.checkpoint_path(killed.run_dir, runs.LAST)
    assert read_checkpoint_state(last)["epoch"] == 1
    assert len(read_log(killed.run_dir)) == 1

    run_worker(killed, tmp_path, "--resume", name="resumed")
    assert read_checkpoint_state(last)["epoch"] == 3
    straight_log, resumed_log = read_log(straight.run_dir), read_log(killed.run_dir)
    assert len(resumed_log) == len(straight_log) == 3
    for a, b in zip(straight_log, resumed_log):
        for key in ("loss", "val_loss", "mean_iou", "pixel_accuracy", "lr"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-4, abs=1e-6), key
    for a, b in zip(model_weights(runs.checkpoint_path(straight.run_dir, runs.LAST)), model_weights(last)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_mirrored_over_two_cpus_matches_one_device(tiny_data, tmp_path):
    # float32: the comparison is of the distribution, not of bfloat16 rounding
    single = tiny_config(tiny_data, tmp_path / "single", epochs=2, dropout=0.0, strategy="none",
                         mixed_precision="off")
    mirrored = tiny_config(tiny_data, tmp_path / "mirrored", epochs=2, dropout=0.0, strategy="mirrored",
                           mixed_precision="off")
    run_worker(single, tmp_path, "--logical-cpus", "2", name="single")
    done = run_worker(mirrored, tmp_path, "--logical-cpus", "2", name="mirrored")
    single_log, mirrored_log = read_log(single.run_dir), read_log(mirrored.run_dir)
    for a, b in zip(single_log, mirrored_log):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-3)
        assert float(a["mean_iou"]) == pytest.approx(float(b["mean_iou"]), abs=1e-3)
    single_weights = model_weights(runs.checkpoint_path(single.run_dir, runs.LAST))
    mirrored_weights = model_weights(runs.checkpoint_path(mirrored.run_dir, runs.LAST))
    for a, b in zip(single_weights, mirrored_weights):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert "DONE" in done.stdout


def free_port():
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


@pytest.mark.slow
def test_two_process_multiworker_run_completes(tiny_data, tmp_path):
    config = tiny_config(tiny_data, tmp_path / "multi", epochs=1, dropout=0.0, strategy="multiworker")
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(
            run_worker(
                config, tmp_path, name=f"worker{index}", wait=False, env={"TF_CONFIG": json.dumps(tf_config)}
            )
        )
    outputs = []
    for process in processes:
        try:
            output, _ = process.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        outputs.append(output)
        assert process.returncode == 0, output
    assert all("DONE" in output for output in outputs)
    assert len(read_log(config.run_dir)) == 1
    assert os.path.isfile(runs.checkpoint_path(config.run_dir, runs.BEST))


def test_init_from_a_run_copies_matching_layers(trained_run, tiny_data, tmp_path):
    from kseg.training.build import build_model

    config = tiny_config(tiny_data, tmp_path / "run", model="fcn16s", init_from=trained_run)
    model = build_model(config, num_classes=6)
    source = load_model(runs.checkpoint_path(trained_run, runs.BEST))
    for name in ("block1_conv1", "fc6", "score_fr", "score_pool4"):
        for a, b in zip(source.get_layer(name).get_weights(), model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(KsegError, match="no such model file or run directory"):
        build_model(tiny_config(tiny_data, tmp_path / "x", init_from=str(tmp_path / "missing")), 6)


def test_without_validation_best_follows_training_loss(tiny_data, tmp_path, caplog):
    from kseg.training import train

    with caplog.at_level(logging.INFO, logger="kseg"):
        run_dir = train(tiny_config(tiny_data, tmp_path / "run", epochs=1, val_split="none"), verbose=0)
    (row,) = read_log(run_dir)
    assert row["mean_iou"] == "" and float(row["loss"]) > 0
    assert os.path.isfile(runs.checkpoint_path(run_dir, runs.BEST))
    assert "val mIoU -" in caplog.text and "(lowest training loss: best.keras)" in caplog.text


def test_a_misspelt_model_is_refused_first_with_the_names_it_may_mean(tmp_path):
    from kseg.training import train

    config = TrainConfig(model="fcn8s_vgg16n", data="synthetic", data_dir=str(tmp_path / "no-data-here"),
                         run_dir=str(tmp_path / "run"))  # fmt: skip
    with pytest.raises(KsegError, match=r"unknown model 'fcn8s_vgg16n' \(did you mean fcn8s_vgg16bn"):
        train(config, verbose=0)  # before the (missing) data is looked at
    assert not (tmp_path / "run").exists()
