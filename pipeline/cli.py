"""The `carvana` command: the pipeline's functions for use outside `dvc repro`.

    carvana submissions [-c SLUG] [--wait]   list your Kaggle submissions and their scores
"""

from __future__ import annotations

import argparse
import time

from pipeline.errors import run_stage

CARVANA = "carvana-image-masking-challenge"


def _submissions(args: argparse.Namespace) -> None:
    from pipeline import kaggle_api

    rows = kaggle_api.submissions(args.competition)
    while args.wait and any(r["status"] == "PENDING" for r in rows):
        print("waiting for Kaggle to score the pending submission ...")
        time.sleep(args.poll)
        rows = kaggle_api.submissions(args.competition)
    if not rows:
        print(f"no submissions to {args.competition} yet")
        return
    print(f"{'ref':>10}  {'date':20}  {'status':8}  {'public':>8}  {'private':>8}  description")
    for r in rows:
        print(f"{r['ref']:>10}  {r['date'][:19]:20}  {r['status']:8}  {r['public_score']:>8}  "
              f"{r['private_score']:>8}  {r['description']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carvana", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("submissions", help="list your Kaggle submissions and their scores")
    s.add_argument("-c", "--competition", default=CARVANA, help="competition slug (default: %(default)s)")
    s.add_argument("--wait", action="store_true", help="poll until no submission is pending")
    s.add_argument("--poll", type=float, default=30.0, help="seconds between polls with --wait")
    s.set_defaults(func=_submissions)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_stage(lambda: args.func(args))


if __name__ == "__main__":
    main()
