"""``ray job submit -- python trainables/study.py ...``: the same as ``python -m uda3d study ...``.

A Ray job's entry point for one stage; its options are ``uda3d study --help``'s, its work the library's.
"""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["study", *sys.argv[1:]]))
