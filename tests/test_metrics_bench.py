"""Smoke test of the metrics benchmark at a tiny size (the full size runs by hand)."""

from contralord.metrics.bench import run_metrics_bench


def test_run_metrics_bench__tiny_size_reports_every_number(capsys):
    res = run_metrics_bench(n_train=60, n_test=30, d=3, f=2, smoothness_n=300, smoothness_dim=4)
    for key in ("mig", "sap", "dci_sequential", "dci_parallel", "dci_fast", "smoothness_300"):
        assert res[f"seconds/{key}"] >= 0.0
    assert res["dci_parallel_equals_sequential"] == 1.0
    assert res["peak_mb/smoothness_300"] > 0.0
    assert "seconds/dci_parallel" in capsys.readouterr().out
