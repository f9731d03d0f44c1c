"""The reuse key (tune/trial/reuse.py): it changes with every number-changing config key, the data and the code of
contralord/, and not with where files go; finding and linking an earlier run in a fabricated MLflow store."""

import dataclasses
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ablations"))
from fabricated_runs import mlflow_store  # noqa: E402, F401
from mlflow.entities import LoggedModelOutput  # noqa: E402

from ablations.runs import drop_reused_copies, from_experiment  # noqa: E402
from contralord import machine  # noqa: E402
from contralord.config import ContraLordConfig  # noqa: E402
from tune.trial import reuse  # noqa: E402

BASE = {"data.name": "shapes3d", "encoder.queue_size": 128, "run.seed": 0}


def _key(overrides=None, fingerprint="f00d", code="c0de"):
    return reuse.reuse_key(ContraLordConfig.from_overrides(BASE | (overrides or {})), fingerprint, code)


@pytest.mark.parametrize("change", [{"encoder.queue_size": 256}, {"run.seed": 1}, {"loss.rec": 0.5},
                                   {"data.size": 999}, {"encoder.temperature": 0.2}, {"run.threads": 2},
                                   {"eval.num_test": 33}])
def test_reuse_key__changes_with_a_number_changing_key(change):
    assert _key(change) != _key()


@pytest.mark.parametrize("change", [{"run.latent_cache": "/elsewhere"}, {"run.checkpoint_every": 7},
                                    {"data.max_array_gib": 1.5}])
def test_reuse_key__ignores_keys_that_change_no_number(change):
    assert _key(change) == _key()


def test_reuse_key__changes_with_the_data_and_the_code():
    assert _key(fingerprint="beef") != _key() and _key(code="other") != _key()


def test_code_version__follows_every_source_file_of_the_package(tmp_path):
    copy = tmp_path / "contralord"
    shutil.copytree(reuse.CORE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert reuse.code_version(copy) == reuse.code_version() and len(reuse.code_version()) == 16
    (copy / "notes.txt").write_text("not source")
    assert reuse.code_version(copy) == reuse.code_version()
    nested = sorted(copy.rglob("*/*.py"))[0]  # a file in a subpackage (data/, models/, ...)
    nested.write_text(nested.read_text() + "\n# a comment\n")
    edited = reuse.code_version(copy)
    assert edited != reuse.code_version()
    nested.rename(nested.with_name("renamed.py"))
    assert reuse.code_version(copy) not in (edited, reuse.code_version())


def test_trial_machine__threads_are_the_trials_own():
    cfg = ContraLordConfig.from_overrides(BASE)
    assert reuse.trial_machine(cfg, 1.0, False).threads == "1"
    assert reuse.trial_machine(cfg, 2.0, False).threads == "2"
    pinned = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, threads=3))
    assert reuse.trial_machine(pinned, 2.0, False).threads == "3"
    assert reuse.trial_machine(cfg, 1.0, False).gpu == "none"


def test_trial_machine__id_is_the_one_a_trial_records_whatever_the_drivers_blas():
    from threadpoolctl import threadpool_limits

    cfg = ContraLordConfig.from_overrides(BASE)
    here = machine.describe()
    before_the_field = machine.Machine(here.cpu, here.torch, "1", "none")  # runs already in stores carry this id
    with threadpool_limits(limits=2, user_api="blas"):  # the driver's BLAS may use every core
        assert reuse.trial_machine(cfg, 1.0, False).id == before_the_field.id
    pinned = ContraLordConfig.from_overrides(BASE | {"run.threads": 3})
    assert reuse.trial_machine(pinned, 1.0, False).blas_threads == "1"  # Ray's OMP_NUM_THREADS, not run.threads


def test_find_and_link__only_finished_runs_of_the_machine_and_copies_point_at_the_original(store):
    tags = {"reuse_key": "k1", "machine": "m1"}
    original = store.trial("contralord-negatives", {}, {"disentanglement": 0.5}, 0, tags=tags)
    store.trial("contralord-negatives", {}, {"disentanglement": 0.9}, 0, status="FAILED", tags=tags)
    store.trial("contralord-negatives", {}, {"disentanglement": 0.9}, 0, status="KILLED",
                tags=tags | {"stopped_early": "true"})
    client = store.client
    model = client.create_logged_model(store.experiment("contralord-negatives"), name="encoder", source_run_id=original)
    client.log_outputs(original, [LoggedModelOutput(model.model_id, step=0)])
    experiments = reuse.sweep_experiments(client)
    assert reuse.find_earlier(client, experiments, "k1", "m2") is None
    assert reuse.find_earlier(client, experiments, "k2", None) is None
    earlier = reuse.find_earlier(client, experiments, "k1", "m1")
    assert earlier.info.run_id == original
    other = store.experiment("contralord-losses")
    parent = store.parent("contralord-losses", "losses")
    copy = reuse.link_earlier(client, other, parent, earlier)
    run = client.get_run(copy)
    assert run.info.status == "FINISHED" and run.data.tags["reused_from"] == original
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.metrics == earlier.data.metrics
    assert run.data.params == earlier.data.params and "ray_trial_id" not in run.data.tags
    assert [m.model_id for m in run.outputs.model_outputs] == [model.model_id]  # the original's encoder
    assert reuse.find_earlier(client, reuse.sweep_experiments(client), "k1", "m1").info.run_id == original
    assert reuse.linked_keys(client, other, parent) == {"k1"}


def test_find_earlier__one_machine_id_of_another_cpu_generation_is_not_reused(store):
    zen5, zen4 = "AuthenticAMD family 26 model 2", "AuthenticAMD family 25 model 17"
    tags = {"reuse_key": "k1", "machine": "m1"}
    store.trial("contralord-negatives", {}, {"disentanglement": 0.5}, 0, tags=tags | {"machine.cpu_generation": zen4})
    client = store.client
    experiments = reuse.sweep_experiments(client)
    assert reuse.find_earlier(client, experiments, "k1", "m1", zen5) is None  # same id, other kernels
    assert reuse.find_earlier(client, experiments, "k1", "m1", zen4) is not None
    assert reuse.find_earlier(client, experiments, "k1", "m1") is not None  # this machine's generation not known
    before = store.trial("contralord-negatives", {}, {"disentanglement": 0.5}, 1, tags=tags | {"reuse_key": "k2"})
    assert reuse.find_earlier(client, experiments, "k2", "m1", zen5).info.run_id == before  # a run before the tag


def test_plan_trials__carry_the_local_machines_id_and_cpu_generation():
    import functools

    local = functools.partial(reuse.trial_machine, cpus_per_worker=1.0, use_gpu=False)
    config = [{"variant": "a", "run.seed": 0}]
    (here,) = reuse.plan_trials(config, lambda c: BASE | {"run.seed": c["run.seed"]}, "code", local)
    expected = reuse.trial_machine(ContraLordConfig.from_overrides(BASE), 1.0, False)
    assert (here.machine, here.generation) == (expected.id, expected.cpu_generation) == (expected.id,
                                                                                         machine.cpu_generation())
    (cluster,) = reuse.plan_trials(config, lambda c: BASE | {"run.seed": c["run.seed"]}, "code", None)
    assert (cluster.machine, cluster.generation) == ("", "") and cluster.key == here.key


def test_experiment_tables__leave_out_a_copy_whose_original_they_read(store):
    original = store.trial("contralord-negatives", {}, {"disentanglement": 0.5}, 0, tags={"reuse_key": "k"})
    parent = store.parent("contralord-negatives", "negatives")
    earlier = store.client.get_run(original)
    reuse.link_earlier(store.client, store.experiment("contralord-negatives"), parent, earlier)
    assert [r.run_id for r in from_experiment(store.client, "contralord-negatives").runs] == [original]
    elsewhere = reuse.link_earlier(store.client, store.experiment("contralord-losses"), parent, earlier)
    assert [r.run_id for r in from_experiment(store.client, "contralord-losses").runs] == [elsewhere]
    assert drop_reused_copies([]) == []
