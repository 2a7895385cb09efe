"""`uda3d ingest-brats` as a script, for `ray job submit -- python data_prep/ingest_brats.py ...`; see `--help`."""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest-brats", *sys.argv[1:]]))
