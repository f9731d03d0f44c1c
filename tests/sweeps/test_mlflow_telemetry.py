"""MLflow's usage telemetry is off in every process that imports our tune/ or ablations/ packages, unless the user
turned it on: its background thread unsets ``_MLFLOW_TELEMETRY_SESSION_ID`` while requests of other threads read the
environment, and such a request fails (seen in tune/bench_store.py: ``create_run`` failed with exception
'_MLFLOW_TELEMETRY_SESSION_ID'). MLflow itself keeps telemetry off under pytest and CI, so each check runs in a
process with those variables removed, as a user's process has them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CI_VARS = ("PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL", "TRAVIS",
           "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")
PROBE = ("import os{first}\nfrom mlflow.telemetry.client import get_telemetry_client\n"
         "print(get_telemetry_client() is not None, os.environ.get('MLFLOW_DISABLE_TELEMETRY'))")


def _telemetry(first: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in CI_VARS} | env
    done = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], capture_output=True, text=True,
                          env=clean, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("first", ["\nimport tune.mlflow_logger", "\nimport ablations.make_tables",
                                   "\nimport tune.worker"])
def test_our_processes__start_no_telemetry_thread(first):
    assert _telemetry(first) == "False true"


def test_plain_mlflow__starts_it_and_a_users_choice_is_kept():
    assert _telemetry("\nimport mlflow") == "True None"  # what the packages above prevent
    assert _telemetry("\nimport tune.mlflow_logger", MLFLOW_DISABLE_TELEMETRY="false").endswith(" false")
