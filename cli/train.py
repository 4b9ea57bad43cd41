"""`kseg train`: builds a TrainConfig from --recipe NAME or --config FILE and options,
then calls `kseg.training.train`. Options left out keep the value of the recipe or file
(or the default); --recipe cannot be combined with --config or --resume.

There is one option per setting of `kseg.config.SETTINGS`, made from that table (name,
help, and for numbers the limits TrainConfig checks), so the command line and the Python
API check every value the same way.
"""

import click
from kseg.cli.params import Number

from kseg.config import (
    CLASS_WEIGHT_MODES,
    NUMBER_RANGES,
    SETTINGS,
    check_setting,
    parse_crop,
    parse_loss,
    parse_scale,
    resolve,
)  # fmt: skip
from kseg.data.registry import DATASET_NAMES as DATASETS  # no TensorFlow import
from kseg.errors import KsegError
from kseg.files import brief
from kseg.recipes import load_recipe, recipe_names


def parse_class_weights(text):
    """--class-weights: none, (sqrt-)median-frequency, or numbers separated by commas."""
    if text is None:
        return None
    if text in CLASS_WEIGHT_MODES:
        return text
    parts = [part for part in text.replace(" ", "").split(",") if part]
    try:
        numbers = [float(part) for part in parts or [text]]  # only commas: refused as not numbers
    except ValueError:
        raise KsegError(
            f"--class-weights: expected none, median-frequency, sqrt-median-frequency or numbers "
            f"such as 1,2.5,0.8. "
            f"Received: {brief(text)}"
        ) from None
    for index, number in enumerate(numbers):
        check_setting("class_weight", number, f"--class-weights: weight {index + 1} ({brief(parts[index], 20)})")
    if not any(numbers):
        raise KsegError("--class-weights: the weights are all zero; give at least one positive weight")
    return numbers


def _parsed(parse, name):
    """A click callback: the option's text parsed by `parse` (None when it is left out)."""
    return lambda ctx, param, text: None if text is None else parse(text, name)


def setting_option(key):
    """The click option of one setting of `kseg.config.SETTINGS`."""
    setting = SETTINGS[key]
    declaration = setting.option or "--" + key.replace("_", "-")
    details = {"help": setting.help}
    if setting.kind == "number":
        details["type"] = Number(**NUMBER_RANGES[key])  # the limits TrainConfig checks
    elif setting.kind == "choice":
        details["type"] = click.Choice(setting.choices)
    elif setting.kind == "flag":
        details["default"] = None
    elif setting.kind == "scale":
        details["callback"] = _parsed(parse_scale, "--scale")
    elif setting.kind == "loss":
        details.update(callback=_parsed(parse_loss, "--loss"), metavar="LOSS")
    if key == "data":
        details["type"] = click.Choice(DATASETS)
    return click.option(declaration, key, **details)


def setting_options(command):
    """Adds every setting's option to `command`, in the table's order."""
    for key in reversed(list(SETTINGS)):
        command = setting_option(key)(command)
    return command


@click.command()
@click.option("--recipe", "recipe_name", metavar="NAME",
              help=f"Start from a named training recipe ({', '.join(recipe_names())}; `kseg recipes` "
                   "describes them); options given here override it. Not with --config or --resume.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML file of training options (keys as below, with underscores); "
                   "options given here override it.")
@setting_options
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its last checkpoint.")
@click.option("--quiet", is_flag=True, help="One line per epoch instead of progress bars.")
@click.option("--unsafe", is_flag=True,
              help="Allow an --init-from model containing code (Lambda layers); trusted files only.")
def train(recipe_name, config_file, resume, quiet, unsafe, **options):
    """Train an FCN on a dataset.

    Settings come from the defaults below, or a recipe (--recipe) or a file (--config),
    and the options given, which win. On a CPU without internet, start from a recipe:
    `--recipe camvid-scratch` trains from random weights (no ImageNet download).

    \b
    Examples:
      kseg train --recipe camvid-scratch --data-dir data/camvid
      kseg train --recipe demo --epochs 4
      kseg train --model fcn32s --data camvid --data-dir data/camvid --epochs 30
      kseg train --model fcn16s --data camvid --data-dir data/camvid --init-from runs/fcn32s-...
      kseg train --run-dir runs/fcn8s-camvid-... --resume
    """
    from kseg.training import train as run_training
    from kseg.training.logs import training_progress

    if options["crop"] is not None:
        crop = parse_crop(options["crop"], key="--crop")
        options["crop"] = "none" if crop is None else list(crop)
    options["class_weights"] = parse_class_weights(options["class_weights"])
    resume_dir = options.pop("run_dir") if resume else None
    if resume and not resume_dir:
        raise KsegError("--resume needs --run-dir, the run directory to continue")
    recipe = load_recipe(recipe_name) if recipe_name else None
    config = resolve(options, file=config_file, resume_dir=resume_dir, recipe=recipe)
    if recipe:
        click.echo(f"recipe: {recipe.name} (version {recipe.version})", err=True)

    verbose, callbacks = training_progress(2 if quiet else 1)  # a bar only in a terminal
    run_dir = run_training(config, resume=resume, verbose=verbose, callbacks=callbacks, unsafe=unsafe)
    click.echo(f"run directory: {run_dir}")
