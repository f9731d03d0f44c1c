"""The paper's numbers as transcribed into ablations/paper_values.json."""

import pytest

from ablations import specs

FULL_MODEL = {"D": 1.00, "C": 1.00, "I": 1.00, "SAP": 0.42, "MIG": 1.00, "Smoothness": 0.96}


def test_paper_values__the_full_model_row_is_the_same_in_tables_2_4_5_and_6():
    """The paper's default ContraLORD on Shapes3D (all losses, batch 256, K 12800) appears in four tables
    with identical numbers: a transcription check on each of them."""
    assert specs.paper_rows("table2")[("shapes3d", "ContraLORD")] == FULL_MODEL
    assert specs.paper_rows("table4")[(1, 1, 1, 1)] == FULL_MODEL
    assert specs.paper_rows("table5")[(256,)] == FULL_MODEL
    assert specs.paper_rows("table6")[(12800,)] == FULL_MODEL


def test_paper_values__shapes_of_the_tables():
    assert len(specs.paper_rows("table2")) == 16  # 4 datasets x 4 methods
    assert [k[0] for k in specs.paper_rows("table5")] == [32, 64, 128, 256, 512, 1024]
    assert [k[0] for k in specs.paper_rows("table6")] == [1600, 3200, 6400, 12800, 25600, 51200]
    for name in ("table4", "table5", "table6"):  # every spec's paper rows are keyed like its rows
        assert all(len(key) == len(specs.SPECS[name].by) for key in specs.paper_rows(name))


def test_paper_values__unknown_table_names_the_ones_there():
    with pytest.raises(KeyError, match="table2, table4, table5, table6"):
        specs.paper_rows("table9")


def test_spec__table4_paper_key_is_the_on_off_pattern():
    spec = specs.SPECS["table4"]
    assert spec.paper_key((1.0, 2.5, 0.0, 0.5)) == (1, 1, 0, 1)
    assert spec.row_label((1.0, 2.5, 0.0, 0.5)) == ["✓", "✓ (2.5)", "", "✓ (0.5)"]


def test_spec__sampled_floats_are_shown_short():
    spec = specs.spec_for_keys(("loss.sup", "encoder.batch_size"))
    assert spec.row_label((0.7035737028722149, 64)) == ["0.7036", "64"]


def test_table_columns__usable_in_mlflow_metric_names():
    """A sweep's parent logs ``<column>/<variant>`` for every cell (tune/driver/publish.py): MLflow refuses a name with
    characters outside its set ("Smoothness (centred)" ended a real sweep in a traceback)."""
    import re

    from ablations.specs import METRICS

    assert [c for c in METRICS if not re.fullmatch(r"[\w\-. /]+", c)] == []
