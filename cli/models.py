"""`kseg models`: the model presets with their parameter counts and output strides."""

import click


@click.command()
@click.option("--num-classes", default=21, show_default=True, type=click.IntRange(min=2),
              help="Number of classes the parameter count is given for.")
def models(num_classes):
    """List the registered models: name, parameters and output stride."""
    from kseg.models import get_model_entry, list_models, parameter_count

    names = list_models()
    width = max(len(name) for name in names + ["model"])
    click.echo(f"{'model':<{width}} {'parameters':>12} {'output stride':>14}  description")
    for name in names:
        preset = get_model_entry(name)
        count = parameter_count(name, num_classes)
        click.echo(f"{name:<{width}} {count:>12,} {preset.output_stride:>14}  {preset.description}")
