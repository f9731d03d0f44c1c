"""One ablation table from trial runs: rows by the values of the grouping keys, mean ± std and a 95% CI over
seeds per metric, the best row per column marked only beyond the intervals (``ablations/stats.py``).

Runs are averaged only when they share every config key except the grouping keys and ``run.seed``
(bookkeeping keys that change no number, ``IGNORED_KEYS``, are exempt) and, seed by seed, the same data
(tag ``data_fingerprint``: a seed picks the data subset). Otherwise the table is refused and the
differing keys are listed. Runs trained on different machines (tag ``machine``: CPU model, torch build,
thread count, GPU; ``contralord/machine.py``) are refused too, unless ``--ignore-key machine``; a run
without the tag (logged before machines were recorded) is unknown there, not different. Failed,
unfinished and early-stopped runs are counted per row, never averaged.
Two finished runs of the same row and seed are one sample: the newest is used, the other counted.
Non-finite metric values are dropped and counted."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections import Counter
from dataclasses import dataclass, field

from ablations import specs, stats
from ablations.runs import AblationError, TrialRun
from contralord.machine import GENERATION_TAG, describe_fields

# where files go and how often checkpoints are written: neither changes a result (resume is bit-exact)
# where files go, checkpoint cadence, a memory cap, where a ladder started, how long stage 1's best reference searches
IGNORED_KEYS = ("run.latent_cache", "run.checkpoint_every", "data.max_array_gib", "run.extend_from",
                "latent.best_reference_steps")
SEED_KEY = "run.seed"
DATA_TAG = "data_fingerprint"  # the same config and seed on other data is not comparable
MACHINE_TAG = "machine"  # the short id; machine.cpu, .torch, .threads, .gpu (and .blas_threads) describe it
EXCLUDED = ("failed", "unfinished", "early_stopped", "duplicate")
SETTING_KEYS = ("data.name", "data.image_size", "data.size", "latent.epochs", "encoder.epochs", "encoder.steps",
                "encoder.schedule", "encoder.rungs", "eval.protocol", "eval.scored_code")
UNSET = {"encoder.steps": "0", "encoder.rungs": ""}  # a budget key at its "not given" value says nothing


@dataclass
class Row:
    key: tuple
    seeds: list[str]
    cells: dict[str, stats.Summary | None]
    excluded: Counter = field(default_factory=Counter)
    excluded_ids: dict[str, list[str]] = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)  # column -> non-finite values left out
    paper: dict[str, float] | None = None
    values: dict[str, dict[str, float]] = field(default_factory=dict)  # column -> {seed: value}, for paired tests
    run_ids: list[str] = field(default_factory=list)  # the runs averaged (the newest finished one of each seed)

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass
class Table:
    spec: specs.TableSpec
    rows: list[Row]
    columns: list[str]
    best: dict[str, tuple[int, ...]]  # the unpaired rule (ablations/stats.py): the best row of each group, if any
    source: str
    unplaced: int = 0  # runs without the grouping keys (failed before logging their config)
    setting: dict[str, str] = field(default_factory=dict)  # the averaged runs' scale (SETTING_KEYS)
    commits: list[str] = field(default_factory=list)  # git commits of the averaged runs
    machines: dict[str, str] = field(default_factory=dict)  # machine id -> description, of the averaged runs
    unknown_machine: int = 0  # averaged runs without the machine tag
    best_paired: dict[str, tuple[int, ...]] = field(default_factory=dict)  # the paired rule, per column and group
    handicaps: list[str] = field(default_factory=list)  # rows measured where the data cannot show the factor
    stage1: list[str] = field(default_factory=list)  # which stage-1 run each seed's rows regress (stage1_notes)

    @property
    def groups(self) -> list[list[int]]:
        """The row indices of each group of ``spec.separate`` (one group when the spec separates nothing)."""
        return self.spec.groups([row.key for row in self.rows])

    @property
    def has_paper(self) -> bool:
        return any(row.paper for row in self.rows)


def parse_value(text: str):
    """A param string as the number it is (for sorting and matching), else the string (also for nan/inf)."""
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        return value if math.isfinite(value) else text
    return text


def _comparable(text: str) -> str:
    """One spelling per value ("128" and "128.0", "0.07" and "0.070" are the same number)."""
    value = parse_value(text)
    return repr(float(value)) if isinstance(value, int | float) else text


def check_keys_exist(runs: list[TrialRun], keys: tuple[str, ...]) -> None:
    known = set().union(*(r.params for r in runs)) if runs else set()
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise AblationError(f"--by: no run has the config key {key!r}{hint}")


def differing_keys(runs: list[TrialRun], allowed: set[str]) -> dict[str, list[str]]:
    """{key: distinct values} for every config key (outside ``allowed``) on which the runs disagree."""
    keys = set().union(*(r.params for r in runs)) - allowed
    values = {key: {_comparable(r.params[key]) if key in r.params else "<missing>": r.params.get(key, "<missing>")
                    for r in runs} for key in sorted(keys)}
    return {key: sorted(vals.values()) for key, vals in values.items() if len(vals) > 1}


def refuse_other_data(runs: list[TrialRun], by: tuple[str, ...] = ()) -> None:
    """Runs of one seed must have seen the same images (a seed picks the data subset, so seeds may differ),
    within the rows of one dataset: where a grouping key names the data (Table 2's ``data.name``), each
    dataset's rows are checked on their own. A run without the tag (stopped before the trainer set it) is
    unknown there, not different."""
    data_keys = [k for k in by if k.startswith("data.")]
    per_seed: dict[tuple, set[str]] = {}
    for run in runs:
        if run.tags.get(DATA_TAG):
            where = tuple(run.params.get(k, "") for k in data_keys)
            per_seed.setdefault((where, run.seed), set()).add(run.tags[DATA_TAG])
    for (where, seed), prints in sorted(per_seed.items()):
        if len(prints) > 1:
            shown = ", ".join(p[:12] for p in sorted(prints))
            data = "".join(f", {k}={v}" for k, v in zip(data_keys, where, strict=True))
            raise AblationError(f"refusing to average runs of seed {seed}{data} trained on different data (tag "
                                f"{DATA_TAG}: {shown}); select one sweep with --sweep-run")


def describe_machine(tags: dict[str, str]) -> str:
    """One machine as its tags describe it (the words of ``contralord.machine.Machine.__str__``)."""
    cpu, torch, threads, gpu = (tags.get(f"{MACHINE_TAG}.{k}", "?") for k in ("cpu", "torch", "threads", "gpu"))
    return describe_fields(cpu, torch, threads, gpu, tags.get(f"{MACHINE_TAG}.blas_threads", ""))


def machines_of(runs: list[TrialRun]) -> dict[str, str]:
    """{machine id: description} of the runs that carry the tag. Where the runs of one id carry two CPU
    generations or more (tag ``machine.cpu_generation``: one model name, e.g. "AMD EPYC", for CPUs whose kernels
    round differently), each generation is a machine of its own, "id (generation)"; a run without that tag (logged
    before it) stays under the bare id."""
    tagged = [r for r in runs if r.tags.get(MACHINE_TAG)]
    generations: dict[str, set[str]] = {}
    for run in tagged:
        generations.setdefault(run.tags[MACHINE_TAG], set()).add(run.tags.get(GENERATION_TAG, ""))
    machines = {}
    for run in tagged:
        key, generation = run.tags[MACHINE_TAG], run.tags.get(GENERATION_TAG, "")
        if len(generations[key] - {""}) > 1 and generation:
            machines[f"{key} ({generation})"] = f"{describe_machine(run.tags)}, {generation}"
        else:
            machines[key] = describe_machine(run.tags)
    return machines


def refuse_other_machines(runs: list[TrialRun], ignore: tuple[str, ...]) -> None:
    """Timings and last digits differ across machines: one table, one machine, unless told otherwise."""
    machines = machines_of(runs)
    if len(machines) > 1 and MACHINE_TAG not in ignore:
        shown = "; ".join(f"{key} = {text}" for key, text in sorted(machines.items()))
        raise AblationError(f"refusing to average runs from {len(machines)} machines ({shown}); select one "
                            f"machine's runs, or pass --ignore-key {MACHINE_TAG} to pool them")


def refuse_incomparable(runs: list[TrialRun], by: tuple[str, ...], ignore: tuple[str, ...]) -> None:
    differing = differing_keys(runs, {*by, SEED_KEY, *IGNORED_KEYS, *ignore})
    if differing:
        shown = "; ".join(f"{k} ({', '.join(v[:4])}{', ...' if len(v) > 4 else ''})"
                          for k, v in list(differing.items())[:8])
        more = f" and {len(differing) - 8} more" if len(differing) > 8 else ""
        raise AblationError(f"refusing to average runs that differ in config keys other than "
                            f"{', '.join(by)} and {SEED_KEY}: {shown}{more}; add them to --by or select one "
                            f"sweep with --sweep-run")


EVAL = "encoder/eval/"
FLOORS = {"pixels": "floor_pixels", "supervised": "floor_supervised"}  # a floor row's run.method -> its metrics


def floor_runs(runs: list[TrialRun]) -> list[TrialRun]:
    """Table 1's floors as runs of their own: every finished run that logged them (``eval.floors``) gives one per
    floor, with ``run.method`` the floor's and the floor's scores as its probe's (``probe_top1``, ``probe_top5``);
    one per data set, seed and floor (the newest), since every method's run of a seed would score the same."""
    found: dict[tuple, TrialRun] = {}
    for run in sorted(runs, key=lambda r: r.start_time):
        for method, prefix in FLOORS.items():
            scores = {f"{EVAL}probe_{k}": run.metrics[f"{EVAL}{prefix}_{k}"] for k in ("top1", "top5")
                      if f"{EVAL}{prefix}_{k}" in run.metrics}
            if run.status == "finished" and scores:
                found[(run.params.get("data.name"), run.seed, method)] = dataclasses.replace(
                    run, run_id=f"{run.run_id}:{method}", params=run.params | {"run.method": method}, metrics=scores)
    return list(found.values())


def _cell(runs: list[TrialRun], column: str) -> tuple[stats.Summary | None, int, dict[str, float]]:
    """The column's summary over ``runs``, how many non-finite values were left out, and {seed: value}."""
    metric = specs.METRICS[column]
    values = {r.seed: r.metrics[metric] for r in runs if metric in r.metrics}
    finite = {seed: v for seed, v in values.items() if math.isfinite(v)}
    return (stats.summarize(list(finite.values())) if finite else None), len(values) - len(finite), finite


def _row(key: tuple, runs: list[TrialRun], columns: list[str]) -> Row:
    newest_per_seed: dict[str, TrialRun] = {}
    excluded, ids = Counter(), {}
    for run in sorted(runs, key=lambda r: r.start_time, reverse=True):
        if run.status == "finished" and run.seed not in newest_per_seed:
            newest_per_seed[run.seed] = run
            continue
        reason = run.status if run.status != "finished" else "duplicate"
        excluded[reason] += 1
        ids.setdefault(reason, []).append(run.run_id)
    kept = sorted(newest_per_seed.values(), key=lambda r: parse_value(r.seed))
    row = Row(key, [r.seed for r in kept], {}, excluded, ids, run_ids=[r.run_id for r in kept])
    for column in columns:
        row.cells[column], row.dropped[column], row.values[column] = _cell(kept, column)
    return row


def _order(spec: specs.TableSpec, keys: list[tuple]) -> list[tuple]:
    """Numeric order of the key values; a table with paper rows lists those first, in the paper's order."""
    ordered = sorted(keys, key=lambda k: tuple((isinstance(v, str), v) for v in k))
    if not spec.paper_table:
        return ordered
    paper_order = list(specs.paper_rows(spec.paper_table))
    position = {k: paper_order.index(spec.paper_key(k)) if spec.paper_key(k) in paper_order else len(paper_order)
                for k in ordered}
    return sorted(ordered, key=lambda k: position[k])


def _group(runs: list[TrialRun], spec: specs.TableSpec) -> dict[tuple, list[TrialRun]]:
    groups: dict[tuple, list[TrialRun]] = {}
    for run in runs:
        key = tuple(parse_value(run.params[k]) for k in spec.by)
        if spec.check_marks and any(isinstance(v, str) for v in key):
            raise AblationError(f"{', '.join(spec.by)}: expected numbers (loss weights), run {run.run_id} has "
                                f"{', '.join(run.params[k] for k in spec.by)}")
        groups.setdefault(key, []).append(run)
    return groups


def _attach_paper(rows: list[Row], spec: specs.TableSpec, setting: dict[str, str]) -> None:
    """The paper's value under each matching row, only when the runs use the paper's dataset."""
    dataset = specs.paper_dataset(spec.paper_table)
    if dataset and setting.get("data.name") != dataset:
        return
    paper = specs.paper_rows(spec.paper_table)
    for row in rows:
        row.paper = paper.get(spec.paper_key(row.key))


# dSprites' 32 x-positions span 64 px at full size: below that a position step is under a pixel
FULL_SIZE = {"dsprites": 64, "dsprites_npz": 64}


def handicapped(runs: list[TrialRun]) -> list[str]:
    """A note per dataset the runs saw below the size where its labelled factors are one pixel apart."""
    notes = set()
    for run in runs:
        name, size = run.params.get("data.name", ""), parse_value(run.params.get("data.image_size", "0"))
        if name in FULL_SIZE and isinstance(size, int) and 0 < size < FULL_SIZE[name]:
            notes.add(f"handicapped: {name} at {size} px puts its position steps at {size / FULL_SIZE[name]:g} px "
                      f"(its factors are one pixel apart at {FULL_SIZE[name]} px); its rows test less than the paper's")
    return sorted(notes)


def best_per_group(rows: list[Row], groups: list[list[int]], value, rule) -> tuple[int, ...]:
    """The row ``rule`` (a function of one group's ``value(row)`` list, giving an index or None) marks in each
    of ``groups`` (indices of ``rows``), as indices of ``rows``."""
    marked = []
    for group in groups:
        best = rule([value(rows[i]) for i in group])
        if best is not None:
            marked.append(group[best])
    return tuple(marked)


STAGE1_TAG = "stage1_run_id"  # a trial's tag: the sweep's stage-1 run it regresses ("" when it trains none)


def stage1_notes(rows: list[Row], groups: list[list[int]], runs: list[TrialRun], spec: specs.TableSpec) -> list[str]:
    """Which stage-1 run the rows of each seed regress (their ``stage1_run_id``), per group of ``spec.separate``,
    and a warning naming any seed whose rows regress more than one: the paired rule assumes they share it."""
    by_id = {run.run_id: run for run in runs}
    separate = [name for name in spec.by if name in spec.separate]
    notes = []
    for group in groups:
        used: dict[str, set[str]] = {}
        for run in (by_id[run_id] for i in group for run_id in rows[i].run_ids if run_id in by_id):
            if run.tags.get(STAGE1_TAG):
                used.setdefault(run.seed, set()).add(run.tags[STAGE1_TAG])
        if not used:
            continue
        where = ", ".join(f"{k}={v}" for k, v in zip(separate, spec.group(rows[group[0]].key), strict=True))
        seeds = sorted(used, key=parse_value)
        notes.append(f"stage 1{f' ({where})' if where else ''}, the run each seed's rows regress (tag {STAGE1_TAG}; "
                     "a row without one trains no stage 1 or its own): "
                     + "; ".join(f"seed {seed} {', '.join(sorted(used[seed]))}" for seed in seeds))
        mixed = [seed for seed in seeds if len(used[seed]) > 1]
        if mixed:
            notes.append(f"warning: the rows of seed(s) {', '.join(mixed)}{f' ({where})' if where else ''} regress "
                         "different stage-1 runs, so their paired comparisons are not on one stage 1")
    return notes


def build_table(runs: list[TrialRun], spec: specs.TableSpec, source: str, with_paper: bool = False,
                ignore: tuple[str, ...] = ()) -> Table:
    """Group ``runs`` into the rows of ``spec``; raise AblationError for input that cannot make a table."""
    finished = [r for r in runs if r.status == "finished"]
    if not finished:
        counts = Counter(r.status for r in runs)
        found = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs at all"
        raise AblationError(f"no finished runs in {source} ({found})")
    check_keys_exist(runs, spec.by)
    placed = [r for r in runs if all(k in r.params for k in spec.by)]
    refuse_incomparable(placed, spec.by + spec.implied, ignore)
    refuse_other_data(placed, spec.by)
    refuse_other_machines(placed, ignore)
    grouped = placed + floor_runs(placed) if spec.floors else placed  # Table 1's floors: rows of their own
    groups = _group(grouped, spec)
    columns = [c for c, metric in specs.METRICS.items() if any(metric in r.metrics for r in grouped)
               and (not spec.columns or c in spec.columns)]
    rows = [_row(key, groups[key], columns) for key in _order(spec, list(groups))]
    averaged = [r for r in finished if all(k in r.params for k in spec.by)]
    values = {k: {r.params.get(k) for r in averaged} for k in SETTING_KEYS}
    setting = {k: v.pop() for k, v in values.items() if len(v) == 1 and None not in v}  # one value: the setting
    setting = {k: v for k, v in setting.items() if UNSET.get(k) != v}
    if with_paper and spec.paper_table:
        _attach_paper(rows, spec, setting)
    ranked = [c for c in columns if c not in specs.UNRANKED]
    groups = spec.groups([row.key for row in rows])
    best = {c: best_per_group(rows, groups, lambda r, c=c: r.cells[c], stats.best_beyond_intervals) if c in ranked
            else () for c in columns}
    best_paired = {c: best_per_group(rows, groups, lambda r, c=c: r.values[c], stats.best_paired) for c in ranked}
    commits = sorted({r.tags.get("git_commit", "")[:10] for r in averaged} - {""})
    unknown = sum(1 for r in averaged if not r.tags.get(MACHINE_TAG))
    return Table(spec, rows, columns, best, source, len(runs) - len(placed), setting, commits,
                 machines_of(averaged), unknown, best_paired, handicapped(averaged),
                 stage1_notes(rows, groups, grouped, spec))
