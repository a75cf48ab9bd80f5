"""`python -m pgt …` is the `pgt` command."""

import sys

from pgt.cli import main

sys.exit(main())
