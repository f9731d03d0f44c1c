"""``tune/pricing/bench_sweep.py``'s per-trial time breakdown, read from a store with fabricated trial runs."""

from mlflow import MlflowClient

from tune.pricing.bench_sweep import print_breakdown, time_breakdown


def test_time_breakdown__means_shares_and_the_rest(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("contralord-negatives")
    for total, train in ((10.0, 6.0), (20.0, 12.0)):
        run = client.create_run(experiment, tags={"role": "trial"}).info.run_id
        for key, value in {"time/start": 1.0, "time/data": 1.0, "time/train": train, "time/log": 1.0,
                           "time/total": total}.items():
            client.log_metric(run, key, value)
        client.set_terminated(run, "FINISHED")
    parts = time_breakdown(uri, "negatives")
    assert parts == {"time/start": 1.0, "time/data": 1.0, "time/train": 9.0, "time/log": 1.0, "other": 3.0,
                     "time/total": 15.0}
    print_breakdown(parts)
    out = capsys.readouterr().out
    assert "time/total 15.0 s" in out and "train             9.0 s   60.0%" in out and "no time/eval" in out
