"""``python -m uda3d``: the CLI, for jobs on clusters whose image has no ``uda3d`` script installed."""

from uda3d.cli import main

raise SystemExit(main())
