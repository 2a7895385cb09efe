"""Ray Train entrypoint of the backbone stage, for ``ray job submit -- python trainables/train_backbone.py ...``.

Same options as ``uda3d train-backbone --help``; the work is ``uda3d.training.backbone_run.run_backbone``.
"""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-backbone", *sys.argv[1:]]))
