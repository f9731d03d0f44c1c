"""What a sweep leaves on its parent run: the table of its trials (``ablations/``, as make_tables.py builds
it) with its files and per-cell means, and the best trial's encoder in the Model Registry (--register-best)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from mlflow import MlflowClient

from ablations import render, specs
from ablations.runs import AblationError, from_sweep_run
from ablations.store import without_password
from ablations.tables import Table, build_table, parse_value
from contralord.config import ContraLordConfig
from tune.checks import SweepError
from tune.driver.records import ParentRun
from tune.plan import SweepPlan
from tune.trial import mlflow_logger as ml
from tune.trial.reuse import FROM_TAG


def register_target(plan: SweepPlan) -> tuple[str, str] | None:
    """``--register-best METRIC[:max|min]`` as (metric, mode); checked before Ray starts."""
    spec = plan.options.register_best
    if not spec:
        return None
    metric, _, mode = spec.partition(":")
    if mode not in ("", "max", "min") or not metric:
        raise SweepError(f"--register-best: expected METRIC or METRIC:max or METRIC:min, got {spec!r}")
    return metric, mode or "max"


def register_best(plan: SweepPlan, client: MlflowClient, experiment_id: str, records: ParentRun, metric: str,
                   mode: str) -> None:
    trials = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{records.run_id}' and "
                                "attributes.status = 'FINISHED'", max_results=10000)
    # a reused trial's copy has no logged model: its original (which has) stands for it
    trials = [client.get_run(t.data.tags[FROM_TAG]) if FROM_TAG in t.data.tags else t for t in trials]
    name = f"contralord-{plan.kind}-encoder"
    try:
        run_id, value, version = ml.register_best(client, trials, metric, mode, name)
    except ValueError as error:
        records.finish()
        raise SweepError(str(error)) from None
    records.log_registered(name, version)
    print(f"registered the encoder of run {run_id} ({mode} {metric} = {value:.4g}) as {name} version {version}",
          flush=True)


def publish(plan: SweepPlan, client: MlflowClient, records: ParentRun) -> Table | None:
    """The sweep's table from its MLflow runs (ablations/, as make_tables.py builds it) onto the parent run."""
    try:
        table = sweep_table(plan, client, records.run_id)
    except AblationError as error:
        print(f"\n{plan.name}: no table ({error})", flush=True)
        records.no_table(str(error))
        return None
    texts = render.render_all(table, list(render.FORMATS))
    with tempfile.TemporaryDirectory() as folder:
        records.log_table(texts["md"], table_means(plan, table), render.save(table, texts, Path(folder), "table"))
    averaged = sum(row.n for row in table.rows)
    where = without_password(plan.tracking_uri)
    print(f"\n{plan.name} ({averaged} trials averaged, tracking {where}):\n{texts['md']}", flush=True)
    return table


def table_means(plan: SweepPlan, table: Table) -> dict[str, float]:
    """``<column>/<variant>``: each cell's mean, the row named by the sweep's variant ("MIG/K128")."""
    names = variant_of_row(plan, table.spec)
    means = {}
    for row in table.rows:
        label = names.get(row.key) or " ".join(specs.show_value(v) for v in row.key)
        label = re.sub(r"[^\w.\- ]", "_", label.replace("=", "").replace(",", " ").replace("+", "-"))
        means |= {f"{column}/{label}": cell.mean for column, cell in row.cells.items() if cell is not None}
    return means


def sweep_table(plan: SweepPlan, client: MlflowClient, parent: str) -> Table:
    """The table of the parent's trial runs, as make_tables.py builds it; AblationError when there is none."""
    source = from_sweep_run(client, parent)
    return build_table(source.runs, spec_of(plan), source.description, with_paper=True)


def spec_of(plan: SweepPlan) -> specs.TableSpec:
    return specs.spec_for_sweep_kind(plan.kind) or specs.spec_for_keys((plan.knob,))


def variant_of_row(plan: SweepPlan, spec: specs.TableSpec) -> dict[tuple, str]:
    """{table row key: the sweep's variant name}: the values of the table's grouping keys in each variant."""
    names = {}
    for name, overrides in plan.variants:
        flat = ContraLordConfig.from_overrides(plan.base | overrides).to_flat_dict()
        names[tuple(parse_value(str(flat.get(k, ""))) for k in spec.by)] = name
    return names
