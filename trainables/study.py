"""Ray Tune entrypoint of the paper's studies, for ``ray job submit -- python trainables/study.py data-amount ...``.

Same options as ``uda3d study --help``; the work is ``uda3d.tuning.study.run_study``: every grid point
of ``search_spaces/data_amount.yaml`` or ``sensitivity.yaml`` once per seed, CSV and PNGs with seed spread.
"""

import sys

from uda3d.cli import main

if __name__ == "__main__":
    sys.exit(main(["study", *sys.argv[1:]]))
