"""MLflow's usage telemetry is off in our processes unless the user turned it on (``ablations.telemetry_off``): its
background thread unsets ``_MLFLOW_TELEMETRY_SESSION_ID`` while requests of other threads read the environment,
and such a request fails (seen in tune/store/bench_store.py: ``create_run`` failed with exception
'_MLFLOW_TELEMETRY_SESSION_ID'). MLflow keeps telemetry off by itself under pytest and CI, so each check runs in a
process with a minimal environment, as a user's shell has it; the entry points run as scripts (``--help``), since
a script's own imports come first."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ("ablations/make_tables.py", "ablations/cost_report.py", "tune/sweep_negatives.py",
           "tune/store/bench_store.py")
STATE = ("from mlflow.telemetry.client import get_telemetry_client\n"
         "print(get_telemetry_client() is not None, os.environ.get('MLFLOW_DISABLE_TELEMETRY'))")


def _telemetry(code: str, **env: str) -> str:
    minimal = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ} | env
    done = subprocess.run([sys.executable, "-c", f"import os, runpy, sys\n{code}\n{STATE}"], capture_output=True,
                          text=True, env=minimal, cwd=REPO, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_entry_points__start_no_telemetry_thread(script):
    run = (f"sys.argv = [{script!r}, '--help']\ntry:\n    runpy.run_path({script!r}, run_name='__main__')\n"
           f"except SystemExit:\n    pass")
    assert _telemetry(run) == "False true"


@pytest.mark.slow
def test_imports__start_none_plain_mlflow_does_and_a_users_choice_is_kept():
    assert _telemetry("import tune.trial.worker") == "False true"  # what a Ray worker imports
    assert _telemetry("import mlflow") == "True None"  # what the above prevent
    assert _telemetry("import tune.trial.mlflow_logger", MLFLOW_DISABLE_TELEMETRY="false").endswith(" false")
