"""`kseg train`: builds a TrainConfig from --config FILE and options, then calls
`kseg.training.train`. Options left out keep the value of the file (or the default)."""

import click

from kseg.config import (
    CLASS_WEIGHT_MODES,
    MIXED_PRECISION_MODES,
    NUMBER_RANGES,
    OPTIMIZERS,
    SCHEDULES,
    STRATEGIES,
    TrainConfig,
    check_setting,
    parse_crop,
)
from kseg.errors import KsegError
from kseg.files import brief

from kseg.cli.params import Number

from kseg.data.registry import DATASET_NAMES as DATASETS  # no TensorFlow import


def parse_class_weights(text):
    """--class-weights: none, median-frequency, or numbers separated by commas."""
    if text is None:
        return None
    if text in CLASS_WEIGHT_MODES:
        return text
    parts = [part for part in text.replace(" ", "").split(",") if part]
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        raise KsegError(
            f"--class-weights: expected none, median-frequency or numbers such as 1,2.5,0.8. "
            f"Received: {brief(text)}"
        ) from None
    for index, number in enumerate(numbers):
        check_setting("class_weight", number, f"--class-weights: weight {index + 1} ({brief(parts[index], 20)})")
    if not any(numbers):
        raise KsegError("--class-weights: the weights are all zero; give at least one positive weight")
    return numbers


def number(key):
    """The Click type of a numeric option, from the limits TrainConfig checks."""
    return Number(**NUMBER_RANGES[key])


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML file of training options (keys as below, with underscores); "
                   "options given here override it.")
@click.option("--model", help="Model to train: fcn32s, fcn16s or fcn8s (`kseg models`). [default: fcn8s]")
@click.option("--data", type=click.Choice(DATASETS), help="Dataset. [default: cityscapes]")
@click.option("--data-dir", help="Dataset root folder.")
@click.option("--classes", "classes_file", help="Classes file of a folder/synthetic dataset.")
@click.option("--train-split", help="Split trained on. [default: train]")
@click.option("--val-split", help="Split validated on after each epoch (none: no validation). [default: val]")
@click.option("--epochs", type=number("epochs"), help="Number of epochs. [default: 50]")
@click.option("--batch-size", type=number("batch_size"), help="Global batch size. [default: 8]")
@click.option("--val-batch-size", type=number("val_batch_size"),
              help="Validation batch size. [default: --batch-size]")
@click.option("--crop", help="Training crop HxW, or none for whole images. "
                             "[default: 512x1024 for cityscapes, none otherwise]")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), help="Optimizer. [default: sgd]")
@click.option("--lr", type=number("lr"), help="Base learning rate. [default: 0.001]")
@click.option("--momentum", type=number("momentum"), help="SGD momentum. [default: 0.9]")
@click.option("--weight-decay", type=number("weight_decay"), help="Decoupled weight decay. [default: 0.0005]")
@click.option("--schedule", type=click.Choice(SCHEDULES), help="Learning rate schedule. [default: poly]")
@click.option("--weights", help="imagenet, none, or a path to VGG16 classifier weights. [default: imagenet]")
@click.option("--width", type=number("width"),
              help="VGG16 channel multiplier, for small demo models (needs --weights none). [default: 1]")
@click.option("--dropout", type=number("dropout"), help="Dropout after fc6/fc7. [default: 0.5]")
@click.option("--learn-upsampling/--fixed-upsampling", default=None,
              help="Train the final bilinear upsampling layer. [default: fixed]")
@click.option("--init-from", help="Run directory or .keras file to initialise from (32s -> 16s -> 8s).")
@click.option("--mixed-precision", type=click.Choice(MIXED_PRECISION_MODES),
              help="auto: float16 on a GPU, float32 on a CPU. [default: auto]")
@click.option("--strategy", type=click.Choice(STRATEGIES),
              help="Distribution: mirrored (local devices) or multiworker (TF_CONFIG). [default: auto]")
@click.option("--class-weights",
              help="none, median-frequency, or one weight per class: 1,2,0.5,... [default: none]")
@click.option("--seed", type=number("seed"), help="Random seed. [default: 0]")
@click.option("--skip-bad/--no-skip-bad", default=None, help="Train despite bad pairs, skipping them.")
@click.option("--steps-per-epoch", type=number("steps_per_epoch"), help="Cap on training steps per epoch.")
@click.option("--val-steps", type=number("val_steps"), help="Cap on validation steps.")
@click.option("--run-dir", help="Run directory: new or empty (a run's folder only with --resume). "
                             "[default: runs/MODEL-DATA-TIME]")
@click.option("--worker-timeout", type=number("worker_timeout"),
              help="Seconds --strategy multiworker waits for the other TF_CONFIG workers. [default: 300]")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its last checkpoint.")
@click.option("--quiet", is_flag=True, help="One line per epoch instead of progress bars.")
@click.option("--unsafe", is_flag=True,
              help="Allow an --init-from model containing code (Lambda layers); trusted files only.")
def train(config_file, resume, quiet, unsafe, **options):
    """Train an FCN on a dataset.

    \b
    Examples:
      kseg train --model fcn32s --data camvid --data-dir data/camvid --epochs 30
      kseg train --model fcn16s --data camvid --data-dir data/camvid --init-from runs/fcn32s-...
      kseg train --run-dir runs/fcn8s-camvid-... --resume
    """
    from kseg.training import resume_config
    from kseg.training import train as run_training

    options["crop"] = _crop_option(options["crop"])
    options["class_weights"] = parse_class_weights(options["class_weights"])
    overrides = {key: value for key, value in options.items() if value is not None}
    if resume:
        if not overrides.get("run_dir"):
            raise KsegError("--resume needs --run-dir, the run directory to continue")
        if config_file:
            raise KsegError("--resume reads RUN_DIR/config.yaml; --config cannot be given with it")
        config = resume_config(overrides.pop("run_dir"), overrides)
    elif config_file:
        config = TrainConfig.from_yaml(config_file, overrides=overrides)
    else:
        config = TrainConfig.from_dict(overrides, source="options")
    run_dir = run_training(config, resume=resume, verbose=2 if quiet else 1, unsafe=unsafe)
    click.echo(f"run directory: {run_dir}")


def _crop_option(text):
    if text is None:
        return None
    crop = parse_crop(text, key="--crop")
    return "none" if crop is None else list(crop)
