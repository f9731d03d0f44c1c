"""``make_tables.py --spec stage1 --confusion`` (ablations/stage1_confusion.py): where stage 1's classifiers err,
from each stage-1 run's artifact in MLflow and the data rebuilt from its params; closed-form cells, and the
accuracy it prints is the one stage 1 logged."""

import json

import torch
from fabricated_runs import mlflow_store  # noqa: F401  (the `store` fixture)

from ablations import make_tables
from ablations.stage1_confusion import adjacent_errors, confusion_matrix, largest_errors
from ablations.stage1_table import EXPERIMENT
from contralord.config import ContraLordConfig
from contralord.setup import Setup, build_data
from contralord.stage1.latent_stage import train_latent


def test_cells__counts_the_largest_and_the_neighbours_on_a_circle():
    truth = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    predicted = torch.tensor([0, 3, 3, 1, 2, 2, 0, 0, 3, 3])
    matrix = confusion_matrix(truth, predicted, 4)
    assert matrix.tolist() == [[1, 0, 0, 2], [0, 1, 1, 0], [2, 0, 1, 0], [0, 0, 0, 2]]
    assert largest_errors(matrix, top=2) == ((0, 3, 2), (2, 0, 2))  # ties in reading order
    assert adjacent_errors(matrix) == 3  # 0 → 3 (first and last are neighbours) and 1 → 2; 2 → 0 is not
    assert adjacent_errors(confusion_matrix(torch.tensor([0, 1]), torch.tensor([1, 0]), 2)) == 2  # counted once
    assert largest_errors(torch.eye(3, dtype=torch.long)) == ()


def test_confusion__from_the_logged_artifact_with_the_accuracy_stage1_logged(store, tiny_overrides, tmp_path,
                                                                             capsys):
    cfg = ContraLordConfig.from_overrides(tiny_overrides)
    result = train_latent(Setup.of(cfg, build_data(cfg)), tmp_path / "cache")
    run = store.client.create_run(store.experiment(EXPERIMENT), tags={"role": "stage1", "seed": "0",
                                                                       "machine": "m1"})
    for key, value in cfg.to_flat_dict().items():
        store.client.log_param(run.info.run_id, key, value)
    for key, value in result.metrics.items():
        store.client.log_metric(run.info.run_id, key, value)
    store.client.log_artifact(run.info.run_id, str(result.path))
    store.client.set_terminated(run.info.run_id)
    parent = store.client.create_run(store.experiment("contralord-methods"), tags={
        "role": "sweep", "stage1_run_ids": json.dumps({"0": run.info.run_id})}).info.run_id
    argv = ["--tracking-uri", store.uri, "--spec", "stage1", "--sweep-run", parent, "--confusion"]
    assert make_tables.main([*argv, "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    for name in ("floor_hue", "wall_hue", "object_hue"):
        logged = result.metrics[f"latent/final/classifier_acc/{name}"]
        assert f"| 0 | {name} | {logged:.3f} |" in text
    assert (tmp_path / "out" / "stage1_confusion.md").is_file()
    assert make_tables.main(["--tracking-uri", store.uri, "--spec", "table4", "--confusion"]) == 2
    assert "--confusion: only with --spec stage1" in capsys.readouterr().err
