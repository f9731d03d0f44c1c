"""A train-path trial whose workers cannot be placed: Ray Train retries a worker group's start for ever by default,
so a sweep on a 1-CPU cluster (a driver's 0.01 CPU plus a 1-CPU worker) hung for 65 minutes. Now the trial gives up
after ``WORKER_GROUP_START_TRIES`` starts, and the sweep says at its start when a trial cannot fit the cluster."""

from types import SimpleNamespace

import pytest

from tune.driver import sweep
from tune.driver.sweep import WORKER_GROUP_START_TRIES, placement_warning, train_run_config
from tune.options import SweepOptions


def _plan(**options) -> SimpleNamespace:
    base = {"address": "127.0.0.1:6391", "workers_per_trial": 1, "cpus_per_worker": 1.0, "driver_resource": "",
            "trainer": "train"}
    return SimpleNamespace(options=SweepOptions(**(base | options)), estimate=None)


def test_run_config__a_worker_group_that_cannot_start_is_given_up():
    ctx = SimpleNamespace(max_failures=2)
    failure = train_run_config(ctx, "/tmp/storage", "abc", []).failure_config
    assert failure.max_failures == 2 and failure.controller_failure_limit == WORKER_GROUP_START_TRIES > 0


@pytest.mark.parametrize("cluster, args, expected", [
    ({"CPU": 1.0}, {}, "the cluster has 1 CPU(s) now and a trial needs 1.01 (1 worker(s) x 1 CPU + its driver's "
                       "0.01)"),
    ({"CPU": 1.0}, {}, "on a fixed cluster pass --trainer tune (the trial is its one worker) or --driver-resource"),
    ({"CPU": 2.0}, {"workers_per_trial": 2}, "needs 2.01 (2 worker(s) x 1 CPU"),
    ({"CPU": 2.0}, {}, ""),  # fits
    ({"CPU": 1.0, "contralord_driver": 1000.0}, {}, ""),  # a driver resource of its own: the worker has the CPU
    ({"CPU": 1.0}, {"trainer": "tune"}, ""),  # the trial is the worker
    ({"CPU": 1.0}, {"address": None}, ""),  # a Ray the sweep starts has the driver resource
])
def test_placement_warning__when_a_trial_cannot_fit_the_cluster_now(monkeypatch, cluster, args, expected):
    monkeypatch.setattr(sweep.ray, "cluster_resources", lambda: cluster)
    warning = placement_warning(_plan(**args), cluster.get("CPU", 0.0))
    assert (expected in warning) if expected else warning == ""
