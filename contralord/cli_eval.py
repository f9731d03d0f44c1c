"""``contralord evaluate`` and ``contralord metrics``: evaluation from the command line.

    contralord evaluate --checkpoint runs/cpu [--protocol all-factors] [--set eval.num_train=2000]
    contralord metrics --codes C.npy --factors F.npy [--test-codes C2.npy --test-factors F2.npy] [--seed S]
    contralord metrics --content A.npy --residual B.npy

``metrics`` prints one JSON object. Without ``--test-codes`` the codes are split in order: the first
two thirds fit the predictors, the last third scores them (the output says so).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from contralord.config import ContraLordConfig, parse_set_args


def _fail(message: str) -> int:
    print(f"contralord: error: {message}", file=sys.stderr)
    return 2


def _load_npy(path: str | None, flag: str) -> np.ndarray | None:
    if path is None:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(f"{flag}: file {path!r} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{flag}: {path!r} is not a .npy array ({error})") from None


def run_metrics(args: argparse.Namespace) -> int:
    from contralord import metrics

    try:
        arrays = {flag: _load_npy(getattr(args, flag.replace("-", "_")), f"--{flag}")
                  for flag in ("codes", "factors", "test-codes", "test-factors", "content", "residual")}
        result: dict = {}
        if arrays["content"] is not None or arrays["residual"] is not None:
            if arrays["content"] is None or arrays["residual"] is None:
                return _fail("--content and --residual go together")
            result |= metrics.compute_smoothness(arrays["content"], arrays["residual"])
        if arrays["codes"] is not None or arrays["factors"] is not None:
            result |= _disentanglement(arrays, args.seed)
        if not result:
            return _fail("nothing to compute: give --codes/--factors or --content/--residual")
    except (ValueError, FileNotFoundError) as error:
        return _fail(str(error))
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _disentanglement(arrays: dict, seed: int) -> dict:
    from contralord import metrics

    codes, factors = arrays["codes"], arrays["factors"]
    if codes is None or factors is None:
        raise ValueError("--codes and --factors go together")
    test_codes, test_factors = arrays["test-codes"], arrays["test-factors"]
    if (test_codes is None) != (test_factors is None):
        raise ValueError("--test-codes and --test-factors go together")
    split = "given"
    if test_codes is None:
        if len(codes) != len(factors):
            raise ValueError(f"--codes has {len(codes)} rows but --factors has {len(factors)}")
        cut = (2 * len(codes)) // 3
        codes, test_codes, factors, test_factors = codes[:cut], codes[cut:], factors[:cut], factors[cut:]
        split = f"first {cut} rows fit, last {len(test_codes)} score"
    result = {"split": split}
    result |= metrics.compute_mig(codes, factors)
    result |= metrics.compute_sap(codes, factors, test_codes, test_factors)
    result |= metrics.compute_dci(codes, factors, test_codes, test_factors, random_state=seed)
    return result


def run_evaluate(args: argparse.Namespace) -> int:
    from contralord import checkpoint
    from contralord.encoder_stage import CHECKPOINT, build_online
    from contralord.evaluation import evaluate
    from contralord.runtime import resolve_device
    from contralord.trainer import build_data

    folder = Path(args.checkpoint)
    try:
        cfg = _run_config(folder, args)
        saved = checkpoint.load(folder / "checkpoints" / CHECKPOINT, required=("online",))
        data = build_data(cfg)
    except (ValueError, FileNotFoundError) as error:
        return _fail(str(error))
    device = resolve_device(cfg.run.device)
    online = build_online(cfg, data, latent=None)
    online.load_state_dict(saved["online"])
    result = evaluate(cfg, online.to(device), data, folder, device)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _run_config(folder: Path, args: argparse.Namespace) -> ContraLordConfig:
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint: {path} does not exist (not a folder written by contralord train)")
    overrides = parse_set_args(args.set)
    bad = [k for k in overrides if not k.startswith("eval.") and k not in ("run.device", "run.threads")]
    if bad:
        raise ValueError(f"--set {bad[0]}: evaluate only takes eval.*, run.device and run.threads")
    if args.protocol:
        overrides["eval.protocol"] = args.protocol
    return ContraLordConfig.from_saved(json.loads(path.read_text()), overrides)
