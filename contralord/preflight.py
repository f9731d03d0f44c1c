"""Checks on a run's inputs that need no model and no training: output folders, file headers, device,
and the memory of the tables a config asks for. Each failure is one ``ConfigError`` line naming the key
or flag, the expected and the found value (docs/BAD_INPUT.md); ``trainer.prepare`` runs them first."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contralord.config import ConfigError, ContraLordConfig

if TYPE_CHECKING:
    from contralord.data import ImageFactorData
# The checks on data import torch where they run, so that the path and file checks above them serve
# ablations/ (which loads no torch) too.

# torch.save writes a zip (PK..); the legacy format starts with a pickle protocol byte (0x80).
TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def check_out(out_dir: str | Path, resume: bool) -> Path:
    """``--out`` as the real folder the run will write (symlinks resolved first, so a link cannot point the
    run at someone else's folder): new or empty, or holding one of our runs (``config.json``) with --resume.
    A non-empty folder that is not a run of ours is refused: its files would be overwritten."""
    if not str(out_dir).strip():
        raise ConfigError("--out: expected a folder path, got ''")
    given = Path(out_dir)
    check_name_lengths(given, "--out")
    out = given.resolve()
    shown = f"{given} (-> {out})" if out != given.absolute() else str(given)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {shown} is a file, expected a folder (new, or a run's folder with --resume)")
    check_creatable(out, "--out")
    ours = (out / "config.json").is_file()
    if ours and not resume:
        raise FileExistsError(f"--out: {shown} already holds a run (config.json); pass --resume to continue it, "
                              f"or another --out (nothing was changed)")
    if not ours and out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"--out: {shown} is a non-empty folder that holds no contralord run (no config.json); "
                          f"expected a new or empty folder (nothing was changed)")
    link = next((p for p in out.rglob("*") if p.is_symlink()), None) if ours else None
    if link is not None:  # checkpoints, caches and grids would be written wherever it points
        raise ConfigError(f"--out: {link} in the run folder is a symbolic link (to {os.readlink(link)}); a run "
                          f"folder holds only its own files (nothing was changed)")
    return out


NAME_MAX = 255  # bytes in one name of a path (Linux, macOS); a longer one is ENAMETOOLONG wherever it is touched


def check_name_lengths(path: Path, key: str) -> None:
    """Every name in ``path`` fits in ``NAME_MAX`` bytes (checked before the path is touched: even ``exists()``
    raises on a longer one)."""
    long = next((part for part in Path(path).parts if len(os.fsencode(part)) > NAME_MAX), None)
    if long is not None:
        raise ConfigError(f"{key}: the name {long[:40]}... is {len(os.fsencode(long))} bytes long, expected at most "
                          f"{NAME_MAX} (the file system's limit for one name in a path)")


def check_creatable(folder: Path, key: str) -> None:
    """``folder`` exists as a folder, or can be created: its nearest existing ancestor is a writable folder and
    every name on the way fits the file system (a 300-character name used to end in an OS errno)."""
    check_name_lengths(folder, key)
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if existing == folder and not folder.is_dir():
        raise ConfigError(f"{key}: {folder} is a file, expected a folder")
    if not existing.is_dir():
        raise ConfigError(f"{key}: {existing} is a file, so the folder {folder} cannot be created in it")
    problem = unwritable_reason(existing)
    if problem:
        raise ConfigError(f"{key}: cannot write in {existing} ({problem})")


def unwritable_reason(folder: Path) -> str:
    """'' when ``folder`` may be written, else why not. ``os.access`` alone says yes to root everywhere, so a
    folder on a read-only mount, or with no write bit at all (someone marked it read-only), is refused for
    root too: root could write there, but the folder's owner said not to."""
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        return "a read-only file system"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied for this user"
    mode = folder.stat().st_mode
    if os.geteuid() == 0 and not mode & 0o222:
        return f"mode {mode & 0o777:04o}: no one may write there, and root is not let past that"
    return ""


def read_run_config(path: Path) -> dict[str, Any]:
    """A run's config.json as flat keys, or a ConfigError naming the file."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: expected a JSON object written by contralord train, cannot read it "
                          f"({type(error).__name__})") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{path}: expected a JSON object written by contralord train, found {type(saved).__name__}")
    return saved


def check_weight_file(key: str, path: str) -> None:
    """A user-supplied weights file exists and starts like a torch checkpoint (a cheap header check)."""
    if not Path(path).is_file():
        raise ConfigError(f"{key}: file {path!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(TORCH_MAGIC):
        raise ConfigError(f"{key}: {path!r} is not a torch weights file (expected torch.save's zip format, "
                          f"found {Path(path).stat().st_size} bytes starting {head!r})")


def check_device(cfg: ContraLordConfig) -> None:
    """``run.device`` names a device this machine has (never a silent fallback to the CPU), and
    ``run.threads`` is at most 4 threads per core (torch crashes on absurd counts)."""
    from contralord.runtime import resolve_device

    cores = os.cpu_count() or 1
    if cfg.run.threads > 4 * cores:
        raise ConfigError(f"run.threads: expected at most {4 * cores} (4 per core, {cores} cores here), "
                          f"got {cfg.run.threads}")
    try:
        device = resolve_device(cfg.run.device)
    except (ValueError, RuntimeError) as error:
        raise ConfigError(str(error) if str(error).startswith("run.device") else
                          f"run.device: {cfg.run.device!r} is not a torch device ({error})") from None
    if device.type == "cuda" and device.index is not None:
        import torch

        if device.index >= torch.cuda.device_count():
            raise ConfigError(f"run.device: expected cuda:0 to cuda:{torch.cuda.device_count() - 1}, "
                              f"got {cfg.run.device!r}")


def _code_table(cfg: ContraLordConfig, data: ImageFactorData) -> tuple[str, int, str]:
    """(key, bytes, what) of stage 1's per-value table: class codes, or the labelled factors' codes plus
    their classifier's output layer (one row per value)."""
    from contralord import labels
    from contralord.models.encoders import build_backbone

    lat = cfg.latent
    if labels.structure(cfg, data) == "class":
        return ("data.class_factor", 16 * data.num_classes * lat.class_dim,
                f"{data.num_classes} values of the class factor (its largest value + 1; values must be indices "
                f"0..C-1) x latent.class_dim={lat.class_dim}")
    values = sum(labels.resolve(cfg, data).sizes)
    _, features = build_backbone("lord", data.channels, cfg.data.image_size, None, width=lat.classifier_width)
    return ("data.labelled_factors", 16 * values * (lat.factor_dim + features),
            f"{values} values of the labelled factors (largest value + 1 each) x (latent.factor_dim + "
            f"{features} classifier features)")


def check_sizes(cfg: ContraLordConfig, data: ImageFactorData, needs_latent: bool) -> None:
    """The largest tables a config allocates fit ``data.max_array_gib``: stage 1's class and per-image
    codes (with a gradient and Adam's two moments: 4 copies) and stage 2's two queues."""
    cap, lat = cfg.data.max_array_gib * 2**30, cfg.latent
    dims = lat.content_dim + lat.residual_dim
    tables = [("encoder.queue_size", 4 * cfg.encoder.queue_size * dims,
               f"two queues of K={cfg.encoder.queue_size} x {dims} dims")]
    if needs_latent:
        tables = [_code_table(cfg, data), ("latent.content_dim", 16 * len(data) * dims,
                                           f"{len(data)} images x content_dim + residual_dim = {dims}"), *tables]
    for key, nbytes, what in tables:
        if nbytes > cap:
            raise ConfigError(f"{key}: {what} needs {nbytes / 2**30:.3g} GiB, over data.max_array_gib="
                              f"{cfg.data.max_array_gib:g} (raise it only if the machine has that memory)")


def check_against_data(cfg: ContraLordConfig, data: ImageFactorData) -> None:
    """What used to fail only after training, checked before it: the user's weight files load into the
    modules that will use them, and the end-of-run evaluation can score this data (``check_evaluation``)."""
    check_weight_contents(cfg, data)
    check_evaluation(cfg, data)


def check_weight_contents(cfg: ContraLordConfig, data: ImageFactorData) -> None:
    """Each user weight file loads, with torch's ``weights_only`` loader (a pickled module is refused, nothing
    runs), into the module that will use it: the encoder's backbone (``encoder.pretrained_path``, at the start
    of stage 2), LPIPS' AlexNet and FID's Inception-v3 (``eval.lpips_weights``, ``eval.inception_weights``,
    after training). The loaders are the ones training uses; their key and shape checks raise here."""
    from contralord.metrics.inception import InceptionFeatures
    from contralord.metrics.perceptual import build_lpips
    from contralord.models.encoders import build_backbone

    enc = cfg.encoder
    loaders = {"encoder.pretrained_path": lambda path: build_backbone(
                   enc.backbone, data.channels, cfg.data.image_size, path, width=enc.backbone_width),
               "eval.lpips_weights": lambda path: build_lpips("alex", weights_path=path),
               "eval.inception_weights": lambda path: InceptionFeatures(path)}
    for key, load in loaders.items():
        path = getattr(cfg.encoder if key.startswith("encoder.") else cfg.eval, key.partition(".")[2])
        if path:
            _load_weights(key, path, load)


def _load_weights(key: str, path: str, load) -> None:
    import pickle

    try:
        load(path)
    except pickle.UnpicklingError:
        raise ConfigError(f"{key}: {path!r} holds Python objects besides tensors (a pickled module?), which torch's "
                          f"weights_only loader refuses; nothing was run. Save a state dict instead") from None
    except (AttributeError, TypeError) as error:  # a bare tensor or a list where a state dict belongs
        raise ConfigError(f"{key}: {path!r} does not hold a state dict (a mapping of parameter names to tensors; "
                          f"{type(error).__name__}: {str(error)[:100]})") from None
    except (ValueError, RuntimeError, KeyError, OSError, EOFError) as error:
        found = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"{key}: {path!r} does not load into the module it is for ({found[:200]})") from None


def check_evaluation(cfg: ContraLordConfig, data: ImageFactorData) -> None:
    """The end-of-run evaluation can score this data. The linear probe's ``eval.num_train`` training images hold
    2 classes (``_check_probe``); under all-factors, the held-out images and their split (``_check_all_factors``);
    under partial-labels, each labelled factor takes at least 2 values in the kept
    images (after ``data.factor_filter``), and the 20% test split of the scored images (``eval.num_train +
    eval.num_test`` at most) holds at least as many images as the largest labelled factor has values, its
    80% at least 2 (sklearn's split; the metrics' classifiers fail otherwise, after training)."""
    import math

    from contralord import labels
    from contralord.evaluation import SPLIT_TEST

    if not cfg.eval.enabled:
        return
    if cfg.eval.inception_weights and cfg.eval.num_test < 2:  # FID's covariance of the first num_test images
        raise ConfigError(f"eval.num_test: FID (eval.inception_weights) compares the statistics of eval.num_test "
                          f"images, expected at least 2, got {cfg.eval.num_test}")
    if cfg.eval.protocol == "all-factors" or data.factors is None:
        _check_all_factors(cfg, data)
        _check_probe(cfg, data)
        return
    found = labels.resolve(cfg, data)
    for name, column in zip(found.names, found.columns, strict=True):
        present = data.factors[:, column].unique()
        if len(present) < 2:
            after = f" after data.factor_filter={cfg.data.factor_filter!r}" if cfg.data.factor_filter else ""
            raise ConfigError(f"data.labelled_factors: factor {name!r} takes only the value {int(present[0])} in "
                              f"the kept images{after}; a scored factor needs at least 2 values")
    scored = min(len(data), cfg.eval.num_train + cfg.eval.num_test)
    test = math.ceil(SPLIT_TEST * scored)
    values = max(found.sizes)
    if test < values or scored - test < 2:
        raise ConfigError(f"eval.num_train/eval.num_test: the metrics score {scored} images (min of the {len(data)} "
                          f"kept and num_train + num_test = {cfg.eval.num_train + cfg.eval.num_test}); their "
                          f"{SPLIT_TEST:.0%} test split of {test} must hold at least {values} (the values of the "
                          f"largest labelled factor) and the rest at least 2")
    _check_probe(cfg, data)


def _check_probe(cfg: ContraLordConfig, data: ImageFactorData) -> None:
    """The linear probe (both protocols) fits a classifier of the class on ``min(eval.num_train, N)`` training
    images drawn as ``evaluation._linear_probe`` draws them: they must hold at least 2 classes when the data has
    2 (sklearn's logistic regression fails on one class, after training)."""
    import torch

    if len(data.classes.unique()) < 2:
        return  # the probe is skipped (one class in the held-out images too)
    n = min(cfg.eval.num_train, len(data))
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.run.seed))[:n]
    drawn = data.classes[index].unique()
    if len(drawn) < 2:
        raise ConfigError(f"eval.num_train: the linear probe is fitted on {n} training image(s) (min of "
                          f"eval.num_train={cfg.eval.num_train} and the {len(data)} kept), all of class "
                          f"{int(drawn[0])}; it needs at least 2 classes: raise eval.num_train")


def _check_all_factors(cfg: ContraLordConfig, data: ImageFactorData) -> None:
    """The all-factors protocol scores held-out images (``evaluation.heldout_dataset``, built here as the
    evaluation builds it: factors, not codes) in ``evaluation._disentanglement``'s split: the first
    ``min(eval.num_test, M // 3)`` of them tested, the rest fitted. Smoothness needs 2 images; each factor that
    varies (the class aside) needs 2 values among the fitted images, and the tested ones at least as many images
    as a factor has values there (the metrics' own checks, which used to fail after training)."""
    import numpy as np

    from contralord.evaluation import _informative_factors, heldout_dataset, scored_order

    wanted = cfg.eval.num_train + cfg.eval.num_test
    held, heldout = heldout_dataset(cfg, data, wanted)
    size = len(held)
    what = (f"the all-factors evaluation scores {size} {'held-out' if heldout else 'training'} images (at most "
            f"eval.num_train + eval.num_test = {wanted})")
    if size < 2:
        raise ConfigError(f"eval.num_train/eval.num_test: {what}; it needs at least 2")
    if held.factors is None:
        return
    factors, names = _informative_factors(held)
    if not names:
        raise ConfigError(f"data.factor_filter: {what}, in which no factor but the class takes 2 values "
                          f"(data.factor_filter={cfg.data.factor_filter!r}); the metrics need one that varies")
    factors = factors[scored_order(cfg, size, size).numpy()]
    n_test = min(cfg.eval.num_test, size // 3)
    fitted = factors[n_test:]
    counts = [len(np.unique(fitted[:, j])) for j in range(len(names))]
    if min(counts) < 2 or n_test < max(counts):
        name, values = names[int(np.argmax(counts))], max(counts)
        if min(counts) < 2:
            name, values = names[int(np.argmin(counts))], min(counts)
        raise ConfigError(f"eval.num_train/eval.num_test: {what}, {n_test} of them tested (min of eval.num_test and "
                          f"a third) and {len(fitted)} fitted; factor {name!r} takes {values} value(s) in the fitted "
                          f"ones, expected at least 2 there and at least as many tested images as values: raise "
                          f"eval.num_test (and eval.num_train)")
