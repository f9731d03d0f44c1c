"""One run end to end: its checks before training (``preflight.prepare`` -> ``Setup``), the trainer (prepare,
stage 1, stage 2, evaluate), the budget ladder's rungs, and the summary.
"""
