"""kseg's command line, installed as the subpackage kseg.cli."""
