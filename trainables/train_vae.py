"""Ray Train entrypoint of the slice-VAE stage, for ``ray job submit -- python trainables/train_vae.py ...``.

Same options as ``uda3d train-vae --help``; the work is ``uda3d.training.vae_run.run_vae``.
"""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-vae", *sys.argv[1:]]))
