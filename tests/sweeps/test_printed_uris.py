"""What a sweep prints after Ray starts (the MLflow UI link) never shows the password of a tracking URI's login."""

from tune.trial.mlflow_logger import ui_link


def test_ui_link__masks_the_password():
    link = ui_link("http://ann:s3cret@mlflow.example:5000", "7")
    assert "s3cret" not in link and link.startswith("http://ann:***@mlflow.example:5000/#/experiments/7")
    assert "s3cret" not in ui_link("postgresql://ann:s3cret@db:5432/mlflow", "7")
    assert ui_link("sqlite:////tmp/mlflow.db", "3").startswith("mlflow ui --backend-store-uri sqlite:////tmp/mlflow.db")
