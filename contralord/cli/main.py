"""Command line: ``contralord train``, ``evaluate``, ``metrics`` and ``bench``.

    contralord train --preset cpu --set encoder.queue_size=512 --out runs/cpu
    contralord train --preset cpu --preset lord --out runs/lord     # a baseline, same trainer
    contralord train --out runs/cpu --preset cpu --resume           # continue an interrupted run

Bad input (unknown keys, invalid values, missing files) exits with status 2 and one line on stderr
before any training starts. Needs neither Ray nor MLflow.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

from contralord.config import ContraLordConfig, parse_set_args
from contralord.presets import PRESETS, resolve_presets


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser, except that a usage error is one line on stderr (exit 2), like every other refusal
    (docs/BAD_INPUT.md), instead of the whole usage; ``--help`` still prints it. Subparsers inherit it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", action="append", default=[], metavar="NAME",
                        help=f"apply a preset (repeatable, left to right): {', '.join(PRESETS)}")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. encoder.queue_size=512 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="contralord", description="ContraLORD reference trainer")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train stage 1 (cached) and stage 2")
    _add_config_args(train)
    train.add_argument("--out", required=True, help="output folder (config, checkpoints, summary)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    evaluate = sub.add_parser("evaluate", help="metrics.json and image grids for a trained run")
    evaluate.add_argument("--checkpoint", required=True, metavar="DIR", help="a run folder written by train")
    evaluate.add_argument("--protocol", help="override eval.protocol (checked like --set eval.protocol=...)")
    evaluate.add_argument("--overwrite", action="store_true",
                          help="replace an earlier <run>/evaluate-<protocol>/metrics.json")
    evaluate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override eval.* keys")
    metrics = sub.add_parser("metrics", help="DCI/SAP/MIG or smoothness of codes saved as .npy")
    metrics.add_argument("--codes", help="(N, D) float codes")
    metrics.add_argument("--factors", help="(N, F) integer factors")
    metrics.add_argument("--test-codes", help="(M, D) codes to score the predictors on")
    metrics.add_argument("--test-factors", help="(M, F) factors of --test-codes")
    metrics.add_argument("--content", help="(N, Dc) content embeddings, for smoothness")
    metrics.add_argument("--residual", help="(N, Dr) residual embeddings, for smoothness")
    metrics.add_argument("--seed", type=int, default=0, help="random_state of DCI's classifiers")
    bench_metrics = sub.add_parser("bench-metrics", help="seconds per metric at disentanglement_lib's sizes")
    bench_metrics.add_argument("--n-train", type=int, default=10000)
    bench_metrics.add_argument("--n-test", type=int, default=5000)
    bench_metrics.add_argument("--dims", type=int, default=10, help="code dimensions D")
    bench_metrics.add_argument("--factors", type=int, default=5, help="factors F")
    bench = sub.add_parser("bench", help="throughput and FLOP-ratio benchmark")
    _add_config_args(bench)
    bench.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    return parser


def config_from_args(args: argparse.Namespace) -> ContraLordConfig:
    return ContraLordConfig.from_overrides(resolve_presets(args.preset, parse_set_args(args.set)))


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(build_parser().parse_args(argv))
    except KeyboardInterrupt:  # before training (training itself says how to resume)
        print("\ncontralord: interrupted before any training; nothing was written", file=sys.stderr)
        return 130


def _main(args: argparse.Namespace) -> int:
    bad = _bad_counts(args)
    if bad:
        print(f"contralord: error: {bad}", file=sys.stderr)
        return 2
    if args.command == "bench-metrics":
        from contralord.metrics.bench import run_metrics_bench

        run_metrics_bench(n_train=args.n_train, n_test=args.n_test, d=args.dims, f=args.factors)
        return 0
    if args.command in ("evaluate", "metrics"):
        from contralord.cli.evaluate import run_evaluate, run_metrics

        return (run_evaluate if args.command == "evaluate" else run_metrics)(args)
    try:
        cfg = config_from_args(args)
        if args.command == "bench":
            from contralord.cli.bench import run_bench
            from contralord.run.preflight import check_device

            check_device(cfg)

            run_bench(cfg, steps=args.steps)
            return 0
        from contralord.run.file_checks import check_out
        from contralord.run.preflight import prepare

        args.out = str(check_out(args.out, args.resume))  # the real folder: symlinks resolved
        setup = prepare(cfg, args.out, resume=args.resume)  # also the weight files and the evaluation
    except (ValueError, OSError) as error:  # bad input: one line, before training
        print(f"contralord: error: {error}", file=sys.stderr)
        return 2
    return _train(cfg, args, setup)


def _bad_counts(args: argparse.Namespace) -> str:
    """Counts and sizes must be positive: the first offending flag, or ''."""
    flags = {"bench-metrics": ("n_train", "n_test", "dims", "factors"), "bench": ("steps",)}.get(args.command, ())
    for name in flags:
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')}: expected an int >= 1, got {getattr(args, name)}"
    if args.command == "bench-metrics":
        from contralord.data.arrays import DEFAULT_MAX_ARRAY_BYTES

        nbytes = 8 * (args.n_train + args.n_test) * (args.dims + args.factors)
        if nbytes > DEFAULT_MAX_ARRAY_BYTES:
            return (f"--n-train/--n-test/--dims/--factors: the synthetic codes would take {nbytes / 2**30:.3g} GiB, "
                    f"expected at most {DEFAULT_MAX_ARRAY_BYTES / 2**30:g}")
    return ""


def _train(cfg: ContraLordConfig, args: argparse.Namespace, setup) -> int:
    from contralord.run.trainer import train
    from contralord.training.checkpoint import CheckpointWriteError
    from contralord.training.loop import NonFiniteLossError
    from contralord.training.runtime import LocalRuntime, resolve_device
    from contralord.training.tracking import StdoutLogger

    started = time.perf_counter()
    runtime = LocalRuntime(device=resolve_device(cfg.run.device))  # checked by prepare
    try:
        summary = train(cfg, args.out, runtime=runtime, logger=StdoutLogger(), resume=args.resume, setup=setup)
    except KeyboardInterrupt:  # the folder is consistent: checkpoints are written atomically
        print(f"\ncontralord: interrupted; continue with: {_resume_command(args)}", file=sys.stderr)
        return 130
    except NonFiniteLossError as error:
        print(f"\ncontralord: error: {error}", file=sys.stderr)
        return 1
    except CheckpointWriteError as error:  # a full disk or a folder gone read-only: free it, then resume
        print(f"\ncontralord: error: {error.strerror}; continue with: {_resume_command(args)}", file=sys.stderr)
        return 1
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    print("summary:", json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0


def _resume_command(args: argparse.Namespace) -> str:
    presets = [a for name in args.preset for a in ("--preset", name)]
    sets = [a for item in args.set for a in ("--set", item)]
    return shlex.join(["contralord", "train", "--out", args.out, *presets, *sets, "--resume"])


if __name__ == "__main__":
    sys.exit(main())
