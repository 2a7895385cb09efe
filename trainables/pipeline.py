"""``ray job submit -- python trainables/pipeline.py ...``: the same as ``python -m uda3d pipeline ...``.

A Ray job's entry point for one stage; its options are ``uda3d pipeline --help``'s, its work the library's.
"""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
