"""The ``uda3d`` command line: one subcommand per stage, each a thin call into the library.

Parsing lives here and nowhere else; heavy libraries are imported inside the handlers so
``uda3d --help`` stays instant. Any ``Uda3dError`` (bad data, bad option) is printed as one line
and exits 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from uda3d import __version__
from uda3d.errors import Uda3dError

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit code 2 (no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_BAD_INPUT)


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``, with a message that says which kind was expected."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "a non-negative integer")


def _add_preprocess_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--crop-shape", type=_positive_int, nargs=3, metavar=("D", "H", "W"), default=None,
                   help="crop/pad size after reorientation to IPL (multiples of 8); default: the method's "
                        "144x192x192-of-155x240x240 ratios scaled to the input")
    p.add_argument("--normalisation", choices=["minmax", "percentile"], default="minmax",
                   help="per-volume intensity scaling (default: minmax, as the method)")


def _preprocess_config(args: argparse.Namespace):
    from uda3d.config import PreprocessConfig

    shape = tuple(args.crop_shape) if args.crop_shape else None
    return PreprocessConfig(shape=shape, normalisation=args.normalisation)


# --- handlers -------------------------------------------------------------------------------------

def cmd_cohort(args: argparse.Namespace) -> int:
    from uda3d.cohort.generate import CohortConfig, generate_cohort

    config = CohortConfig(sites=tuple(args.sites), subjects_per_site=args.subjects_per_site,
                          shape=tuple(args.shape), seed=args.seed)
    summary = generate_cohort(args.out, config, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {len(config.sites) * config.subjects_per_site} subjects to {args.out} ({summary.name})")
    return 0


def cmd_validate_data(args: argparse.Namespace) -> int:
    from uda3d.data.validate import validate_root

    report = validate_root(args.root, splits=args.splits, progress=not args.quiet)
    for line in report.summary_lines():
        print(line)
    for problem in report.problems:
        print(f"problem: {problem}", file=sys.stderr)
    if report.ok:
        print(f"{args.root}: OK")
        return 0
    print(f"{args.root}: {len(report.problems)} problem(s)", file=sys.stderr)
    return EXIT_BAD_INPUT


def cmd_ingest_brats(args: argparse.Namespace) -> int:
    from uda3d.data.ingest import IngestConfig, ingest_brats

    config = IngestConfig(source=args.source, target=args.target, fractions=tuple(args.fractions),
                          seed=args.seed, copy=args.copy)
    membership = ingest_brats(args.src, args.out, config, mapping=args.mapping, overwrite=args.overwrite)
    for split, ids in membership.items():
        print(f"{split}: {len(ids)} subjects")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from uda3d.data.prepare import preprocess_root

    summaries = preprocess_root(args.root, _preprocess_config(args), args.cache_dir,
                                splits=tuple(args.splits) if args.splits else None, progress=not args.quiet)
    for s in summaries:
        print(f"{s.split}: {s.subjects} subjects ({s.labeled} with T1), input {s.shape}, {s.seconds:.2f} s")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from uda3d.demo import DemoConfig, run_demo

    config = DemoConfig(workdir=Path(args.workdir), subjects_per_site=args.subjects_per_site,
                        shape=tuple(args.shape), seed=args.seed)
    run_demo(config, progress=not args.quiet)
    return 0


# --- parser ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="uda3d", description="Unsupervised domain adaptation of 3D MRI synthesis "
                                               "(FLAIR + T2 -> T1) on Ray.")
    parser.add_argument("--version", action="version", version=f"uda3d {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(handler=handler)
        return p

    p = add("cohort", cmd_cohort, "generate a synthetic multi-site cohort as a BraTS-layout root")
    p.add_argument("out", type=Path, help="output root (created atomically)")
    p.add_argument("--sites", nargs="+", default=["site-a", "site-b"],
                   help="site protocols, in domain order (domain1 = first); known: site-a site-b site-c")
    p.add_argument("--subjects-per-site", type=_positive_int, default=9, help="split 60/20/20 into train/val/test")
    p.add_argument("--shape", type=_positive_int, nargs=3, default=[64, 64, 64], metavar=("X", "Y", "Z"),
                   help="grid size over BraTS's 240x240x155 mm field of view (240 240 155 = 1 mm)")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output root")

    p = add("ingest-brats", cmd_ingest_brats,
            "arrange a BraTS download into domain1_* (source site) and domain2_* (target site) splits")
    p.add_argument("src", type=Path, help="a BraTS release folder (subject folders anywhere below it)")
    p.add_argument("out", type=Path, help="the two-site root to create (links to the subject folders)")
    p.add_argument("--source", default="CBICA", help="institution prefix of the source site (default CBICA)")
    p.add_argument("--target", default="TCIA", help="institution prefix of the target site (default TCIA)")
    p.add_argument("--fractions", type=float, nargs=3, default=[0.6, 0.2, 0.2], metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--mapping", type=Path, default=None, help="CSV with columns subject,site for ids without one")
    p.add_argument("--copy", action="store_true", help="copy the files instead of linking them")
    p.add_argument("--overwrite", action="store_true")

    p = add("validate-data", cmd_validate_data, "check a BraTS-layout root and report every problem (exit 2 if any)")
    p.add_argument("root", type=Path)
    p.add_argument("--splits", nargs="+", default=None, help="only these split folders (e.g. domain2_val)")

    p = add("preprocess", cmd_preprocess, "reorient, crop and normalise every subject into the cache")
    p.add_argument("root", type=Path)
    p.add_argument("--cache-dir", type=Path, required=True, help="where preprocessed arrays are cached")
    p.add_argument("--splits", nargs="+", default=None)
    _add_preprocess_options(p)

    p = add("demo", cmd_demo, "synthetic cohort + every stage built so far, on CPU, no download")
    p.add_argument("--workdir", type=Path, default=Path("uda3d-demo"))
    p.add_argument("--subjects-per-site", type=_positive_int, default=9)
    p.add_argument("--shape", type=_positive_int, nargs=3, default=[64, 64, 64], metavar=("X", "Y", "Z"))
    p.add_argument("--seed", type=_non_negative_int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except Uda3dError as exc:
        if args.debug:
            raise
        sys.stderr.write(f"uda3d {args.command}: error: {exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write(f"uda3d {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
