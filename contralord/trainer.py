"""End-to-end ContraLORD training (Algorithm 1): stage 1 once (cached), then stage 2.

``train(cfg, out_dir)`` works in a notebook or a test with no Ray and no MLflow; the sweep service
injects a ``Runtime`` (device, DDP wrapping, report hook) and a ``MetricsLogger``. Every check that
can fail on the user's input runs before the first training step.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from contralord import checkpoint, distributed, labels, machine, sampling
from contralord.config import ConfigError, ContraLordConfig, parse_factor_filter
from contralord.data import ImageFactorData, build_dataset
from contralord.encoder_stage import CHECKPOINT, RESUME_IGNORED, EncoderTrainer, train_encoders
from contralord.encoding import CodeCache
from contralord.evaluation import evaluate
from contralord.ladder import RungRecords, add_top_rung, load_extension
from contralord.latent_factors import load_factor_codes
from contralord.latent_stage import ARTIFACT, LatentResult, latent_key, load_latent, train_latent
from contralord.loop import final_names
from contralord.models.encoders import build_backbone
from contralord.models.generator import SUPPORTED_IMAGE_SIZES
from contralord.preflight import (
    check_against_data,
    check_creatable,
    check_device,
    check_sizes,
    check_weight_file,
    read_run_config,
)
from contralord.runtime import LocalRuntime
from contralord.schedules import branch_start, parse_rungs
from contralord.tracking import MetricsLogger, NullLogger


def needs_latent(cfg: ContraLordConfig) -> bool:
    """Stage 1 is needed when stage 2 reconstructs through G or regresses the stage-1 codes."""
    if cfg.encoder.model == "vae":  # Locatello et al.'s baseline trains its own decoder
        return False
    contrastive_on_codes = (cfg.loss.con > 0 or cfg.loss.res > 0) and cfg.encoder.anchor == "stage1"
    return cfg.loss.rec > 0 or cfg.loss.sup > 0 or contrastive_on_codes


def build_data(cfg: ContraLordConfig) -> ImageFactorData:
    d = cfg.data
    return build_dataset(d.name, d.path or None, d.image_size, d.size, cfg.run.seed,
                         class_factor=d.class_factor or None,
                         factor_filter=parse_factor_filter(d.factor_filter) or None, split=d.split,
                         max_array_bytes=int(d.max_array_gib * 2**30))


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


def check_vae(cfg: ContraLordConfig, data: ImageFactorData) -> None:
    """encoder.model=vae (Locatello et al.) needs the labelled-factor codes and only its own losses."""
    if cfg.encoder.model != "vae":
        return
    if labels.structure(cfg, data) != "factors":
        raise ConfigError("encoder.model: vae needs latent.structure=factors (labelled factors), got "
                          f"{labels.structure(cfg, data)}")
    on = [k for k in ("sup", "con", "res") if getattr(cfg.loss, k) > 0]
    if on or cfg.loss.rec <= 0:
        raise ConfigError(f"encoder.model: vae trains with loss.rec > 0, loss.kl and loss.label only; "
                          f"set {', '.join(f'loss.{k}=0' for k in on) or 'loss.rec > 0'}")


def check_backbone(cfg: ContraLordConfig, data: ImageFactorData) -> None:
    """The backbone accepts this image size and channel count (a dry build, no weights loaded)."""
    enc = cfg.encoder
    build_backbone(enc.backbone, data.channels, cfg.data.image_size, None, width=enc.backbone_width)


def prepare(cfg: ContraLordConfig, out_dir: str | Path, resume: bool = False) -> ImageFactorData:
    """Every check on the user's input, before any training: returns the dataset. (The CLI also runs
    ``check_out`` first; a sweep trial's folder is the sweep's, so it may hold an earlier attempt.)"""
    out_dir = Path(out_dir)
    check_device(cfg)
    check_files(cfg)
    data = build_data(cfg)
    validate_against_data(cfg, len(data))
    if labels.structure(cfg, data) == "factors" or (cfg.eval.protocol == "partial-labels" and data.factors is not None):
        labels.resolve(cfg, data)  # labelled factor names and data.num_labels, checked against the data
    check_vae(cfg, data)
    for key, value, default in (("eval.scored_code", cfg.eval.scored_code, "encoder"),
                                ("encoder.content_head", cfg.encoder.content_head, "learned"),
                                ("encoder.label_aware_negatives", cfg.encoder.label_aware_negatives, False)):
        if value != default and labels.structure(cfg, data) != "factors":
            raise ConfigError(f"{key}: {value} needs latent.structure=factors (stage 1's labelled-factor "
                              f"classifiers), got {labels.structure(cfg, data)}")
    check_sizes(cfg, data, needs_latent(cfg))
    check_backbone(cfg, data)
    check_against_data(cfg, data)  # weight files and the evaluation: they used to fail after training
    check_resume(labels.resolved(cfg, data), out_dir, resume)
    check_cached_stage1(labels.resolved(cfg, data), data, out_dir)
    if extends(cfg, out_dir):
        load_extension(labels.resolved(cfg, data))  # a state this ladder extends, of the same config
    return data


def check_cached_stage1(cfg: ContraLordConfig, data: ImageFactorData, out_dir: Path) -> None:
    """A cached stage-1 artifact this run would reuse loads (``load_latent``: the checked loader); a corrupt one is
    one line naming its folder, before anything is written (it used to end in a traceback with --out created)."""
    if needs_latent(cfg):
        cached = Path(cfg.run.latent_cache or out_dir / "latent_cache") / latent_key(cfg, data) / ARTIFACT
        if cached.is_file():
            load_latent(cached)


def extends(cfg: ContraLordConfig, out_dir: Path) -> bool:
    """The run starts from ``run.extend_from`` (set, and no checkpoint of its own to resume yet)."""
    return bool(cfg.run.extend_from) and not (out_dir / "checkpoints" / CHECKPOINT).is_file()


def train(cfg: ContraLordConfig, out_dir: str | Path, runtime: LocalRuntime | None = None,
          logger: MetricsLogger | None = None, resume: bool = False,
          data: ImageFactorData | None = None) -> dict[str, Any]:
    """Run both stages into ``out_dir``; return (and write to summary.json) the final summary."""
    runtime, logger, out_dir = runtime or LocalRuntime(), logger or NullLogger(), Path(out_dir)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    data = data if data is not None else prepare(cfg, out_dir, resume)
    cfg = labels.resolved(cfg, data)
    checkpoint.write_json_atomic(cfg.to_flat_dict(), out_dir / "config.json")
    logger.log_params(cfg.to_flat_dict())
    started = time.perf_counter()
    latent = None
    if needs_latent(cfg):
        latent = train_latent(cfg, data, cfg.run.latent_cache or out_dir / "latent_cache", runtime, logger)
    stage1_done = time.perf_counter()
    spe = sampling.steps_per_epoch(len(data), cfg.encoder.batch_size)
    ladder = RungRecords(out_dir, logger, runtime.report, spe) if cfg.encoder.rungs else None
    extended = _extension(cfg, latent, ladder) if extends(cfg, out_dir) else None

    # Table 1's floors depend on the data and seed only: scored once, with the run's own evaluation
    at_rungs = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, floors=False))

    def score_rung(rung: int, branch: EncoderTrainer) -> dict[str, float]:
        return ladder.record(rung, _scored(at_rungs, data, latent, branch, ladder.folder(rung), runtime.device))

    trainer = train_encoders(cfg, data, latent, out_dir, runtime, logger, score_rung if ladder else None, extended)
    train_done = time.perf_counter()
    summary = _scored(cfg, data, latent, trainer, out_dir, runtime.device)
    if ladder:  # the top rung is the run itself
        top = parse_rungs(cfg.encoder.rungs)[-1]
        rungs = trainer.rungs | {top: ladder.record(top, summary)}
        summary["rungs"] = {str(rung): rungs[rung] for rung in sorted(rungs)}
        ladder.write(summary["rungs"])
        add_top_rung(out_dir, top, rungs[top])
    summary |= {"time/stage1": stage1_done - started, "time/train": train_done - stage1_done,
                "time/eval": time.perf_counter() - train_done}
    logger.log_metrics({k: v for k, v in summary.items() if isinstance(v, float)}, step=0)
    checkpoint.write_json_atomic(summary, out_dir / "summary.json")
    return summary


def _extension(cfg: ContraLordConfig, latent: LatentResult | None, ladder: RungRecords) -> dict:
    """The state ``run.extend_from`` names, checked against this run's stage 1, its epochs and rungs logged as
    this run's own (``RungRecords.carry``)."""
    state = load_extension(cfg)
    if latent is not None and state.get("latent_key") not in (None, latent.key):
        raise ConfigError(f"run.extend_from: {cfg.run.extend_from} was trained on stage 1 {state['latent_key']}, "
                          f"this run's is {latent.key} (another seed, data or stage-1 config)")
    ladder.carry({int(rung): metrics for rung, metrics in state["rungs"].items()}, state["history"])
    return state


def _scored(cfg: ContraLordConfig, data: ImageFactorData, latent: LatentResult | None, trainer: EncoderTrainer,
            folder: Path, device: torch.device) -> dict[str, Any]:
    """The summary of a trained encoder and, when evaluation is on, its scores (``evaluate`` writes
    ``folder/metrics.json`` and the grids)."""
    train_codes = CodeCache(trainer.online, data.images, trainer.device)  # read by the summary and evaluate
    summary = summarize(cfg, data, latent, trainer, train_codes)
    summary["machine"] = machine.describe().as_dict()  # tables refuse to pool runs across machines
    if cfg.eval.enabled and distributed.is_main():
        factor_codes = stage1_factor_codes(cfg, data, latent, device)
        scores = evaluate(cfg, trainer.online, data, folder, device, train_codes, factor_codes)
        summary |= {f"encoder/eval/{k}": v for k, v in scores.items() if isinstance(v, float)}
    return summary


def stage1_factor_codes(cfg: ContraLordConfig, data: ImageFactorData, latent: LatentResult | None,
                        device: torch.device):
    """Stage 1's classifiers and tables when ``eval.scored_code=classifier`` scores them, else None."""
    if cfg.eval.scored_code != "classifier":
        return None
    if latent is None:
        raise ConfigError("eval.scored_code: classifier needs this run's stage 1 (its labelled-factor classifiers)")
    return load_factor_codes(cfg, data, latent.classifiers("eval.scored_code"), device)


@torch.no_grad()
def summarize(cfg: ContraLordConfig, data: ImageFactorData, latent: LatentResult | None,
              trainer: EncoderTrainer, train_codes: CodeCache | None = None) -> dict[str, Any]:
    """Final losses of both stages, plus how well the heads recover the stage-1 codes on
    ``run.eval_size`` training images: class accuracy of the nearest stage-1 class code to h_d(f(x)),
    and R^2 of h_c / h_r against the stage-1 content / residual codes. (Disentanglement metrics and
    held-out evaluation belong to the evaluation pipeline.) ``train_codes``: the training images'
    codes, shared with the evaluation; by default a fresh ``CodeCache``."""
    summary: dict[str, Any] = {"data_fingerprint": data.fingerprint, "num_images": len(data)}
    if latent is not None:
        summary |= {"latent_key": latent.key, "latent_reused": latent.reused}
        summary |= latent.final_metrics()
    if getattr(trainer, "history", None):
        summary |= final_names(trainer.history[-1])
    if latent is not None and cfg.run.eval_size:
        if train_codes is None:
            train_codes = CodeCache(trainer.online, data.images, trainer.device)
        summary |= _head_agreement(cfg, data, latent, train_codes)
    return summary


def _head_agreement(cfg, data, latent, train_codes: CodeCache) -> dict[str, float]:
    n = min(cfg.run.eval_size, len(data))
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.run.seed))[:n]
    codes = train_codes(index)
    d, gc, gr = (torch.from_numpy(codes[name]).float() for name in ("class_code", "content", "residual"))  # (n, D)
    r2 = lambda pred, target: float(1 - (pred - target).pow(2).sum() / (target - target.mean(0)).pow(2).sum())  # noqa: E731
    agreement = {}
    if latent.class_codes.shape[1]:  # no class code under the labelled-factor structure
        nearest = torch.cdist(d, latent.class_codes).argmin(dim=1)  # (n,) class whose stage-1 code is closest
        agreement["encoder/eval/class_acc"] = float((nearest == data.classes[index]).float().mean())
    agreement |= per_dim_correlation(gc, latent.content[index], labels.layout(cfg, data).content_names)
    return agreement | {"encoder/eval/content_r2": r2(gc, latent.content[index]),
                        "encoder/eval/residual_r2": r2(gr, latent.residual[index])}


def per_dim_correlation(pred: torch.Tensor, target: torch.Tensor, names: list[str]) -> dict[str, float]:
    """Pearson correlation of each dimension of h_c (n, D) with the same dimension of the stage-1 code, as
    ``encoder/eval/content_corr/<name>``, and their minimum: a pooled R^2 can look fine while the code of
    one factor (a small object's hue) is still far from its target. A constant dimension correlates 0."""
    p, t = pred.double() - pred.double().mean(0), target.double() - target.double().mean(0)  # (n, D)
    denominator = (p.norm(dim=0) * t.norm(dim=0)).clamp(min=1e-12)
    corr = ((p * t).sum(0) / denominator).tolist()  # (D,)
    result = {f"encoder/eval/content_corr/{name}": c for name, c in zip(names, corr, strict=True)}
    return result | {"encoder/eval/content_corr_min": min(corr)} if corr else result
