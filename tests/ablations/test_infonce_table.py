"""``make_tables.py --infonce``: each row's InfoNCE terms against chance. Chance is checked against our own losses
in closed form (a projection that maps every image to one point); the summaries on fabricated runs whose histories
are known exactly."""

import math

import pytest
import torch
from fabricated_runs import Store, mlflow_store  # noqa: F401  (mlflow_store: the `store` fixture)
from mlflow.entities import Metric

from ablations import make_tables
from ablations.infonce import build_infonce, chance
from ablations.runs import from_experiment
from ablations.specs import spec_for_keys
from ablations.tables import build_table
from contralord.losses import info_nce_loss, nt_xent_loss

EXPERIMENT = "contralord-losses"


@pytest.mark.parametrize("queue", [1, 8, 1024])
def test_chance__is_our_info_nce_of_one_point_for_every_image(queue):
    point = torch.randn(1, 16)
    loss = info_nce_loss(point.expand(4, 16), point.expand(4, 16), point.expand(queue, 16), temperature=0.07)
    assert chance({"encoder.queue_size": str(queue)}) == pytest.approx(float(loss), abs=1e-5)
    assert chance({"encoder.queue_size": str(queue)}) == pytest.approx(math.log(1 + queue))


def test_chance__with_in_batch_negatives_is_our_nt_xent_of_one_point():
    point = torch.randn(1, 8)
    loss = nt_xent_loss(point.expand(6, 8), point.expand(6, 8), temperature=0.1)  # 2B - 1 = 11 candidates
    params = {"encoder.negatives": "batch", "encoder.batch_size": "6", "encoder.queue_size": "1024"}
    assert chance(params) == pytest.approx(float(loss), abs=1e-5) and chance(params) == pytest.approx(math.log(11))


def _log(store: Store, run_id: str, histories: dict[str, list[tuple[int, float]]]) -> None:
    points = [Metric(f"encoder/train/{key}", value, 0, step) for key, history in histories.items()
              for step, value in history]
    store.client.log_batch(run_id, metrics=points)


def _fabricate(store: Store) -> None:
    """Row con=0: no InfoNCE term. Row con=1 (K = 128 from the fabricated base, chance log 129 = 4.860): seed 0 drops
    to 0.1 and climbs back to 4.5 (near chance), and its L_con without the lag is 4.8 of 5.0 at evaluation; seed 1 is a
    reused copy whose original keeps falling (to 1.0) and predates the lag-free check."""
    for seed in range(2):
        store.trial(EXPERIMENT, {"loss.con": "0.0"}, {"disentanglement": 0.5}, seed)
    seed0 = store.trial(EXPERIMENT, {"loss.con": "1.0"}, {"disentanglement": 0.4, "nce_content_lagfree": 4.8,
                                                          "nce_chance_lagfree": 5.0}, 0)
    _log(store, seed0, {"nce_content": [(32, 2.0), (64, 0.1), (96, 0.1), (128, 4.5)],
                        "nce_residual": [(32, 1.0), (64, 0.5), (128, 0.5)]})
    original = store.trial("contralord-schedule", {"loss.con": "1.0"}, {"disentanglement": 0.4}, 1)
    _log(store, original, {"nce_content": [(32, 4.0), (64, 2.0), (128, 1.0)],
                           "nce_residual": [(32, 3.0), (64, 2.0), (128, 1.5)]})
    store.trial(EXPERIMENT, {"loss.con": "1.0"}, {"disentanglement": 0.4}, 1, tags={"reused_from": original})


def test_infonce__first_lowest_last_per_seed_and_seeds_near_chance(store):
    _fabricate(store)
    source = from_experiment(store.client, EXPERIMENT)
    table = build_table(source.runs, spec_for_keys(("loss.con",)), source.description)
    rows = {(row.label, row.term): row for row in build_infonce(store.client, table, source.runs)}
    assert set(rows) == {("loss.con=1", "con"), ("loss.con=1", "res")}  # rec+sup logs no InfoNCE term
    con = rows["loss.con=1", "con"]
    by_first = sorted(con.curves, key=lambda c: c.first)
    # seed 0: the earlier of two equal lowest points; seed 1's history is its original's
    assert [(c.first, c.lowest, c.lowest_step, c.last, c.last_step) for c in by_first] == [
        (2.0, 0.1, 64, 4.5, 128), (4.0, 1.0, 128, 1.0, 128)]
    assert all(c.chance == pytest.approx(math.log(129)) for c in con.curves)
    assert con.near() == 1  # 4.5 >= 0.9 * 4.86; 1.0 is not
    assert con.mean("last") == pytest.approx(2.75) and con.mean("lowest") == pytest.approx(0.55)
    assert rows["loss.con=1", "res"].near() == 0
    assert con.lagfree() == (pytest.approx(4.8), pytest.approx(5.0))  # the one seed that logged it
    assert rows["loss.con=1", "res"].lagfree() is None


def test_infonce_command__prints_writes_and_refuses(store, tmp_path, capsys):
    _fabricate(store)
    argv = ["--tracking-uri", store.uri, "--experiment", EXPERIMENT, "--by", "loss.con", "--infonce",
            "--out", str(tmp_path / "out")]
    assert make_tables.main(argv) == 0
    text = capsys.readouterr().out
    assert ("| 1 | loss.con=1 | L_con | 2 | 4.860 | 3.000 | 0.550 (96) | 2.750 (128) | 0.57 | 1 of 2 | "
            "4.800 / 5.000 (0.96; 1 of 2 seeds) |") in text
    assert "| L_res | 2 | 4.860 | 2.000 | 1.000 (96) | 1.000 (128) | 0.21 | 0 of 2 | – (not logged" in text
    assert (tmp_path / "out" / "by-loss.con_infonce.md").read_text().strip() == text.strip()
    assert (tmp_path / "out" / "by-loss.con_infonce.png").read_bytes()[:4] == b"\x89PNG"
    assert make_tables.main(argv) == 2  # the file exists: refused, unchanged
    assert "--overwrite" in capsys.readouterr().err
    assert make_tables.main([*argv, "--overwrite", "--format", "csv"]) == 2
    assert "--format" in capsys.readouterr().err
    assert make_tables.main([*argv, "--overwrite", "--balance"]) == 2
    assert "give one" in capsys.readouterr().err
    assert make_tables.main([*argv, "--overwrite", "--rungs"]) == 2
    assert "--rungs with --balance or --infonce" in capsys.readouterr().err
    stage1 = ["--tracking-uri", store.uri, "--spec", "stage1", "--infonce"]
    assert make_tables.main(stage1) == 2 and "--spec stage1: takes --tracking-uri" in capsys.readouterr().err
    assert "- loss.con=1, L_con: 2.000 / 0.100 / 4.500, lag-free 4.800; 4.000 / 1.000 / 1.000" in text


def test_infonce__runs_without_an_infonce_term_are_refused(store, capsys):
    for seed in range(2):
        store.trial(EXPERIMENT, {"loss.con": "0.0"}, {"disentanglement": 0.5}, seed)
    argv = ["--tracking-uri", store.uri, "--experiment", EXPERIMENT, "--by", "loss.con", "--infonce"]
    assert make_tables.main(argv) == 2
    assert "nce_content" in capsys.readouterr().err
