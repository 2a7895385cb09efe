"""``ray job submit -- python trainables/tune.py ...``: the same as ``python -m uda3d tune ...``.

A Ray job's entry point for one stage; its options are ``uda3d tune --help``'s, its work the library's.
"""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
