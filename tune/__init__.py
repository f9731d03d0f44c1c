"""The sweep service: Ray Tune (+ Ray Train) around the core trainer, MLflow logging of every trial.

Run the sweeps as scripts, e.g. ``python tune/sweep_negatives.py --preset cpu``. No module here may
share a name with a library (``ray.py``, ``mlflow.py``, ``optuna.py``): scripts put ``tune/`` first
on ``sys.path``.
"""

import ablations  # noqa: E402, F401  (MLflow's telemetry off before mlflow is imported: ablations/__init__.py)
