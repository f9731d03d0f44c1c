"""Bad sweep input is refused with one line and exit status 2, before Ray starts or a trial runs."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

from tune.checks import SweepError, check_address, check_storage, check_storage_shared, check_tracking_uri  # noqa: E402
from tune.driver.run import parse_options, plan_sweep  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _plan(tmp_path, *args, kind="negatives"):
    base = ["--preset", "smoke", "--storage", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    return plan_sweep(kind, parse_options(kind, base + list(args)))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, needle", [
    (["--preset", "huge"], "--preset"),
    (["--set", "encoder.queue_sise=3"], "encoder.queue_sise"),
    (["--set", "encoder.temperature=0"], "encoder.temperature"),
    (["--set", "data.size=200"], "encoder.queue_size: K=256 >= 200"),  # the smoke grid's K=256 >= N
    (["--storage", "relative/path"], "--storage"),
    (["--tracking-uri", "mlflow.db"], "--tracking-uri"),
    (["--tracking-uri", "sqlite:///relative.db"], "--tracking-uri"),
    (["--seeds", "0"], "--seeds"),
])
def test_plan__bad_input_names_the_flag_or_key(tmp_path, args, needle):
    with pytest.raises(ValueError, match=None) as error:
        _plan(tmp_path, *args)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_plan__optuna_needs_a_per_epoch_metric(tmp_path):
    with pytest.raises(SweepError, match="per-epoch"):
        _plan(tmp_path, "--metric", "encoder/eval/mig", kind="optuna")
    assert _plan(tmp_path, kind="optuna").knob == "optuna"


def test_plan__valid_smoke_sweep_has_its_grid(tmp_path):
    plan = _plan(tmp_path, "--seeds", "2")
    assert plan.knob == "encoder.queue_size" and [n for n, _ in plan.variants] == ["K=128", "K=256"]
    assert plan.seeds == [0, 1] and plan.name == "sweep-negatives-smoke"


def test_check_address__unreachable_head():
    with pytest.raises(SweepError, match="no Ray head answers"):
        check_address(f"127.0.0.1:{_free_port()}")
    with pytest.raises(SweepError, match="host:port"):
        check_address("nonsense")


def test_check_tracking_uri__unreachable_server():
    with pytest.raises(SweepError, match="not reachable"):
        check_tracking_uri(f"http://127.0.0.1:{_free_port()}")


def test_check_storage__absolute_or_uri_and_shared_on_clusters(tmp_path):
    assert check_storage("s3://bucket/prefix/") == "s3://bucket/prefix"
    assert check_storage(str(tmp_path)) == str(tmp_path)
    with pytest.raises(SweepError, match="2 nodes"):
        check_storage_shared(str(tmp_path), alive_nodes=2, shared_fs=False)
    check_storage_shared(str(tmp_path), alive_nodes=2, shared_fs=True)
    check_storage_shared("s3://bucket", alive_nodes=5, shared_fs=False)


@pytest.mark.slow
def test_sweep_script__bad_input_exits_2_with_one_line(tmp_path):
    cmd = [sys.executable, str(REPO / "tune" / "sweep_negatives.py"), "--preset", "smoke",
           "--address", f"127.0.0.1:{_free_port()}", "--storage", str(tmp_path), "--tracking-uri",
           f"sqlite:///{tmp_path}/m.db"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "--address" in result.stderr
