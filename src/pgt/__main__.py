"""`python -m pgt …` is the `pgt` command."""

from pgt.cli import run

run()
