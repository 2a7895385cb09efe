"""``ray job submit -- python trainables/adapt.py ...``: the same as ``python -m uda3d adapt ...``.

A Ray job's entry point for one stage; its options are ``uda3d adapt --help``'s, its work the library's.
"""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["adapt", *sys.argv[1:]]))
