"""Runs from different machines are not averaged unless told to (--ignore-key machine); every table
footnotes its machine(s); runs logged before machine tags are unknown, not different."""

import pytest
from fabricated_runs import mlflow_store  # noqa: F401  (the `store` fixture)
from mlflow import MlflowClient

from ablations import render, specs
from ablations.make_tables import main as make_tables
from ablations.runs import AblationError, from_experiment
from ablations.tables import build_table

EXP = "contralord-negatives"
BOX = {"machine": "aaaaaaaaaa", "machine.cpu": "AMD EPYC (2 CPUs)", "machine.torch": "2.14.1 (build 1a2b3c4d)",
       "machine.threads": "2", "machine.gpu": "none"}
GPU_BOX = BOX | {"machine": "bbbbbbbbbb", "machine.gpu": "NVIDIA H100", "machine.threads": "8"}


def _table(store, **kwargs):
    source = from_experiment(MlflowClient(store.uri), EXP)
    return build_table(source.runs, specs.SPECS["table6"], source.description, **kwargs)


def _runs(store, machines):
    for seed, tags in enumerate(machines):
        for k, value in (("128", 0.2), ("256", 0.8)):
            store.trial(EXP, {"encoder.queue_size": k}, {"disentanglement": value + 0.01 * seed}, seed, tags=tags)


def test_table__refuses_runs_from_two_machines(store):
    _runs(store, [BOX, GPU_BOX])
    with pytest.raises(AblationError, match="2 machines") as error:
        _table(store)
    assert "aaaaaaaaaa = AMD EPYC (2 CPUs)" in str(error.value) and "NVIDIA H100" in str(error.value)
    assert "--ignore-key machine" in str(error.value)


def test_table__ignore_key_machine_pools_and_footnotes_both(store):
    _runs(store, [BOX, GPU_BOX])
    table = _table(store, ignore=("machine",))
    assert table.rows[0].n == 2 and set(table.machines) == {"aaaaaaaaaa", "bbbbbbbbbb"}
    markdown = render.to_markdown(table)
    assert "machines (pooled with --ignore-key machine): aaaaaaaaaa = AMD EPYC (2 CPUs), torch 2.14.1 " in markdown
    assert "bbbbbbbbbb = AMD EPYC (2 CPUs), torch 2.14.1 (build 1a2b3c4d), 8 threads, NVIDIA H100" in markdown


def test_table__one_machine_is_footnoted_in_every_format(store):
    _runs(store, [BOX, BOX])
    table = _table(store)
    note = "machine: aaaaaaaaaa = AMD EPYC (2 CPUs), torch 2.14.1 (build 1a2b3c4d), 2 threads, no GPU"
    assert note in render.to_markdown(table) and "aaaaaaaaaa" in render.to_latex(table)


def test_table__untagged_runs_are_unknown_not_different(store):
    _runs(store, [BOX, {}])  # seed 1 logged before machine tags
    table = _table(store)
    assert table.rows[0].n == 2 and table.unknown_machine == 2
    assert "machine: not recorded for 2 run(s)" in render.to_markdown(table)


def test_make_tables__ignore_key_machine_on_the_command_line(store, capsys):
    _runs(store, [BOX, GPU_BOX])
    assert make_tables(["--tracking-uri", store.uri, "--experiment", EXP, "--spec", "table6"]) == 2
    assert "2 machines" in capsys.readouterr().err
    assert make_tables(["--tracking-uri", store.uri, "--experiment", EXP, "--spec", "table6",
                        "--ignore-key", "machine"]) == 0
    assert "pooled with --ignore-key machine" in capsys.readouterr().out


ZEN5, ZEN4 = "AuthenticAMD family 26 model 2", "AuthenticAMD family 25 model 17"


def test_table__one_id_of_two_cpu_generations_is_two_machines(store):
    # a virtual CPU named only "AMD EPYC": one id for two generations whose kernels round differently
    _runs(store, [BOX | {"machine.cpu_generation": ZEN5}, BOX | {"machine.cpu_generation": ZEN4}])
    with pytest.raises(AblationError, match="2 machines") as error:
        _table(store)
    assert f"aaaaaaaaaa ({ZEN5}) = AMD EPYC (2 CPUs)" in str(error.value) and ZEN4 in str(error.value)


def test_table__one_generation_or_runs_from_before_the_tag_pool_as_one_machine(store):
    _runs(store, [BOX | {"machine.cpu_generation": ZEN5}, BOX, BOX | {"machine.cpu_generation": ZEN5}])
    table = _table(store)
    assert table.rows[0].n == 3 and set(table.machines) == {"aaaaaaaaaa"}
