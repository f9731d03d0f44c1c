"""The machine a run trained on, so that spread across runs can be trusted: the CPU model, the torch
version and build, the intra-op thread count and the GPU. Two runs with the same config and seed can
differ in their last digits across machines (other kernels, other reduction orders), so tables average
runs of one machine only (``ablations/tables.py``). No Ray, no MLflow: ``train`` writes the description
into ``summary.json`` and the sweep service logs it as tags.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

TAG = "machine"  # the short id; the fields are tagged as machine.<field>


@dataclass(frozen=True)
class Machine:
    cpu: str  # model name and logical CPU count, "AMD EPYC (2 CPUs)"
    torch: str  # version and a digest of torch.__config__.show(), "2.14.1+cpu (build 1a2b3c4d)"
    threads: str  # torch.get_num_threads() when described
    gpu: str  # CUDA device name, or "none"

    @property
    def id(self) -> str:
        """10 hex digits naming the machine: equal exactly when every field is equal."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id} | asdict(self)

    def tags(self) -> dict[str, str]:
        """``machine`` (the id) and ``machine.cpu``, ``machine.torch``, ``machine.threads``, ``machine.gpu``."""
        return {TAG: self.id} | {f"{TAG}.{k}": v for k, v in asdict(self).items()}

    def __str__(self) -> str:
        gpu = "no GPU" if self.gpu == "none" else self.gpu
        return f"{self.cpu}, torch {self.torch}, {self.threads} threads, {gpu}"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux) and the logical CPU count."""
    name = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text(errors="replace").splitlines()
        name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name} ({os.cpu_count()} CPUs)"


def describe() -> Machine:
    """This process's machine, with the thread count torch uses now."""
    build = hashlib.sha256(torch.__config__.show().encode()).hexdigest()[:8]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return Machine(cpu_model(), f"{torch.__version__} (build {build})", str(torch.get_num_threads()), gpu)
