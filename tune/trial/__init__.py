"""What runs on the Ray workers: one trial (``worker``), stage 1 as a task (``stage1``), the one MLflow writer
(``mlflow_logger``), logged models (``export``), what the driver hands a trial (``context``) and the keys by which a
finished run stands for a trial (``reuse``). Nothing here imports the driver or the pricing.
"""
