"""Ablation tables from MLflow runs: mean ± std and 95% confidence intervals over seeds, one row per value
of the swept config key(s), with the paper's values beside ours. ``python ablations/make_tables.py``."""
