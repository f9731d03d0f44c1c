"""The dry run's cost model: each trial's and stage 1's seconds from past runs on this machine (``history``) or
measured now (``calibrate``), summed into the sweep's wall-time estimate (``cost``, ``estimate``), and the benchmark
of a sweep against plain training (``bench_sweep``).
"""
