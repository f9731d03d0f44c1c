"""Ablation tables from MLflow runs, with seeds and 95% confidence intervals.

    python ablations/make_tables.py --tracking-uri sqlite:///mlflow.db --spec table6 --paper --out results/
    python ablations/make_tables.py --tracking-uri URI --sweep-run RUN_ID --format latex
    python ablations/make_tables.py --tracking-uri URI --spec table4 --sweep-run latest
    python ablations/make_tables.py --tracking-uri URI --experiment contralord-temperature \
        --by encoder.temperature,encoder.momentum --format csv --out tables/

The runs are the trials nested under one sweep's parent run (``--sweep-run``; ``latest`` = the newest
sweep of the experiment) or every trial of an
experiment (``--experiment``; with ``--spec`` alone, the experiment that spec's sweep logs to). Rows come
from ``--spec`` (the paper's Tables 4, 5, 6), ``--by`` (any config keys), or the sweep's kind.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `import ablations`
import ablations  # noqa: E402

ablations.telemetry_off()  # before mlflow is imported here (docs/MLFLOW.md, "Telemetry")
from mlflow.exceptions import MlflowException  # noqa: E402

from ablations import render, specs  # noqa: E402
from ablations.balance import build_balance  # noqa: E402
from ablations.balance import to_markdown as balance_markdown  # noqa: E402
from ablations.infonce import build_infonce, plot_infonce  # noqa: E402
from ablations.infonce import to_markdown as infonce_markdown  # noqa: E402
from ablations.ladder import THRESHOLD, build_ladder, plot_ladder, to_markdown  # noqa: E402
from ablations.runs import (  # noqa: E402
    AblationError,
    RunSource,
    check_readable,
    from_experiment,
    from_sweep_run,
    from_sweep_runs,
    latest_sweep_run,
    out_folder,
)
from ablations.stage1_compare import build_comparison  # noqa: E402
from ablations.stage1_compare import to_markdown as comparison_markdown  # noqa: E402
from ablations.stage1_confusion import run_confusions  # noqa: E402
from ablations.stage1_confusion import to_markdown as confusion_markdown  # noqa: E402
from ablations.stage1_curves import drift_markdown, plot_curves, read_curves  # noqa: E402
from ablations.stage1_table import build_stage1_table, stage1_runs  # noqa: E402
from ablations.stage1_table import to_markdown as stage1_markdown  # noqa: E402
from ablations.store import tracking_client, without_password  # noqa: E402
from ablations.tables import Table, build_table  # noqa: E402
from contralord.cli.main import OneLineParser  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ablations/make_tables.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", required=True, help="MLflow store: sqlite:///path.db, a folder, http(s)://")
    parser.add_argument("--sweep-run", help="the parent run id of one sweep, several joined by commas (a ladder "
                        "run as separate sweeps, read as one table), or 'latest' (the newest sweep of --experiment or "
                        "of --spec's experiment); with --spec stage1 an id may also be one stage-1 run's")
    parser.add_argument("--experiment", help="every trial of this experiment (e.g. contralord-negatives)")
    parser.add_argument("--spec", choices=sorted([*specs.SPECS, "stage1"]), help="one of the paper's tables, or "
                        "stage1: stage 1's classifiers against their supervised-only reference, per factor and seed")
    parser.add_argument("--by", help="config key(s) that make a row, comma-separated (e.g. encoder.queue_size)")
    parser.add_argument("--format", action="append", choices=sorted(render.FORMATS),
                        help="output format; repeat for several (default markdown)")
    parser.add_argument("--out", help="folder for <table>.<md|tex|csv> and <table>.png (default: print only); "
                        "an existing table there is kept unless --overwrite")
    parser.add_argument("--overwrite", action="store_true", help="replace <table>.* in --out, and remove the "
                        "formats of it not written this time (so no stale table stays beside the new one)")
    parser.add_argument("--paper", action="store_true", help="add the paper's values under each matching row")
    parser.add_argument("--rungs", action="store_true", help="the table at every rung of a budget ladder "
                        "(encoder.rungs), with each row's convergence and each paired verdict's stability")
    parser.add_argument("--confusion", action="store_true", help="--spec stage1: where each run's classifiers err "
                        "on the images without labels (largest confusions; reads each run's stage-1 artifact); "
                        "stage1_confusion.md in --out")
    parser.add_argument("--balance", action="store_true", help="each row's loss balance instead: every weighted "
                        "term's gradient norm on the backbone and its ratio to L_rec's (encoder/train/grad/<term>); "
                        "<table>_balance.md in --out")
    parser.add_argument("--infonce", action="store_true", help="each row's InfoNCE terms against chance, "
                        "log(1+K): first, lowest and last training loss per seed, and the term without the momentum "
                        "encoder's lag at evaluation where logged; <table>_infonce.md and .png in --out")
    parser.add_argument("--converged-within", type=float, default=THRESHOLD, metavar="DELTA", help="--rungs: a row "
                        "is converged at a rung when D and content_corr_min moved by at most DELTA in every seed "
                        "(default %(default)s)")
    parser.add_argument("--ignore-key", action="append", default=[], metavar="KEY",
                        help="a config key allowed to differ between averaged runs (named in no table: use sparingly)")
    return parser


def resolve_spec(args: argparse.Namespace, sweep_kind: str) -> specs.TableSpec:
    if args.by:
        keys = tuple(k.strip() for k in args.by.split(",") if k.strip())
        if not keys:
            raise AblationError(f"--by: expected config keys such as encoder.queue_size, got {args.by!r}")
        same = [s for s in specs.SPECS.values() if s.by == keys]
        return same[0] if same else specs.spec_for_keys(keys)
    if args.spec:
        return specs.SPECS[args.spec]
    spec = specs.spec_for_sweep_kind(sweep_kind)
    if spec is None:
        raise AblationError(f"--by: the runs' sweep kind is {sweep_kind or 'unknown'!r}, so give --by KEY or --spec")
    return spec


def load_source(args: argparse.Namespace) -> RunSource:
    if not (args.sweep_run or args.experiment or args.spec):
        raise AblationError("give --sweep-run RUN_ID, --experiment NAME, or --spec (which implies its experiment)")
    if args.sweep_run not in (None, "latest") and args.experiment:
        raise AblationError("--sweep-run and --experiment: give one (or --sweep-run latest with --experiment)")
    check_readable(args.tracking_uri)
    experiment = args.experiment or (specs.SPECS[args.spec].experiment if args.spec else None)
    flag = "--experiment" if args.experiment else f"--spec {args.spec}"
    try:
        client = tracking_client(args.tracking_uri)  # MLflow 3 refuses a file store here unless allowed
        if args.sweep_run == "latest":
            if experiment is None:
                raise AblationError("--sweep-run latest: also give --experiment NAME or --spec")
            return from_sweep_run(client, latest_sweep_run(client, experiment, flag))
        if args.sweep_run and "," in args.sweep_run:
            return from_sweep_runs(client, [run_id.strip() for run_id in args.sweep_run.split(",") if run_id.strip()])
        if args.sweep_run:
            return from_sweep_run(client, args.sweep_run)
        return from_experiment(client, experiment, flag)
    except MlflowException as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AblationError(f"--tracking-uri: cannot read {without_password(args.tracking_uri)} "
                            f"({first_line[:200]})") from None


def table_of(source: RunSource, spec: specs.TableSpec, args: argparse.Namespace) -> Table:
    """``build_table``, or one line naming the run whose metric is too large to average (a sum of values near
    1e308 overflows): nothing is written then."""
    try:
        return build_table(source.runs, spec, source.description, args.paper, tuple(args.ignore_key))
    except OverflowError:
        run, key, value = max(((r.run_id, k, v) for r in source.runs for k, v in r.metrics.items()
                               if math.isfinite(v)), key=lambda found: abs(found[2]))
        raise AblationError(f"--sweep-run/--experiment: run {run} logs {key} = {value:g}, too large to average "
                            f"(expected |value| well below 1e308); nothing written") from None


def existing_outputs(out: str | None, stem: str) -> list[Path]:
    """The files of this table already in ``out`` (every format and the plot), or a one-line error."""
    if not out:
        return []
    folder = out_folder(out)
    extensions = [ext for _, ext in render.FORMATS.values()] + ["png"]
    return [folder / f"{stem}.{ext}" for ext in extensions if (folder / f"{stem}.{ext}").exists()]


def write_outputs(table: Table, formats: list[str], out: str | None, replace: list[Path] = ()) -> list[Path]:
    """Print each format; with ``out``, also write it and the plot there, then remove the files of
    ``replace`` (the table's earlier files) that were not rewritten. Returns the files written."""
    texts = render.render_all(table, formats)
    for text in texts.values():
        print(text)
    written = render.save(table, texts, Path(out), table.spec.name) if out else []
    for path in set(replace) - set(written):
        path.unlink()
    return written


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.spec == "stage1":
        return stage1_main(args)
    if args.confusion:
        print("error: --confusion: only with --spec stage1 (where stage 1's classifiers err)", file=sys.stderr)
        return 2
    if args.rungs and (args.balance or args.infonce):
        print("error: --rungs with --balance or --infonce: give one (each is its own table; read a ladder's rungs "
              "one sweep at a time)", file=sys.stderr)
        return 2
    if args.rungs:
        return ladder_main(args)
    if args.balance or args.infonce:
        return balance_main(args)
    try:
        source = load_source(args)
        spec = resolve_spec(args, source.sweep_kind)
        table = table_of(source, spec, args)
        earlier = existing_outputs(args.out, table.spec.name)
        if earlier and not args.overwrite:
            raise AblationError(f"--out: {earlier[0]} exists ({len(earlier)} file(s) of table {table.spec.name} "
                                f"there); pass --overwrite to replace them all, or another --out; nothing written")
    except AblationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        written = write_outputs(table, args.format or ["markdown"], args.out, earlier)
    except OSError as error:
        print(f"error: --out: cannot write there ({error})", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def ladder_main(args: argparse.Namespace) -> int:
    """``--rungs``: the table at every rung (markdown), with ``<table>_rungs.md`` and ``<table>_rungs.png`` in --out."""
    try:
        if not 0 <= args.converged_within < 1:
            raise AblationError(f"--converged-within: expected a change in [0, 1), got {args.converged_within}")
        source = load_source(args)
        spec = resolve_spec(args, source.sweep_kind)
        outputs = [out_folder(args.out) / f"{spec.name}_rungs.{ext}" for ext in ("md", "png")] if args.out else []
        if any(p.exists() for p in outputs) and not args.overwrite:
            raise AblationError(f"--out: {next(p for p in outputs if p.exists())} exists; pass --overwrite to "
                                f"replace it, or another --out; nothing written")
        ladder = build_ladder(tracking_client(args.tracking_uri), source.runs, spec, source.description, args.paper,
                              tuple(args.ignore_key), args.converged_within)
    except AblationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return _show(to_markdown(ladder), outputs[0] if outputs else None,
                 (outputs[1], lambda path: plot_ladder(ladder, path)) if outputs else None)


def balance_main(args: argparse.Namespace) -> int:
    """``--balance`` (``ablations/balance.py``) or ``--infonce`` (``ablations/infonce.py``): read from each run's
    history; markdown, and ``<table>_balance.md`` or ``<table>_infonce.md`` and ``.png`` in --out."""
    kind = "balance" if args.balance else "infonce"
    try:
        if args.balance and args.infonce:
            raise AblationError("--balance and --infonce: give one (each is its own table)")
        if (args.format or ["markdown"]) != ["markdown"] or args.paper:
            raise AblationError(f"--{kind}: prints markdown only (no --format, no --paper)")
        source = load_source(args)
        table = table_of(source, resolve_spec(args, source.sweep_kind), args)
        output = out_folder(args.out) / f"{table.spec.name}_{kind}.md" if args.out else None
        if output is not None and output.exists() and not args.overwrite:
            raise AblationError(f"--out: {output} exists; pass --overwrite to replace it, or another --out; "
                                f"nothing written")
        client = tracking_client(args.tracking_uri)
        if args.balance:
            return _show(balance_markdown(build_balance(client, table, source.runs), source.description), output)
        rows = build_infonce(client, table, source.runs)
    except AblationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    plot = (output.with_suffix(".png"), lambda path: plot_infonce(rows, path)) if output else None
    return _show(infonce_markdown(rows, source.description), output, plot)


def _show(text: str, markdown: Path | None, plot: tuple[Path, object] | None = None) -> int:
    """Print a table's markdown; write it (and its plot) where --out says, naming each file written."""
    print(text.rstrip("\n") + "\n")
    if markdown is None:
        return 0
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(text.rstrip("\n") + "\n")
    if plot is not None:
        plot[1](plot[0])
    for path in [markdown] + ([plot[0]] if plot else []):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def stage1_main(args: argparse.Namespace) -> int:
    """``--spec stage1`` (``ablations/stage1_table.py``): markdown, and ``stage1.md`` in --out with
    ``stage1_curves.png`` when the runs logged accuracy curves (``ablations/stage1_curves.py``), whose peak against
    last point per seed the markdown adds (stage 1's drift)."""
    try:
        other = (args.rungs or args.by or args.experiment or args.paper or args.ignore_key or args.balance
                 or args.infonce)
        if other or (args.format or ["markdown"]) != ["markdown"]:
            raise AblationError("--spec stage1: takes --tracking-uri, --sweep-run, --confusion, --out and --overwrite "
                                "only")
        sides = (args.sweep_run or "").split(",")
        if len(sides) == 2 and not all(side.strip() and side.strip() != "latest" for side in sides):
            raise AblationError(f"--sweep-run: two sweeps' parent run ids, A,B (not empty, not latest), got "
                                f"{args.sweep_run!r}")
        if len(sides) > 2:
            raise AblationError("--sweep-run: --spec stage1 takes one sweep's parent run id, or two (A,B) to "
                                "compare their stage 1s paired by seed")
        if args.confusion and len(sides) == 2:
            raise AblationError("--confusion: takes one sweep's stage-1 runs (--sweep-run with one id, or none)")
        name = "stage1_compare.md" if len(sides) == 2 else "stage1_confusion.md" if args.confusion else "stage1.md"
        output = out_folder(args.out) / name if args.out else None
        figure = output.with_name("stage1_curves.png") if output and len(sides) == 1 and not args.confusion else None
        for path in (output, figure):
            if path and path.exists() and not args.overwrite:
                raise AblationError(f"--out: {path} exists; pass --overwrite to replace it, or another --out; "
                                    f"nothing written")
        check_readable(args.tracking_uri)
        if args.sweep_run == "latest":
            raise AblationError("--spec stage1: give --sweep-run the id of a sweep's parent run (stage-1 runs are "
                                "shared by sweeps of every experiment), or leave it out for every stage-1 run")
        client = tracking_client(args.tracking_uri)
        if len(sides) == 2:  # two recipes paired by seed (ablations/stage1_compare.py)
            tables = [build_stage1_table(*stage1_runs(client, side.strip())) for side in sides]
            return _show(comparison_markdown(build_comparison(*tables)), output)
        table = build_stage1_table(*stage1_runs(client, args.sweep_run))
        if args.confusion:
            text = confusion_markdown({run.seed: run_confusions(client, run) for run in table.runs})
            return _show(f"{table.source}\n\n{text}", output)
        curves = read_curves(client, table.runs, table.factors) if figure else {}
    except AblationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if figure and not curves:
        print("no accuracy curves in these stage-1 runs (they predate latent/train/probe_acc): no "
              "stage1_curves.png", file=sys.stderr)
    plot = (figure, lambda path: plot_curves(curves, table.factors, path)) if curves else None
    drift = drift_markdown(curves, table.factors)
    return _show(stage1_markdown(table) + (f"\n\n{drift}" if drift else ""), output, plot)


if __name__ == "__main__":
    sys.exit(main())
