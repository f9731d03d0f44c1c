"""The ``contralord`` command: train, evaluate a saved run, metrics on given codes, the step benchmark, and the
self-contained model folder it exports.
"""
