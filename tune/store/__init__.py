"""Tools for the MLflow store itself: a consistent backup and restore (``store_backup``) and N loggers against a
tracking server (``bench_store``, docs/RELIABILITY.md).
"""
