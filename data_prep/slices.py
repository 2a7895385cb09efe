"""`uda3d slices` as a script, for `ray job submit -- python data_prep/slices.py ...`; see `--help`."""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["slices", *sys.argv[1:]]))
