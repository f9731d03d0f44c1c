"""``contralord bench``: throughput and FLOP ratios, measured side by side in one run.

Prints, for the given config (use ``--preset cpu`` for the quickstart scale):
- stage-1 and stage-2 images/s;
- achieved FLOP/s of each step (FLOPs counted by torch's FlopCounterMode over forward + backward)
  against torch's own fp32 GEMM FLOP/s on this machine;
- the ContraLORD stage-2 step against the LORD-amortisation step (L_rec + L_sup only) of the same
  model: measured time ratio next to the ratio FLOP counting predicts;
- one shared EMA backbone against two separate EMA backbones (the same math, proven by a test);
- the stage-2 fast path (``precision.py``: bf16 autocast, channels_last, torch.compile on CUDA)
  against fp32 eager: ``contralord bench --preset paper --set run.device=cuda`` on a GPU.
Timings are medians over ``steps`` steps after one warm-up step. Codes and generator are random
(stage 1 is not trained first): throughput does not depend on their values.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from contralord.config import ContraLordConfig
from contralord.latent_result import untrained_result
from contralord.run.preflight import validate_against_data
from contralord.setup import Setup, build_data
from contralord.stage1.latent_stage import build_trainer
from contralord.stage2.encoder_stage import EncoderTrainer
from contralord.training.runtime import LocalRuntime, resolve_device
from contralord.training.timing import time_steps


def _step_flops(step_fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step_fn(0)
    return int(counter.get_total_flops())


def gemm_flops_per_s(device: torch.device, n: int = 1024, repeats: int = 10) -> float:
    """torch's own fp32 (n x n) @ (n x n) throughput on this machine."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    seconds = time_steps(lambda _: (a @ b, _sync(device)), repeats)
    return 2 * n**3 / seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _encoder_variant(cfg: ContraLordConfig, **changes) -> ContraLordConfig:
    flat = cfg.to_flat_dict() | changes
    return ContraLordConfig.from_overrides(flat)


def fast_path(device: torch.device) -> dict[str, object]:
    """The fast path's keys: bf16 autocast and channels_last, and torch.compile on CUDA (on a CPU its
    compile time dwarfs a benchmark's few steps)."""
    return {"run.precision": "bf16", "run.channels_last": True, "run.compile": device.type == "cuda"}


def measure(cfg: ContraLordConfig, steps: int) -> dict[str, float | str]:
    """Seconds per step (median) and FLOPs per step for stage 1 and three stage-2 variants.

    The variants are timed round-robin (one step of each per round), so drift in the machine's speed
    hits all of them alike and the ratios stay fair.
    """
    device = resolve_device(cfg.run.device)
    runtime = LocalRuntime(device=device)
    data = build_data(cfg)
    validate_against_data(cfg, len(data))
    setup = Setup.of(cfg, data)
    spe1, spe2 = len(data) // cfg.latent.batch_size, len(data) // cfg.encoder.batch_size
    stage1 = build_trainer(setup, runtime)
    latent = untrained_result(setup, stage1)
    fns = {"latent": lambda i: (stage1.step(0, i % spe1, i), _sync(device))}
    variants = {"contralord": cfg,
                "lord": _encoder_variant(cfg, **{"loss.con": 0.0, "loss.res": 0.0}),
                "separate_ema": _encoder_variant(cfg, **{"encoder.shared_momentum_backbone": False}),
                "fast": _encoder_variant(cfg, **fast_path(device))}
    for name, variant in variants.items():
        trainer = EncoderTrainer(Setup.of(variant, data), latent, runtime)
        fns[name] = lambda i, t=trainer: (t.step(0, i % spe2, i), _sync(device))
    results = {f"{name}_flops": _step_flops(fn) for name, fn in fns.items()}  # also the warm-up step
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(1, steps + 1):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - started)
    results |= {f"{name}_s": statistics.median(t) for name, t in times.items()}
    results["gemm_flops_per_s"] = gemm_flops_per_s(device)
    results["latent_structure"] = setup.structure
    return results


def _rate(flops: float, seconds: float, gemm: float) -> str:
    return f"{flops / seconds / 1e9:6.1f} GFLOP/s = {flops / seconds / gemm:.2f} x GEMM"


def run_bench(cfg: ContraLordConfig, steps: int = 10) -> dict[str, float | str]:
    """Measure and print the report; return the raw numbers."""
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    r = measure(cfg, steps)
    b1, b2, gemm = cfg.latent.batch_size, cfg.encoder.batch_size, r["gemm_flops_per_s"]
    lines = [
        f"device {resolve_device(cfg.run.device)}, torch threads {torch.get_num_threads()}, "
        f"median of {steps} round-robin steps",
        f"torch fp32 GEMM (1024^3):  {gemm / 1e9:8.1f} GFLOP/s",
        f"stage 1 (latent, {r['latent_structure']}): {b1 / r['latent_s']:5.1f} images/s, "
        f"{_rate(r['latent_flops'], r['latent_s'], gemm)}",
        f"stage 2 (contralord):      {b2 / r['contralord_s']:8.1f} images/s, "
        f"{_rate(r['contralord_flops'], r['contralord_s'], gemm)}",
        f"stage 2 (lord: rec+sup):   {b2 / r['lord_s']:8.1f} images/s, {_rate(r['lord_flops'], r['lord_s'], gemm)}",
        f"contralord / lord step time: measured {r['contralord_s'] / r['lord_s']:.2f}, "
        f"FLOP-predicted {r['contralord_flops'] / r['lord_flops']:.2f}",
        f"two separate EMA backbones / one shared: measured {r['separate_ema_s'] / r['contralord_s']:.2f}, "
        f"FLOP-predicted {r['separate_ema_flops'] / r['contralord_flops']:.2f}",
        f"stage 2 fast path ({', '.join(f'{k}={v}' for k, v in fast_path(resolve_device(cfg.run.device)).items())}): "
        f"{b2 / r['fast_s']:8.1f} images/s = {r['contralord_s'] / r['fast_s']:.2f} x fp32 eager",
    ]
    print("\n".join(lines), flush=True)
    return r
