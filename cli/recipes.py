"""`kseg recipes`: the named training recipes `kseg train --recipe NAME` loads."""

import textwrap

import click


@click.command()
@click.argument("name", required=False)
def recipes(name):
    """List the training recipes: description, settings and measured results.

    With NAME, print that recipe's file (a YAML that `kseg train --config FILE` also
    reads). Train with one by `kseg train --recipe NAME`; options given beside it win.

    \b
    Examples:
      kseg recipes
      kseg train --recipe camvid-scratch --data-dir data/camvid
      kseg train --recipe demo --epochs 4
    """
    from kseg.files import read_text
    from kseg.recipes import list_recipes, load_recipe

    if name:
        recipe = load_recipe(name)
        click.echo(read_text(recipe.path, "recipe").rstrip())
        return
    for index, recipe in enumerate(list_recipes()):
        if index:
            click.echo()
        click.echo(f"{recipe.name} (version {recipe.version})")
        _echo_wrapped(recipe.description)
        _echo_wrapped("settings: " + " ".join(f"{key}={_show(key, value)}"
                                              for key, value in recipe.settings.items()))
        for result in recipe.results:
            _echo_wrapped(f"measured: {result.describe()}")
        if not recipe.results:
            click.echo("  measured: nothing yet")
        data_dir = "" if "data_dir" in recipe.settings else " --data-dir DATA"
        click.echo(f"  train: kseg train --recipe {recipe.name}{data_dir}")


def _echo_wrapped(text, width=88):
    """Prints `text` indented by two spaces, its continuation lines by four."""
    for line in textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="    ",
                              break_on_hyphens=False, break_long_words=False):
        click.echo(line)


def _show(key, value):
    """A setting as an option's value: crops as HxW, lists with commas, flags as true/false."""
    if isinstance(value, list):
        return ("x" if key == "crop" else ",").join(str(item) for item in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
