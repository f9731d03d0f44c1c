"""Every check on a run's input that needs no training, run before the first step, and the run's ``Setup``.

``prepare(cfg, out_dir, resume)`` checks the device and the user's files, builds the data, checks the batch and queue
sizes and the settings' combinations against it, resolves the config on it (``Setup.of``: the labelled factors), then
checks the VAE baseline's and the labelled-factor settings, the tables' memory, the backbone, the user's weights and
the evaluation, an earlier run in ``out_dir``, a cached stage 1 and a ladder this run extends, in that order; the
trainer then only trains. Each failure is one ``ConfigError`` line naming the key, the
expected and the found value (docs/BAD_INPUT.md). Path and file checks are in ``file_checks``, those of the end of a
run (weights, evaluation) in ``evaluation_checks``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from contralord.config import ConfigError, ContraLordConfig
from contralord.data import ImageFactorData
from contralord.latent_result import ARTIFACT, latent_key, load_latent
from contralord.models.encoders import build_backbone
from contralord.models.generator import SUPPORTED_IMAGE_SIZES
from contralord.run.evaluation_checks import check_against_data
from contralord.run.file_checks import check_creatable, check_weight_file, read_run_config
from contralord.run.ladder import extends, load_extension
from contralord.schedules import branch_start
from contralord.setup import Setup, build_data, needs_latent
from contralord.stage2.encoder_stage import CHECKPOINT, RESUME_IGNORED
from contralord.training import checkpoint, distributed, sampling
from contralord.training.runtime import resolve_device


def prepare(cfg: ContraLordConfig, out_dir: str | Path, resume: bool = False) -> Setup:
    """Every check on the user's input, before any training: returns the run's ``Setup``. (The CLI also runs
    ``check_out`` first; a sweep trial's folder is the sweep's, so it may hold an earlier attempt.)"""
    out_dir = Path(out_dir)
    check_device(cfg)
    check_files(cfg)
    data = build_data(cfg)
    validate_against_data(cfg, len(data))
    setup = Setup.of(cfg, data)  # the labelled factors and data.num_labels, checked against the data
    check_vae(setup)
    check_labelled_settings(setup)
    check_sizes(setup)
    check_backbone(cfg, data)
    check_against_data(setup)  # weight files and the evaluation: they used to fail after training
    check_resume(setup.cfg, out_dir, resume)
    check_cached_stage1(setup, out_dir)
    if extends(cfg, out_dir):
        check_extension(setup)
    return setup


def validate_against_data(cfg: ContraLordConfig, num_images: int) -> None:
    """Checks that need the dataset's size; raise ConfigError naming the key, with the numbers."""
    for stage in ("latent", "encoder") if needs_latent(cfg) else ("encoder",):
        batch = getattr(cfg, stage).batch_size
        if batch > num_images:
            raise ConfigError(f"{stage}.batch_size: {batch} is larger than the dataset ({num_images} images)")
        if batch % distributed.world_size():
            raise ConfigError(f"{stage}.batch_size: {batch} does not split over {distributed.world_size()} workers")
    uses_queue = cfg.encoder.negatives == "queue" and (cfg.loss.con > 0 or cfg.loss.res > 0)
    k = cfg.encoder.queue_size
    if uses_queue and k >= num_images:
        message = (f"encoder.queue_size: K={k} >= {num_images} training images, so every image's own earlier "
                   f"key sits in the queue as a false negative")
        if not cfg.encoder.allow_large_queue:
            raise ConfigError(message + " (lower K, or set encoder.allow_large_queue=true to run anyway)")
        warnings.warn(message, stacklevel=2)
    if needs_latent(cfg) and cfg.data.image_size not in SUPPORTED_IMAGE_SIZES:
        raise ConfigError(f"data.image_size: the generator supports {sorted(SUPPORTED_IMAGE_SIZES)}, "
                          f"got {cfg.data.image_size}")
    if cfg.eval.scored_code == "classifier" and not (needs_latent(cfg) and cfg.eval.protocol == "partial-labels"):
        raise ConfigError("eval.scored_code: classifier scores stage 1's labelled-factor classifiers; it needs "
                          "eval.protocol=partial-labels and a stage 1 (loss.rec or loss.sup > 0, no VAE)")
    if cfg.encoder.content_head != "learned" and not (needs_latent(cfg) and cfg.encoder.model == "contralord"):
        raise ConfigError(f"encoder.content_head: {cfg.encoder.content_head} copies stage 1's classifiers; it needs "
                          "a stage 1 (loss.rec or loss.sup > 0) and encoder.model=contralord")
    if cfg.encoder.label_aware_negatives and not (needs_latent(cfg) and uses_queue and cfg.loss.con > 0
                                                  and cfg.encoder.model == "contralord"):
        raise ConfigError("encoder.label_aware_negatives: masks L_con's queue by stage 1's labelled factors; it needs "
                          "loss.con > 0, encoder.negatives=queue and a stage 1 (loss.rec or loss.sup > 0)")
    budget, _ = sampling.encoder_steps(cfg, num_images)
    cooldown = branch_start(budget, cfg.encoder.decay_fraction)
    if cfg.encoder.schedule == "wsd" and cfg.encoder.warmup_steps > cooldown:
        raise ConfigError(f"encoder.warmup_steps: {cfg.encoder.warmup_steps} runs into the cooldown, which starts "
                          f"at step {cooldown} of {budget}")
    if cfg.encoder.mask_own_keys and not (uses_queue and cfg.encoder.model == "contralord"):
        raise ConfigError("encoder.mask_own_keys: masks the queue's keys of the anchor's own image; it needs "
                          "encoder.negatives=queue and loss.con or loss.res > 0")
    if cfg.encoder.finetune_generator and cfg.loss.rec == 0:
        raise ConfigError("encoder.finetune_generator: needs loss.rec > 0 (only L_rec trains the generator)")


def check_labelled_settings(setup: Setup) -> None:
    """The settings that read stage 1's labelled-factor classifiers need the ``factors`` structure."""
    cfg = setup.cfg
    for key, value, default in (("eval.scored_code", cfg.eval.scored_code, "encoder"),
                                ("encoder.content_head", cfg.encoder.content_head, "learned"),
                                ("encoder.label_aware_negatives", cfg.encoder.label_aware_negatives, False)):
        if value != default and setup.structure != "factors":
            raise ConfigError(f"{key}: {value} needs latent.structure=factors (stage 1's labelled-factor "
                              f"classifiers), got {setup.structure}")


def check_vae(setup: Setup) -> None:
    """encoder.model=vae (Locatello et al.) needs the labelled-factor codes and only its own losses."""
    cfg = setup.cfg
    if cfg.encoder.model != "vae":
        return
    if setup.structure != "factors":
        raise ConfigError("encoder.model: vae needs latent.structure=factors (labelled factors), got "
                          f"{setup.structure}")
    on = [k for k in ("sup", "con", "res") if getattr(cfg.loss, k) > 0]
    if on or cfg.loss.rec <= 0:
        raise ConfigError(f"encoder.model: vae trains with loss.rec > 0, loss.kl and loss.label only; "
                          f"set {', '.join(f'loss.{k}=0' for k in on) or 'loss.rec > 0'}")


def check_backbone(cfg: ContraLordConfig, data: ImageFactorData) -> None:
    """The backbone accepts this image size and channel count (a dry build, no weights loaded)."""
    enc = cfg.encoder
    build_backbone(enc.backbone, data.channels, cfg.data.image_size, None, width=enc.backbone_width)


def check_files(cfg: ContraLordConfig) -> None:
    """User-supplied weight files exist (the dataset file is checked by its loader)."""
    user_files = (("encoder.pretrained_path", cfg.encoder.pretrained_path),
                  ("latent.vgg_weights", cfg.latent.vgg_weights if cfg.latent.recon_loss == "perceptual" else ""),
                  ("eval.inception_weights", cfg.eval.inception_weights),
                  ("eval.lpips_weights", cfg.eval.lpips_weights))
    for key, path in user_files:
        if path:
            check_weight_file(key, path)
    if cfg.latent.recon_loss == "perceptual" and not cfg.latent.vgg_weights:
        raise ConfigError("latent.vgg_weights: recon_loss=perceptual needs a torchvision vgg16 weights file")
    if cfg.run.latent_cache:
        check_creatable(Path(cfg.run.latent_cache), "run.latent_cache")


def check_resume(cfg: ContraLordConfig, out_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run by accident, and to resume a run of another config."""
    path = out_dir / "checkpoints" / CHECKPOINT
    if not path.is_file():
        if resume and (out_dir / "config.json").is_file():  # interrupted before the first stage-2 checkpoint
            checkpoint.check_compatible(read_run_config(out_dir / "config.json"), cfg.to_flat_dict(),
                                        out_dir / "config.json", ignore=RESUME_IGNORED)
        return
    if not resume:
        raise FileExistsError(f"{path}: a run already exists here (pass --resume to continue it, or another --out)")
    saved = checkpoint.load(path, required=("config",))["config"]
    checkpoint.check_compatible(saved, cfg.to_flat_dict(), path, ignore=RESUME_IGNORED)


def check_cached_stage1(setup: Setup, out_dir: Path) -> None:
    """A cached stage-1 artifact this run would reuse loads (``load_latent``: the checked loader); a corrupt one is
    one line naming its folder, before anything is written (it used to end in a traceback with --out created)."""
    cfg = setup.cfg
    if needs_latent(cfg):
        cached = Path(cfg.run.latent_cache or out_dir / "latent_cache") / latent_key(setup) / ARTIFACT
        if cached.is_file():
            load_latent(cached)


def check_extension(setup: Setup) -> None:
    """The state ``run.extend_from`` names loads, is of this config (``ladder.load_extension``), and was trained on
    this run's stage 1."""
    cfg = setup.cfg
    state = load_extension(cfg)
    key = latent_key(setup) if needs_latent(cfg) else None
    if key is not None and state.get("latent_key") not in (None, key):
        raise ConfigError(f"run.extend_from: {cfg.run.extend_from} was trained on stage 1 {state['latent_key']}, "
                          f"this run's is {key} (another seed, data or stage-1 config)")


def check_device(cfg: ContraLordConfig) -> None:
    """``run.device`` names a device this machine has (never a silent fallback to the CPU), and
    ``run.threads`` is at most 4 threads per core (torch crashes on absurd counts)."""
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
        if device.index >= torch.cuda.device_count():
            raise ConfigError(f"run.device: expected cuda:0 to cuda:{torch.cuda.device_count() - 1}, "
                              f"got {cfg.run.device!r}")


def _code_table(setup: Setup) -> tuple[str, int, str]:
    """(key, bytes, what) of stage 1's per-value table: class codes, or the labelled factors' codes plus
    their classifier's output layer (one row per value)."""
    cfg, data, lat = setup.cfg, setup.data, setup.cfg.latent
    if setup.structure == "class":
        return ("data.class_factor", 16 * data.num_classes * lat.class_dim,
                f"{data.num_classes} values of the class factor (its largest value + 1; values must be indices "
                f"0..C-1) x latent.class_dim={lat.class_dim}")
    values = sum(setup.labelled.sizes)
    _, features = build_backbone("lord", data.channels, cfg.data.image_size, None, width=lat.classifier_width)
    return ("data.labelled_factors", 16 * values * (lat.factor_dim + features),
            f"{values} values of the labelled factors (largest value + 1 each) x (latent.factor_dim + "
            f"{features} classifier features)")


def check_sizes(setup: Setup) -> None:
    """The largest tables a config allocates fit ``data.max_array_gib``: stage 1's class and per-image
    codes (with a gradient and Adam's two moments: 4 copies) and stage 2's two queues."""
    cfg, data = setup.cfg, setup.data
    cap, lat = cfg.data.max_array_gib * 2**30, cfg.latent
    dims = lat.content_dim + lat.residual_dim
    tables = [("encoder.queue_size", 4 * cfg.encoder.queue_size * dims,
               f"two queues of K={cfg.encoder.queue_size} x {dims} dims")]
    if needs_latent(cfg):
        tables = [_code_table(setup), ("latent.content_dim", 16 * len(data) * dims,
                                           f"{len(data)} images x content_dim + residual_dim = {dims}"), *tables]
    for key, nbytes, what in tables:
        if nbytes > cap:
            raise ConfigError(f"{key}: {what} needs {nbytes / 2**30:.3g} GiB, over data.max_array_gib="
                              f"{cfg.data.max_array_gib:g} (raise it only if the machine has that memory)")
