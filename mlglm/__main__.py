"""Command line: ``python -m mlglm demo [--out DIR] [--no-plots]`` and
``python -m mlglm --version`` (also the ``mlglm`` script)."""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .demo import run_demo

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlglm", description="mlglm: multilevel GLMs by maximum "
                                "likelihood (Laplace / adaptive Gauss-Hermite quadrature).")
    p.add_argument("--version", action="version", version=f"mlglm {__version__}")
    sub = p.add_subparsers(dest="command")
    d = sub.add_parser("demo", help="walk through the multilevel-models lecture (HSB data, "
                       "then a logistic GLMM) with printed explanations and figures")
    d.add_argument("--out", default="mlglm_demo_out",
                   help="directory for the PNG figures (default: ./mlglm_demo_out)")
    d.add_argument("--no-plots", action="store_true", help="text only")
    return p


def main(argv=None) -> int:
    """Entry point; returns the exit status (0 on success)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        run_demo(out=args.out, plots=not args.no_plots)
        return 0
    parser.print_help()
    return 1


if __name__ == "__main__":
    sys.exit(main())
