"""`uda3d validate-data` as a script, for `ray job submit -- python data_prep/validate_data.py ...`; see `--help`."""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate-data", *sys.argv[1:]]))
