"""Runs `kseg.training.train` in a fresh process, for tests that kill it or need a
TensorFlow device setup of their own (logical CPU devices, a multi-worker cluster).

    python tests/training_worker.py CONFIG.json [--resume] [--logical-cpus N]
                                    [--pause-at-epoch E]

--pause-at-epoch E sleeps for a long time after the first step of epoch E (0-based), so a
test can kill the process there, after epoch E's predecessors were checkpointed.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--logical-cpus", type=int, default=0)
    parser.add_argument("--pause-at-epoch", type=int, default=-1)
    args = parser.parse_args()

    import tensorflow as tf

    if args.logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(args.logical_cpus)]
        )
    import keras

    from kseg.config import TrainConfig
    from kseg.training import train

    class Pause(keras.callbacks.Callback):
        def __init__(self, epoch):
            super().__init__()
            self.epoch = epoch
            self.current = None

        def on_epoch_begin(self, epoch, logs=None):
            self.current = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.current == self.epoch:
                print("PAUSED", flush=True)
                time.sleep(600)

    with open(args.config) as handle:
        config = TrainConfig.from_dict(json.load(handle))
    callbacks = [Pause(args.pause_at_epoch)] if args.pause_at_epoch >= 0 else []
    run_dir = train(config, resume=args.resume, verbose=0, callbacks=callbacks)
    print("DONE", run_dir, flush=True)


if __name__ == "__main__":
    sys.exit(main())
