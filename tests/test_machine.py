"""The machine description: stable within a process, its id follows every field, and train() records it."""

import hashlib
import json
from dataclasses import replace

import torch

from contralord import machine
from contralord.config import ContraLordConfig
from contralord.run.trainer import train


def test_describe__stable_and_complete():
    first, second = machine.describe(), machine.describe()
    assert first == second and first.id == second.id and len(first.id) == 10
    assert first.threads == str(torch.get_num_threads())
    assert torch.__version__ in first.torch and "build" in first.torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    assert "CPUs)" in first.cpu and first.gpu == gpu
    assert first.blas_threads.isdigit() or first.blas_threads == "none"
    generation = {"machine.cpu_generation": first.cpu_generation} if first.cpu_generation else {}
    assert first.tags() == {"machine": first.id, "machine.cpu": first.cpu, "machine.torch": first.torch,
                            "machine.threads": first.threads, "machine.gpu": first.gpu,
                            "machine.blas_threads": first.blas_threads} | generation


def test_cpu_generation__vendor_family_and_model_of_the_first_cpu(tmp_path, monkeypatch):
    block = "processor\t: {}\nvendor_id\t: AuthenticAMD\ncpu family\t: {}\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
    (tmp_path / "cpuinfo").write_text(block.format(0, 26) + "\n" + block.format(1, 25))
    real = machine.Path
    monkeypatch.setattr(machine, "Path", lambda p: real(tmp_path / "cpuinfo") if p == "/proc/cpuinfo" else real(p))
    assert machine.cpu_generation() == "AuthenticAMD family 26 model 2"
    (tmp_path / "cpuinfo").unlink()
    assert machine.cpu_generation() == ""


def test_id__not_changed_by_the_cpu_generation():
    # runs tagged before the field keep their id; tables split one id's runs by generation instead
    base = machine.Machine("AMD EPYC (2 CPUs)", "2.14.1 (build 1a2b3c4d)", "1", "none")
    tagged = replace(base, cpu_generation="AuthenticAMD family 26 model 2")
    assert tagged.id == base.id and tagged.tags()["machine.cpu_generation"] == "AuthenticAMD family 26 model 2"
    assert "machine.cpu_generation" not in base.tags()


def test_id__changes_with_every_field():
    base = machine.describe()
    others = [replace(base, cpu="other"), replace(base, torch="0.0"), replace(base, threads="64"),
              replace(base, gpu="NVIDIA H100")]
    assert len({base.id, *(m.id for m in others)}) == 5


def test_id__blas_threads_count_only_where_they_differ_from_torchs():
    base = machine.Machine("AMD EPYC (2 CPUs)", "2.14.1 (build 1a2b3c4d)", "1", "none")
    same = replace(base, blas_threads="1")
    fields = {"cpu": base.cpu, "torch": base.torch, "threads": "1", "gpu": "none"}  # the id before the field
    before = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
    assert same.id == base.id == before  # runs tagged before the field keep their id
    other = replace(base, blas_threads="2")
    assert other.id != base.id and "(BLAS 2)" in str(other) and "BLAS" not in str(same)
    assert "machine.blas_threads" not in base.tags() and other.tags()["machine.blas_threads"] == "2"


def test_blas_threads__follow_threadpoolctl_limits():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        assert machine.blas_threads() == "1"


def test_id__follows_the_thread_count():
    before = torch.get_num_threads()
    one = machine.describe()
    torch.set_num_threads(before + 1)
    try:
        assert machine.describe().id != one.id
    finally:
        torch.set_num_threads(before)


def test_train__writes_the_machine_into_the_summary(tmp_path, tiny_overrides):
    cfg = ContraLordConfig.from_overrides(tiny_overrides | {"eval.enabled": False})
    summary = train(cfg, tmp_path)
    written = json.loads((tmp_path / "summary.json").read_text())["machine"]
    assert written == summary["machine"] == machine.describe().as_dict()
    assert written["threads"] == "1"  # run.threads=1 in the tiny config
