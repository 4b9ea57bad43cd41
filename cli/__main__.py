"""`python -m kseg.cli` runs the kseg command."""

from kseg.cli.main import cli

cli(prog_name="kseg")
