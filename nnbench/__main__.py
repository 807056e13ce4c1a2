"""``python -m nnbench``: see ``nnbench.cli``."""

import sys

from nnbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
