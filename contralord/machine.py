"""The machine a run trained on, so that spread across runs can be trusted: the CPU model, the torch
version and build, the intra-op and BLAS thread counts and the GPU. Two runs with the same config and seed
can differ in their last digits across machines (other kernels, other reduction orders), so tables average
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

TAG = "machine"  # the short id; the fields are tagged as machine.<field>
GENERATION_TAG = f"{TAG}.cpu_generation"  # not in the id: one id may name two CPU generations (Machine)


@dataclass(frozen=True)
class Machine:
    cpu: str  # model name and logical CPU count, "AMD EPYC (2 CPUs)"
    torch: str  # version and a digest of torch.__config__.show(), "2.14.1+cpu (build 1a2b3c4d)"
    threads: str  # torch.get_num_threads() when described
    gpu: str  # CUDA device name, or "none"
    # the most threads a loaded BLAS (numpy's, scipy's) may use: the probe's logistic regression runs on it, and
    # its iterates (so its accuracy's last digits) change with it; "" when not described
    blas_threads: str = ""
    # vendor, family and model (``cpu_generation``): a virtual CPU's model name may be its brand alone
    # ("AMD EPYC"), the same for two generations whose kernels round differently. Not part of the id, so runs
    # tagged before it keep theirs; tables and reuse refuse to pool one id's runs of two generations instead
    cpu_generation: str = ""

    @property
    def id(self) -> str:
        """10 hex digits naming the machine: equal exactly when every field is equal. A BLAS thread count
        equal to torch's (the usual case: Ray and OMP_NUM_THREADS set both) or not described leaves the id
        as it was before the field existed, so earlier runs of the same machine still pool with new ones."""
        fields = asdict(self)
        del fields["cpu_generation"]
        if self.blas_threads in ("", self.threads):
            del fields["blas_threads"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id} | asdict(self)

    def tags(self) -> dict[str, str]:
        """``machine`` (the id) and ``machine.cpu``, ``machine.torch``, ``machine.threads``, ``machine.gpu``,
        ``machine.blas_threads``, ``machine.cpu_generation``."""
        return {TAG: self.id} | {f"{TAG}.{k}": v for k, v in asdict(self).items() if v != ""}

    def __str__(self) -> str:
        return describe_fields(self.cpu, self.torch, self.threads, self.gpu, self.blas_threads)


def describe_fields(cpu: str, torch_build: str, threads: str, gpu: str, blas_threads: str = "") -> str:
    """One line for a machine; the BLAS thread count only where it differs from torch's."""
    blas = f" (BLAS {blas_threads})" if blas_threads not in ("", threads) else ""
    return f"{cpu}, torch {torch_build}, {threads} threads{blas}, {'no GPU' if gpu == 'none' else gpu}"


def blas_threads() -> str:
    """The most threads numpy's or scipy's BLAS may use now (threadpoolctl reads the loaded libraries; scipy's
    is loaded first so that the answer does not depend on which module ran before)."""
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info

    counts = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
    return str(max(counts)) if counts else "none"


def _cpuinfo_lines() -> list[str]:
    """The lines of /proc/cpuinfo (Linux); none elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.read_text(errors="replace").splitlines() if cpuinfo.is_file() else []


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux) and the logical CPU count."""
    name = next((line.split(":", 1)[1].strip() for line in _cpuinfo_lines() if line.startswith("model name")), "")
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name} ({os.cpu_count()} CPUs)"


def cpu_generation() -> str:
    """``GenuineIntel family 6 model 143`` from /proc/cpuinfo's first CPU; "" where there is none."""
    fields = {}
    for line in _cpuinfo_lines():
        if not line.strip():
            break  # the first CPU's block ends
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    parts = [fields.get("vendor_id", "")] + [f"{k} {fields[n]}" for k, n in
                                              (("family", "cpu family"), ("model", "model")) if fields.get(n)]
    return " ".join(p for p in parts if p)


def describe() -> Machine:
    """This process's machine, with the thread count torch uses now."""
    import torch  # here, not at the top: ``describe_fields`` serves the tables, which load no torch

    build = hashlib.sha256(torch.__config__.show().encode()).hexdigest()[:8]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return Machine(cpu_model(), f"{torch.__version__} (build {build})", str(torch.get_num_threads()), gpu,
                   blas_threads(), cpu_generation())
