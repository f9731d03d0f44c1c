"""A sweep's command-line options, typed: ``tune/driver/run.py`` parses the flags and builds one ``SweepOptions``, which
the sweep plan (``tune/plan.py``) carries to everything that runs the sweep. Nothing after the parser reads argparse.

It imports nothing of ``tune``, so that every module of the driver, the checks included, may import it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

LOCAL_ADDRESSES = (None, "", "local")  # --address values that start Ray on this machine


@dataclass(frozen=True)
class SweepOptions:
    """One field per flag of ``tune/driver/run.py``'s parser (named as its ``dest``); the parser takes its defaults
    from these fields (``build_parser``'s ``set_defaults``), so a default is stated once."""

    preset: str = "cpu"
    method: tuple[str, ...] = ()  # --method, repeated: presets after the scale
    seeds: int = 1
    row: tuple[str, ...] = ()  # --row, repeated: the variants to run (empty: every one)
    set: tuple[str, ...] = ()  # --set KEY=VALUE, repeated
    address: str | None = None
    tracking_uri: str | None = None
    storage: str | None = None
    name: str | None = None
    resume: bool = False
    max_concurrent: int = 0
    workers_per_trial: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    max_failures: int = 2
    shared_fs: bool = False
    driver_resource: str = ""
    num_samples: int = 8
    metric: str = "encoder/train/rec"
    mode: str = "min"
    no_reuse: bool = False
    until_decided: bool = False
    max_seeds: int = 0
    decide_metric: str = ""
    decide_rule: str = ""
    max_rung: int = 0
    register_best: str = ""
    no_calibrate: bool = False
    dry_run: bool = False
    trainer: str = "auto"  # auto | train | tune; plan_sweep may settle auto to tune for a cluster

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> SweepOptions:
        """The options of the parsed flags ``args``; a repeated flag's list becomes a tuple."""
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in vars(args).items()})

    @property
    def local_ray(self) -> bool:
        """The sweep starts Ray on this machine (no ``--address``, or ``local``)."""
        return self.address in LOCAL_ADDRESSES
