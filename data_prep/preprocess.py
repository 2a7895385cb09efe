"""`uda3d preprocess` as a script, for `ray job submit -- python data_prep/preprocess.py ...`; see `--help`."""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]]))
