"""Ray Tune entrypoint of the adaptation search, for ``ray job submit -- python trainables/tune_adaptation.py ...``.

Same options as ``uda3d tune --help`` (``--space search_spaces/adaptation.yaml --dataroot ... --backbone ...
--vae ...``); the work is ``uda3d.tuning.tune.run_tune``: Optuna's TPE proposes, ASHA stops early, each
trial a nested MLflow run, the label-free best registered as ``champion``.
"""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
