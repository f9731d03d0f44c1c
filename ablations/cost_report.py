"""Cost to a verdict: what tables swept with ``--until-decided`` cost, against a fixed number of seeds per row.

    python ablations/cost_report.py --tracking-uri sqlite:///mlflow.db --spec table4 --spec table5 --spec table6 \
        --out results/

Each ``--spec`` reads the newest sweep of its experiment (or the ``--sweep-run`` given in the same order), which
must have run with ``--until-decided`` (its parent holds ``rounds.json``). One report, the same verdict rule
(``ablations/stats.py``) throughout, one line per way of reaching the tables:
- fixed ``--seeds`` (measured: the sweeps' first round), with and without sharing a row that several tables
  hold (trial reuse, ``tune/trial/reuse.py``);
- seeds until decided (measured: every round);
- fixed ``--max-seeds`` on every row (projected: each row's measured mean trial time times the seeds; not run).
Machine time is CPU time: a trial's ``time/total`` (else its run's duration) times its threads (tag
``machine.threads``: 1 a trial at the cpu preset), a stage-1 run's duration times its threads (stage 1 takes
every core of a one-node sweep). A trial linked from an earlier run counts once, with the time of the run that
trained it. Stage 1 is counted per seed a way needs, at the quickest of the stage-1 runs these sweeps used
(stage-1 runs a sweep creates at once queue for the node, and each one's duration includes its wait).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `import ablations`
import ablations  # noqa: E402

ablations.telemetry_off()  # before mlflow is imported here (docs/MLFLOW.md, "Telemetry")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from ablations import specs  # noqa: E402
from ablations.runs import (  # noqa: E402
    PARENT_TAG,
    REUSED_TAG,
    ROUNDS_ARTIFACT,
    AblationError,
    check_readable,
    latest_sweep_run,
    out_folder,
)
from ablations.store import tracking_client, without_password  # noqa: E402
from ablations.tables import parse_value  # noqa: E402
from contralord.cli.main import OneLineParser  # noqa: E402

REPORT = "cost_to_verdict.md"


@dataclass(frozen=True)
class Trial:
    row: str  # the row's label in its table
    seed: int
    trained_by: str  # the run that trained it (itself, or the run a reused copy names)
    seconds: float  # CPU seconds: wall seconds times threads
    stage1: str  # the stage-1 run id ("" when the method has no shared stage 1)


@dataclass(frozen=True)
class SweepCost:
    table: str
    sweep_run: str
    initial_seeds: int
    max_seeds: int
    decided_first: int  # rows decided after the first round (the fixed-seed tables)
    decided_last: int  # rows decided when the rounds stopped
    rows: tuple[str, ...]
    wall_s: float  # the sweep's measured wall time (nan when not logged)
    trials: tuple[Trial, ...]
    excluded: int = 0  # trials not FINISHED (failed, killed, unfinished): not counted
    variants: int = 0  # the sweep's rows as rounds.json names them (0: as many as ``rows``)
    partial: bool = False  # the sweep did not finish: its last round is not the final state

    @property
    def row_count(self) -> int:
        """Rows of the table, a row without a finished trial included."""
        return max(self.variants, len(self.rows))


@dataclass(frozen=True)
class Way:
    name: str
    how: str  # measured | projected
    trials: int
    trial_s: float
    stage1_runs: int
    stage1_s: float
    decided: str  # "k of n rows" or "not run"

    @property
    def total_s(self) -> float:
        return self.trial_s + self.stage1_s


def shared_rows(sweeps: Iterable[SweepCost]) -> list[set[tuple[str, str]]]:
    """Rows of different tables that are one configuration: they share a trained run (one reused the other's)."""
    groups: list[tuple[set[tuple[str, str]], set[str]]] = []
    for sweep in sweeps:
        for row in sweep.rows:
            runs = {t.trained_by for t in sweep.trials if t.row == row}
            members = {(sweep.table, row)}
            for group in [g for g in groups if g[1] & runs]:
                groups.remove(group)
                members |= group[0]
                runs |= group[1]
            groups.append((members, runs))
    return [members for members, _ in groups]


def _unique(trials: Iterable[Trial]) -> dict[str, Trial]:
    return {t.trained_by: t for t in trials}


def _row_seconds(sweeps: list[SweepCost]) -> dict[tuple[str, str], float]:
    """Mean measured seconds of each row's trials (over all its seeds)."""
    return {(s.table, row): statistics.fmean(t.seconds for t in s.trials if t.row == row)
            for s in sweeps for row in s.rows if any(t.row == row for t in s.trials)}


def _decided(sweeps: list[SweepCost], attribute: str) -> str:
    return f"{sum(getattr(s, attribute) for s in sweeps)} of {sum(s.row_count for s in sweeps)} rows"


def ways(sweeps: list[SweepCost], stage1_s: float) -> list[Way]:
    """The ways to the same tables, measured where the sweeps ran them and projected where not."""
    first, most = sweeps[0].initial_seeds, sweeps[0].max_seeds
    if any((s.initial_seeds, s.max_seeds) != (first, most) for s in sweeps):
        raise AblationError("--spec: the sweeps ran with different --seeds/--max-seeds; report them one at a time")
    every = [t for s in sweeps for t in s.trials]
    opening = _unique(t for t in every if t.seed < first)
    rounds = _unique(every)
    seconds, groups = _row_seconds(sweeps), shared_rows(sweeps)
    rows_alone = [key for s in sweeps for key in ((s.table, r) for r in s.rows)]
    seeds_used = len({t.seed for t in rounds.values()})
    decided_first = _decided(sweeps, "decided_first")
    return [
        Way(f"fixed {first} seeds, each table its own trials", "measured", sum(t.seed < first for t in every),
            sum(t.seconds for t in every if t.seed < first), first, first * stage1_s, decided_first),
        Way(f"fixed {first} seeds, shared rows reused", "measured", len(opening),
            sum(t.seconds for t in opening.values()), first, first * stage1_s, decided_first),
        Way(f"until decided, at most {most} seeds", "measured", len(rounds),
            sum(t.seconds for t in rounds.values()), seeds_used, seeds_used * stage1_s,
            _decided(sweeps, "decided_last")),
        Way(f"fixed {most} seeds, shared rows reused", "projected", len(groups) * most,
            sum(most * statistics.fmean(seconds[k] for k in g) for g in groups), most, most * stage1_s, "not run"),
        Way(f"fixed {most} seeds, each table its own trials", "projected", len(rows_alone) * most,
            sum(most * seconds[k] for k in rows_alone), most, most * stage1_s, "not run"),
    ]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def render(sweeps: list[SweepCost], stage1: dict[str, tuple[str, float]]) -> str:
    """The report in markdown: the ways side by side, then each table's rows and seeds. ``stage1``: the
    measured stage-1 runs, {run id: (seed, CPU seconds)}; each way counts its seeds at the quickest."""
    stage1_s = min(v for _, v in stage1.values()) if stage1 else 0.0
    measured = ", ".join(f"seed {seed} {v / 60:.0f} min" for seed, v in sorted(stage1.values())) or "none"
    lines = ["| way | trials | trial CPU time (min) | stage-1 runs | total CPU time (min) | rows decided | |",
             "|---|---|---|---|---|---|---|"]
    for way in ways(sweeps, stage1_s):
        lines.append(f"| {way.name} | {way.trials} | {_minutes(way.trial_s)} | {way.stage1_runs} | "
                     f"{_minutes(way.total_s)} | {way.decided} | {way.how} |")
    lines += ["", f"CPU time = wall time x threads. Stage 1 counted at {stage1_s / 60:.1f} CPU-min a seed, the "
              f"quickest stage-1 run these sweeps used ({measured}; one created beside others includes its wait). "
              f"A trial that several tables hold counts once where rows are reused, and once per table where each "
              f"table runs its own (at the measured time of the run that trained it). Projected ways multiply each "
              f"row's measured mean trial time by the seeds; nobody ran them, so their verdicts are unknown.", ""]
    for sweep in sweeps:
        counts = {row: len({t.seed for t in sweep.trials if t.row == row}) for row in sweep.rows}
        wall = "" if sweep.wall_s != sweep.wall_s else f", sweep wall {_minutes(sweep.wall_s)} min"
        notes = ([f"{sweep.excluded} trial(s) not finished, not counted"] if sweep.excluded else []) + (
            [f"{sweep.row_count - len(sweep.rows)} row(s) without a finished trial"]
            if sweep.row_count > len(sweep.rows) else []) + (
            ["the sweep did not finish: its last recorded round is shown"] if sweep.partial else [])
        lines.append(f"- {sweep.table} (sweep run {sweep.sweep_run}{wall}): {sweep.decided_first} of "
                     f"{sweep.row_count} rows "
                     f"decided after {sweep.initial_seeds} seeds, {sweep.decided_last} at the end; seeds per row: "
                     + ", ".join(f"{row} {n}" for row, n in counts.items())
                     + "".join(f"; {note}" for note in notes))
    return "\n".join(lines) + "\n"


# ---- reading the store ----

def _rounds(client: MlflowClient, run_id: str) -> dict:
    """The sweep's ``rounds.json``, checked for the fields read here."""
    try:
        log = json.loads(Path(client.download_artifacts(run_id, ROUNDS_ARTIFACT)).read_text())
    except (MlflowException, OSError):
        raise AblationError(f"--sweep-run: run {run_id} has no {ROUNDS_ARTIFACT} (was it swept with "
                            f"--until-decided?)") from None
    except ValueError as error:
        raise AblationError(f"--sweep-run: run {run_id}: {ROUNDS_ARTIFACT} is not JSON ({error})") from None
    rounds = log.get("rounds") if isinstance(log, dict) else None
    if not (isinstance(rounds, list) and rounds and _is_int(log.get("max_seeds"))
            and all(isinstance(r, dict) and isinstance(r.get("rows"), list) and r["rows"] for r in rounds)
            and all(isinstance(row, dict) and {"variant", "seeds", "verdict"} <= set(row) and _is_int(row["seeds"])
                    for r in rounds for row in r["rows"])):
        raise AblationError(f"--sweep-run: run {run_id}: {ROUNDS_ARTIFACT} is not one tune/rounds.py writes "
                            f"(expected max_seeds and rounds[].rows[].variant, seeds, verdict)")
    return log


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _cpu_seconds(run) -> float:
    wall = run.data.metrics.get("time/total")
    if wall is None:
        wall = ((run.info.end_time or run.info.start_time or 0) - (run.info.start_time or 0)) / 1000
    threads = run.data.tags.get("machine.threads", "1")
    if not _is_digits(threads) or int(threads) < 1:
        raise AblationError(f"--sweep-run: run {run.info.run_id} has tag machine.threads {threads[:40]!r}, expected "
                            f"an int >= 1 (contralord/machine.py writes it)")
    return float(wall) * int(threads)


def _is_digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` is also true of '²', which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def _row_label(spec: specs.TableSpec, params: dict[str, str]) -> str:
    """A row as text: its key values, or for a check-mark table the terms that are on (with a weight not 1)."""
    key = tuple(parse_value(params[k]) for k in spec.by)
    if not spec.check_marks:
        return " ".join(spec.row_label(key))
    odd = next(((k, v) for k, v in zip(spec.by, key, strict=True) if not isinstance(v, int | float)), None)
    if odd:  # a check-mark row is the terms whose weight is > 0: a weight must be a number
        raise AblationError(f"--spec {spec.name}: a trial has {odd[0]} {str(odd[1])[:40]!r}, expected a number "
                            f"(a loss weight)")
    on = [(k.split(".")[-1], float(v)) for k, v in zip(spec.by, key, strict=True) if float(v) > 0]
    return "+".join(name if weight == 1.0 else f"{name}({weight:g})" for name, weight in on) or "none"


def _trial(client: MlflowClient, spec: specs.TableSpec, run) -> Trial:
    """A finished trial; a reused copy carries the time of the run that trained it."""
    trained_by = run.data.tags.get(REUSED_TAG, run.info.run_id)
    source = run
    if "time/total" not in run.data.metrics and trained_by != run.info.run_id:
        try:
            source = client.get_run(trained_by)
        except MlflowException:
            raise AblationError(f"--sweep-run: trial {run.info.run_id} reuses run {trained_by}, which is not in "
                                f"the store, and carries no time/total") from None
    missing = [k for k in (*spec.by, "run.seed") if k not in run.data.params]
    if missing:
        raise AblationError(f"--spec {spec.name}: trial {run.info.run_id} has no param {', '.join(missing)}")
    if not _is_digits(run.data.params["run.seed"]):
        raise AblationError(f"--spec {spec.name}: trial {run.info.run_id} has run.seed "
                            f"{run.data.params['run.seed'][:40]!r}, expected an int")
    return Trial(_row_label(spec, run.data.params), int(run.data.params["run.seed"]), trained_by,
                 _cpu_seconds(source), run.data.tags.get("stage1_run_id", ""))


def read_sweep(client: MlflowClient, spec: specs.TableSpec, run_id: str) -> SweepCost:
    """One until-decided sweep of ``spec``'s experiment: its rounds and its finished trials."""
    try:
        parent = client.get_run(run_id)
    except MlflowException:
        raise AblationError(f"--sweep-run: no run {run_id!r} in the tracking store") from None
    experiment = client.get_experiment(parent.info.experiment_id).name
    if experiment != spec.experiment:
        raise AblationError(f"--sweep-run: run {run_id} is in experiment {experiment!r}; --spec {spec.name} is "
                            f"swept into {spec.experiment!r}")
    log = _rounds(client, run_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{run_id}'",
                                  max_results=10000)
    finished = [r for r in children if r.info.status == "FINISHED"]
    trials = tuple(_trial(client, spec, r) for r in finished)
    first, last = log["rounds"][0]["rows"], log["rounds"][-1]["rows"]
    rows = tuple(dict.fromkeys(t.row for t in sorted(trials, key=lambda t: t.seed)))
    return SweepCost(spec.name, run_id, min(int(r["seeds"]) for r in first), int(log["max_seeds"]),
                     sum(r["verdict"] == "decided" for r in first), sum(r["verdict"] == "decided" for r in last),
                     rows, float(parent.data.metrics.get("actual/wall_s", float("nan"))), trials,
                     excluded=len(children) - len(finished), variants=len(first),
                     partial=parent.info.status != "FINISHED")


def stage1_seconds(client: MlflowClient, sweeps: list[SweepCost]) -> dict[str, tuple[str, float]]:
    """{run id: (seed, CPU seconds)} of the finished stage-1 runs these sweeps' trials used (start to end of
    each run, times its threads); a stage-1 run no longer in the store is left out."""
    ids = {t.stage1 for s in sweeps for t in s.trials} - {""}
    seconds = {}
    for run_id in sorted(ids):
        try:
            run = client.get_run(run_id)
        except MlflowException:
            continue
        if run.info.status == "FINISHED" and run.info.end_time:
            seconds[run_id] = (run.data.tags.get("seed", "?"), _cpu_seconds(run))
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ablations/cost_report.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", required=True, help="MLflow store: sqlite:///path.db, a folder, http(s)://")
    parser.add_argument("--spec", action="append", required=True, choices=sorted(specs.SPECS),
                        help="a table swept with --until-decided; repeat for several")
    parser.add_argument("--sweep-run", action="append", default=[],
                        help="the parent run of each --spec's sweep, in order (default: the newest sweep of each)")
    parser.add_argument("--out", help=f"folder to write {REPORT} into (default: print only); an existing report "
                        "there is kept unless --overwrite")
    parser.add_argument("--overwrite", action="store_true", help=f"replace an existing {REPORT} in --out")
    return parser


def check_out(out: str | None, overwrite: bool) -> Path | None:
    """Where the report goes, checked before the store is read: a folder (or one that can be created) that
    this user may write, without a report in it unless --overwrite."""
    if not out:
        return None
    folder = out_folder(out)
    if (folder / REPORT).exists() and not overwrite:
        raise AblationError(f"--out: {folder / REPORT} exists; pass --overwrite to replace it, or another --out; "
                            f"nothing written")
    return folder


def write_report(text: str, folder: Path) -> Path:
    """The report, written beside its final name and renamed over it (a failed write leaves the old one)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT
    tmp = folder / f".{REPORT}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # rounds.json: no bar on stderr
    try:
        if args.sweep_run and len(args.sweep_run) != len(args.spec):
            raise AblationError(f"--sweep-run: give one per --spec ({len(args.spec)}), got {len(args.sweep_run)}")
        for flag, values in (("--spec", args.spec), ("--sweep-run", args.sweep_run)):
            if len(set(values)) != len(values):
                raise AblationError(f"{flag}: each at most once (a sweep counted twice would share rows with itself)")
        out = check_out(args.out, args.overwrite)
        check_readable(args.tracking_uri)
        client = tracking_client(args.tracking_uri)
        chosen = [specs.SPECS[name] for name in args.spec]
        run_ids = args.sweep_run or [latest_sweep_run(client, spec.experiment, f"--spec {spec.name}")
                                     for spec in chosen]
        sweeps = [read_sweep(client, spec, run_id) for spec, run_id in zip(chosen, run_ids, strict=True)]
        text = render(sweeps, stage1_seconds(client, sweeps))
    except MlflowException as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: --tracking-uri: cannot read {without_password(args.tracking_uri)} ({first_line[:200]})",
              file=sys.stderr)
        return 2
    except AblationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(text, end="")
    if out:
        try:
            print(f"wrote {write_report(text, out)}", file=sys.stderr)
        except OSError as error:
            print(f"error: --out: cannot write there ({error})", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
