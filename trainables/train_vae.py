"""``ray job submit -- python trainables/train_vae.py ...``: the same as ``python -m uda3d train-vae ...``.

A Ray job's entry point for one stage; its options are ``uda3d train-vae --help``'s, its work the library's.
"""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-vae", *sys.argv[1:]]))
