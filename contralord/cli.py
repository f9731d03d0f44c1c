"""Command line: ``contralord train`` and ``contralord bench``.

    contralord train --preset cpu --set encoder.queue_size=512 --out runs/cpu
    contralord train --preset cpu --preset lord --out runs/lord     # a baseline, same trainer
    contralord train --out runs/cpu --preset cpu --resume           # continue an interrupted run

Bad input (unknown keys, invalid values, missing files) exits with status 2 and one line on stderr
before any training starts. Needs neither Ray nor MLflow.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from contralord.config import ContraLordConfig, parse_set_args
from contralord.presets import PRESETS, resolve_presets


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", action="append", default=[], metavar="NAME",
                        help=f"apply a preset (repeatable, left to right): {', '.join(PRESETS)}")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. encoder.queue_size=512 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contralord", description="ContraLORD reference trainer")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train stage 1 (cached) and stage 2")
    _add_config_args(train)
    train.add_argument("--out", required=True, help="output folder (config, checkpoints, summary)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    bench = sub.add_parser("bench", help="throughput and FLOP-ratio benchmark")
    _add_config_args(bench)
    bench.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    return parser


def config_from_args(args: argparse.Namespace) -> ContraLordConfig:
    return ContraLordConfig.from_overrides(resolve_presets(args.preset, parse_set_args(args.set)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        if args.command == "bench":
            from contralord.bench import run_bench

            run_bench(cfg, steps=args.steps)
            return 0
        from contralord.trainer import prepare

        data = prepare(cfg, args.out, resume=args.resume)
    except (ValueError, FileNotFoundError, FileExistsError) as error:  # bad input: one line, before training
        print(f"contralord: error: {error}", file=sys.stderr)
        return 2
    return _train(cfg, args, data)


def _train(cfg: ContraLordConfig, args: argparse.Namespace, data) -> int:
    from contralord.tracking import StdoutLogger
    from contralord.trainer import train

    started = time.perf_counter()
    summary = train(cfg, args.out, logger=StdoutLogger(), resume=args.resume, data=data)
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    print("summary:", json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
