"""Named, versioned training recipes shipped with kseg: `kseg train --recipe NAME`.

A recipe is a YAML file of this folder, `NAME.yaml`, in the format `kseg train --config
FILE` reads (setting: value, see `kseg.config.SETTINGS`), plus a `recipe:` section that the
config reader skips:

    recipe:
      name: camvid-scratch            # the file's name without .yaml
      version: 1                      # raised whenever a setting changes
      description: ...                # what it trains, and what it leaves out
      results:                        # what it measured, and where
        - metric: val mIoU
          value: 0.771                # null: not measured yet
          data: ...                   # what was scored
          cpu: ...                    # the CPU it was measured on
          command: make demo          # the command that measured it
    model: fcn8s_vgg16bn
    ...

    recipe = load_recipe("camvid-scratch")
    config = recipe.config({"data_dir": "data/camvid", "epochs": 5})  # options win
"""

import dataclasses
import difflib
import numbers
import os

from kseg.config import RECIPE_SECTION, TrainConfig, resolve
from kseg.errors import KsegError
from kseg.files import brief, load_yaml

RECIPES_DIR = os.path.dirname(os.path.abspath(__file__))
RESULT_KEYS = ("metric", "value", "data", "cpu", "command")


@dataclasses.dataclass(frozen=True)
class RecipeResult:
    """One measured result of a recipe.

    Args:
        metric: str. What was measured ("val mIoU").
        value: float or None. The figure; None when not measured yet.
        data: str or None. What was scored.
        cpu: str or None. The CPU it was measured on.
        command: str or None. The command that measured it.
    """

    metric: str
    value: float = None
    data: str = None
    cpu: str = None
    command: str = None

    def describe(self):
        """One line: the figure, what was scored, where and how it was measured."""
        if self.value is None:
            return f"{self.metric}: not measured yet"
        details = "; ".join(part for part in (self.data, self.cpu, self.command and f"`{self.command}`")
                            if part)
        return f"{self.metric} {self.value:g}" + (f" ({details})" if details else "")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A named training recipe.

    Args:
        name: str. Its name (`kseg train --recipe NAME`).
        version: int. Raised whenever its settings change.
        description: str. What it trains and what it leaves out.
        results: tuple of RecipeResult. What it measured.
        settings: dict. The `kseg train` settings it sets (checked when loaded).
        path: str. The YAML file.
    """

    name: str
    version: int
    description: str
    results: tuple
    settings: dict
    path: str

    def config(self, overrides=None):
        """The `TrainConfig` of the recipe, with `overrides` (e.g. options given on the
        command line; None values are ignored) winning over its settings."""
        return resolve(overrides, recipe=self)


def recipe_names():
    """The names of the shipped recipes, sorted."""
    return sorted(name[: -len(".yaml")] for name in os.listdir(RECIPES_DIR) if name.endswith(".yaml"))


def load_recipe(name):
    """Returns the shipped `Recipe` called `name`.

    Raises:
        KsegError: one line for an unknown name, with the names it may mean and the list.
    """
    names = recipe_names()
    if name not in names:
        close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise KsegError(f"unknown recipe {brief(name, 60)}; {hint}known recipes: {', '.join(names)} "
                        "(`kseg recipes` describes them)")
    return read_recipe(os.path.join(RECIPES_DIR, f"{name}.yaml"))


def list_recipes():
    """Every shipped `Recipe`, by name."""
    return [load_recipe(name) for name in recipe_names()]


def read_recipe(path):
    """Reads and checks a recipe file: its `recipe:` section and its settings.

    Raises:
        KsegError: one line naming the file and what is wrong.
    """
    path = os.fspath(path)
    settings = load_yaml(path, "recipe")
    if not isinstance(settings, dict) or not isinstance(settings.get(RECIPE_SECTION), dict):
        raise KsegError(f"{path}: a recipe needs a '{RECIPE_SECTION}:' section with name, version and description")
    header = settings.pop(RECIPE_SECTION)  # what is left are the settings
    stem = os.path.splitext(os.path.basename(path))[0]

    def refuse(problem):
        raise KsegError(f"{path}: {RECIPE_SECTION}: {problem}")

    if header.get("name") != stem:
        refuse(f"name must be the file's name, {stem!r}; found {brief(header.get('name'))}")
    version = header.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        refuse(f"version must be a whole number from 1; found {brief(version)}")
    description = header.get("description")
    if not isinstance(description, str) or not description.strip():
        refuse("description must be a non-empty text")
    results = header.get("results") or []
    if not isinstance(results, list):
        refuse(f"results must be a list; found {brief(results)}")
    TrainConfig.from_dict(settings, source=path)  # every setting checked now, not at training
    return Recipe(stem, version, " ".join(description.split()), tuple(_result(item, refuse) for item in results),
                  settings, path)


def _result(item, refuse):
    if not isinstance(item, dict) or not isinstance(item.get("metric"), str):
        refuse(f"each result needs a metric name; found {brief(item)}")
    unknown = sorted(set(item) - set(RESULT_KEYS))
    if unknown:
        refuse(f"result {item['metric']!r} has unknown key {unknown[0]!r}; known: {', '.join(RESULT_KEYS)}")
    value = item.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        refuse(f"result {item['metric']!r}: value must be a number or null; found {brief(value)}")
    for key in ("data", "cpu", "command"):
        if item.get(key) is not None and not isinstance(item[key], str):
            refuse(f"result {item['metric']!r}: {key} must be a text or null; found {brief(item[key])}")
    if value is not None and not (item.get("cpu") and item.get("command")):
        refuse(f"result {item['metric']!r}: a measured value needs the cpu and the command that measured it")
    return RecipeResult(**item)
