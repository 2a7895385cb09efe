"""``ray job submit -- python trainables/compare_methods.py ...``: the same as ``python -m uda3d compare-methods ...``.

A Ray job's entry point for one stage; its options are ``uda3d compare-methods --help``'s, its work the library's.
"""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare-methods", *sys.argv[1:]]))
