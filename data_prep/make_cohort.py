"""`uda3d cohort` as a script, for `ray job submit -- python data_prep/make_cohort.py ...`; see `--help`."""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["cohort", *sys.argv[1:]]))
