"""``contralord evaluate`` and ``contralord metrics``: evaluation from the command line.

    contralord evaluate --checkpoint runs/cpu [--protocol all-factors] [--set eval.num_train=2000] [--overwrite]
    contralord metrics --codes C.npy --factors F.npy [--test-codes C2.npy --test-factors F2.npy] [--seed S]
    contralord metrics --content A.npy --residual B.npy

``metrics`` prints one JSON object. Without ``--test-codes`` the codes are split in order: the first
two thirds fit the predictors, the last third scores them (the output says so).

``evaluate`` writes beside the training run, into ``<run>/evaluate-<protocol>/``, so the run's own
``metrics.json`` (which its ``summary.json`` agrees with) is never replaced; an existing
``evaluate-<protocol>/metrics.json`` is kept unless ``--overwrite`` is given.
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


NPY_MAGIC = b"\x93NUMPY"


def _load_npy(path: str | None, flag: str) -> np.ndarray | None:
    """A plain numeric .npy array; its header is checked against the file before anything is allocated."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(f"{flag}: file {path!r} does not exist")
    size = Path(path).stat().st_size
    try:
        with open(path, "rb") as f:
            if f.read(6) != NPY_MAGIC:
                raise ValueError(f"{flag}: {path!r} is not a .npy array (expected a file starting "
                                 f"\\x93NUMPY as np.save writes, found {size} bytes of something else)")
            f.seek(0)
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            offset = f.tell()
    except (OSError, EOFError, ValueError) as error:
        raise ValueError(str(error) if str(error).startswith(flag) else
                         f"{flag}: {path!r} has a damaged .npy header ({type(error).__name__}: {error})") from None
    return _read_npy(path, flag, shape, dtype, size - offset)


def _read_npy(path: str, flag: str, shape: tuple, dtype: np.dtype, available: int) -> np.ndarray:
    if dtype.hasobject or dtype.kind not in "biuf":
        raise ValueError(f"{flag}: {path!r} holds {dtype} values, expected numbers (objects are never unpickled)")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared > available:
        raise ValueError(f"{flag}: {path!r} declares shape {shape} ({declared} bytes) but holds {available} "
                         f"bytes of data (truncated or forged header)")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as error:
        raise ValueError(f"{flag}: {path!r} is not a readable .npy array ({type(error).__name__})") from None


def run_metrics(args: argparse.Namespace) -> int:
    from contralord import metrics

    try:
        arrays = {flag: _load_npy(getattr(args, flag.replace("-", "_")), f"--{flag}")
                  for flag in ("codes", "factors", "test-codes", "test-factors", "content", "residual")}
        result: dict = {}
        if arrays["content"] is not None or arrays["residual"] is not None:
            if arrays["content"] is None or arrays["residual"] is None:
                return _fail("--content and --residual go together")
            if len(arrays["content"]) != len(arrays["residual"]):
                return _fail(f"--content has {len(arrays['content'])} rows but --residual has "
                             f"{len(arrays['residual'])}: expected one row per image in both")
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
    from contralord.run.file_checks import check_creatable
    from contralord.run.preflight import check_device
    from contralord.setup import Setup, build_data
    from contralord.stage2.encoder_stage import CHECKPOINT
    from contralord.training import checkpoint

    folder = Path(args.checkpoint)
    try:
        cfg = _run_config(folder, args)
        out = folder / f"evaluate-{cfg.eval.protocol}"
        if (out / "metrics.json").exists() and not args.overwrite:
            raise FileExistsError(f"--checkpoint: {out / 'metrics.json'} exists (an earlier evaluate); pass "
                                  f"--overwrite to replace it (the training run's own metrics.json is never touched)")
        check_device(cfg)
        check_creatable(out, "--checkpoint")
        saved = checkpoint.load(folder / "checkpoints" / CHECKPOINT, required=("online",))
        setup = Setup.of(cfg, build_data(cfg), draw_labels=False)  # scores a saved run: reads no label
        online = _restore_online(setup, saved["online"], folder)
    except (ValueError, OSError) as error:
        return _fail(str(error))
    return _evaluate_into(setup, online, out)


def _restore_online(setup, state: dict, folder: Path):
    from contralord.stage2.encoder_stage import build_online

    online = build_online(setup, latent=None)
    try:
        online.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"--checkpoint: {folder} holds weights of another architecture than its config.json "
                         f"({first[:160]})") from None
    return online


def _evaluate_into(setup, online, out: Path) -> int:
    from contralord.evaluation import evaluate
    from contralord.training.runtime import resolve_device

    device = resolve_device(setup.cfg.run.device)
    try:
        result = evaluate(setup, online.to(device), out, device)
    except KeyboardInterrupt:
        print(f"\ncontralord: interrupted; the training run is unchanged, {out} may be incomplete", file=sys.stderr)
        return 130
    print(json.dumps(result, indent=2, sort_keys=True))
    print(f"wrote {out / 'metrics.json'} (beside the training run; its own metrics.json is unchanged)",
          file=sys.stderr)
    return 0


def _run_config(folder: Path, args: argparse.Namespace) -> ContraLordConfig:
    from contralord.run.file_checks import read_run_config

    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint: {path} does not exist (not a folder written by contralord train)")
    overrides = parse_set_args(args.set)
    bad = [k for k in overrides if not k.startswith("eval.") and k not in ("run.device", "run.threads")]
    if bad:
        raise ValueError(f"--set {bad[0]}: evaluate only takes eval.*, run.device and run.threads")
    if args.protocol:
        overrides["eval.protocol"] = args.protocol
    return ContraLordConfig.from_saved(read_run_config(path), overrides)
