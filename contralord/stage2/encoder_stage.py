"""Stage 2 training loop: encoder pre-training (ContraLORD Sec. 3.3, Eq. 2-6; Algorithm 1 lines 8-17).

One step, in MoCo's order: EMA-update the momentum encoders, compute the keys g_q of an augmented
query view, run the online encoder on the anchor view (the original x_i, so L_rec, L_sup and both
InfoNCE anchors share one forward pass), take
L = rec L_rec + sup L_sup + con L_con + res L_res, step the optimiser, then enqueue the keys.
A term whose weight is 0 is not computed, and the momentum encoders only run when a contrastive
term needs them. ``encoder.negatives=batch`` swaps the queue for SimCLR's in-batch NT-Xent (the keys
then come from the online encoder, with gradient).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch

from contralord import schedules
from contralord.config import ConfigError, ContraLordConfig
from contralord.data import ImageFactorData
from contralord.latent_result import LatentResult
from contralord.losses import info_nce_loss, nt_xent_loss, supervision_loss
from contralord.models import stage1_content
from contralord.models.build import build_generator, build_recon_loss
from contralord.models.contralord import EncoderOutput, MomentumEncoders, OnlineEncoder, Projectors
from contralord.models.encoders import build_backbone
from contralord.models.heads import EncoderHeads
from contralord.models.latent import build_factor_codes
from contralord.models.split_bn import has_batch_norm, split_batch_norms
from contralord.setup import Setup
from contralord.stage2 import augment
from contralord.stage2.vae_baseline import SemiSupervisedVAE, vae_terms
from contralord.training import checkpoint, distributed, sampling
from contralord.training.loop import LoopSpec, run_loop
from contralord.training.precision import autocast, fast_images, fast_module
from contralord.training.runtime import LocalRuntime
from contralord.training.tracking import MetricsLogger, NullLogger

CHECKPOINT = "encoder.pt"
STABLE = "stable.pt"  # under encoder.rungs: the trunk where the top rung's cooldown starts (contralord/run/ladder.py)
RESUME_KEYS = ("online", "momentum", "optimizer", "scheduler", "step", "rng", "config")
RESUME_IGNORED = ("run.checkpoint_every", "run.threads", "run.device", "run.eval_size", "run.latent_cache", "eval.",
                  "data.max_array_gib", "run.extend_from", "latent.best_reference_steps")


def uses_contrastive(cfg: ContraLordConfig) -> bool:
    return cfg.loss.con > 0 or cfg.loss.res > 0


def key_dims(setup: Setup) -> tuple[int, int]:
    """Sizes of the InfoNCE embeddings (the queues' keys): the projection, or the codes themselves."""
    cfg, (_, content_dim, residual_dim) = setup.cfg, setup.layout.dims
    projection = cfg.encoder.projection_dim if uses_contrastive(cfg) else 0
    return (projection, projection) if projection else (content_dim, residual_dim)


def shuffles_bn(cfg: ContraLordConfig, backbone: torch.nn.Module) -> bool:
    """Whether ``backbone``'s BatchNorm is split into groups and the query views shuffled (``encoder.bn_splits``):
    only where a contrastive term compares two views (a run without one keeps plain BatchNorm)."""
    return cfg.encoder.bn_splits > 1 and uses_contrastive(cfg) and has_batch_norm(backbone)


def bn_group_size(cfg: ContraLordConfig) -> int:
    """Images per BN group: a rank's share of ``encoder.batch_size`` over ``encoder.bn_splits``."""
    local = cfg.encoder.batch_size // distributed.world_size()
    if local % cfg.encoder.bn_splits:
        raise ConfigError(f"encoder.bn_splits: expected a divisor of the batch per rank ({local} = "
                          f"encoder.batch_size {cfg.encoder.batch_size} over {distributed.world_size()} rank(s)), "
                          f"got {cfg.encoder.bn_splits}")
    return local // cfg.encoder.bn_splits


def build_online(setup: Setup, latent: LatentResult | None) -> OnlineEncoder:
    """f + (h_d, h_c, h_r), the InfoNCE projections, and the stage-1 generator when L_rec is on
    (frozen unless fine-tuned)."""
    cfg, data = setup.cfg, setup.data
    torch.manual_seed(cfg.run.seed)
    enc = cfg.encoder
    class_dim, content_dim, residual_dim = setup.layout.dims
    backbone, feat_dim = build_backbone(enc.backbone, data.channels, cfg.data.image_size,
                                        enc.pretrained_path or None, width=enc.backbone_width)
    if shuffles_bn(cfg, backbone):
        split_batch_norms(backbone, bn_group_size(cfg))
    heads = EncoderHeads(feat_dim, class_dim, content_dim, residual_dim, hidden_dim=enc.head_hidden)
    if enc.content_head != "learned":
        backbone = _stage1_content(setup, latent, backbone, feat_dim, heads)
    if enc.model == "vae":  # Locatello et al.: a decoder trained from scratch, log-variance heads
        log_variance = EncoderHeads(feat_dim, class_dim, content_dim, residual_dim, hidden_dim=enc.head_hidden)
        return SemiSupervisedVAE(backbone, heads, build_generator(setup), log_variance)
    generator = None
    if cfg.loss.rec > 0:
        generator = build_generator(setup)
        if latent is not None:
            generator.load_state_dict(latent.generator_state)
        generator.requires_grad_(enc.finetune_generator)
    projection = enc.projection_dim if uses_contrastive(cfg) else 0
    return OnlineEncoder(backbone, heads, generator, Projectors(content_dim, residual_dim, projection))


def _stage1_content(setup: Setup, latent: LatentResult | None, backbone, feat_dim: int, heads: EncoderHeads):
    """The backbone that feeds ``heads`` once h_c is stage 1's classifiers (``encoder.content_head``), loaded
    from the stage-1 artifact (without one, e.g. when a saved run is rebuilt, its checkpoint fills them)."""
    cfg, data = setup.cfg, setup.data
    factor_codes = build_factor_codes(cfg.latent, setup.labelled.sizes, data.channels,
                                      cfg.data.image_size, torch.Generator().manual_seed(cfg.run.seed))
    if latent is not None:
        factor_codes.load_state_dict(latent.classifiers("encoder.content_head"))
    return stage1_content.attach(backbone, feat_dim, heads, factor_codes, factor_codes.classifiers[0].in_features,
                                 frozen=cfg.encoder.content_head == "stage1_frozen")


class EncoderTrainer:
    """Stage 2's modules, optimiser and one training step."""

    def __init__(self, setup: Setup, latent: LatentResult | None, runtime: LocalRuntime):
        cfg, data = setup.cfg, setup.data
        self.setup, self.cfg, self.data, self.latent, self.device = setup, cfg, data, latent, runtime.device
        self.vae = cfg.encoder.model == "vae"
        self.labelled = setup.labelled if self.vae else None
        self.online = build_online(setup, latent).to(self.device)
        self.model = fast_module(runtime.wrap_model(self.online), cfg.run)
        self.use_queue = cfg.encoder.negatives == "queue" and uses_contrastive(cfg)
        self.shuffle_bn = shuffles_bn(cfg, self.online.backbone)
        rng = torch.Generator().manual_seed(cfg.run.seed + 1)
        self.combinations = _combinations(setup, latent, self.device) if cfg.encoder.label_aware_negatives else None
        self.momentum = MomentumEncoders(self.online, cfg.encoder.queue_size, key_dims(setup),
                                         cfg.encoder.shared_momentum_backbone, rng,
                                         labelled_content=self.combinations is not None,
                                         indexed=cfg.encoder.mask_own_keys).to(self.device)
        params = [p for p in self.online.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=cfg.encoder.lr, weight_decay=cfg.encoder.weight_decay)
        total, _ = sampling.encoder_steps(cfg, len(data))
        self.scheduler = schedules.build_scheduler(cfg, self.optimizer, total)
        self.recon = build_recon_loss(cfg, self.device) if cfg.loss.rec > 0 else None
        needs_targets = cfg.loss.sup > 0 or (uses_contrastive(cfg) and cfg.encoder.anchor == "stage1")
        self.targets = _stage1_targets(data, latent) if needs_targets else None
        self.augmentation = query_augmentation(setup)
        self.history: list[dict[str, float]] = []  # per-epoch metrics: a resumed checkpoint's, then the loop's
        self.rungs: dict[int, dict[str, float]] = {}  # encoder.rungs evaluated so far (in the checkpoint too)

    def views(self, index: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(original x, anchor view, query view or None) for this rank's slice, each (B, C, H, W)."""
        batch = self.cfg.encoder.batch_size
        x = fast_images(self.data.images[index].to(self.device).float().div_(255), self.cfg.run)
        rng, part = sampling.step_generator(self.cfg.run.seed, "encoder", step), sampling.rank_slice(batch)
        needs_query = uses_contrastive(self.cfg)
        draw = lambda: augment.draw_params(batch, rng, *self.augmentation)  # noqa: E731
        query = augment.augment(x, draw().slice(part.start, part.stop)) if needs_query else None
        anchor = augment.augment(x, draw().slice(part.start, part.stop)) if self.cfg.encoder.augment_anchor else x
        return x, anchor, query

    def step(self, epoch: int, step_in_epoch: int, step: int) -> dict[str, float]:
        cfg, w = self.cfg, self.cfg.loss
        order = sampling.epoch_order(len(self.data), cfg.run.seed, "encoder", epoch)
        index = sampling.global_batch(order, step_in_epoch, cfg.encoder.batch_size)[
            sampling.rank_slice(cfg.encoder.batch_size)]  # (B_local,)
        with autocast(cfg.run, self.device):
            keys, terms = self._vae_terms(index, step) if self.vae else self._method_terms(index, step)
            terms = {name: value.float() for name, value in terms.items()}
            total = sum(getattr(w, name) * value for name, value in terms.items())
        grads = self._grad_norms(terms) if step_in_epoch == 0 and distributed.world_size() == 1 else {}
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.use_queue:
            images = index.to(self.device) if cfg.encoder.mask_own_keys else None
            if keys[0] is not None:
                ids = self.combinations[index] if self.combinations is not None else None
                self.momentum.content_queue.enqueue(keys[0], labels=ids, ids=images)
            if keys[1] is not None:
                self.momentum.residual_queue.enqueue(keys[1], ids=images)
        names = {"con": "nce_content", "res": "nce_residual"}
        return {"total": total.item(), "lr": lr} | {names.get(k, k): v.item() for k, v in terms.items()} | grads

    def _method_terms(self, index: torch.Tensor, step: int) -> tuple[tuple, dict[str, torch.Tensor]]:
        """(momentum keys to enqueue, Eq. 2-5 terms) of this rank's batch ``index``.

        One forward of the DDP-wrapped model computes everything with gradient: the anchor view, the
        query view when the online f encodes the positive (or for SimCLR's second view), and the
        projections of both, plus of the stage-1 codes under ``encoder.anchor=stage1`` (a parameter
        used outside the wrapped forward would break DDP's gradient hooks)."""
        x, anchor, query = self.views(index, step)
        order = self._query_order(len(anchor), step) if self.shuffle_bn else None  # (permutation, its inverse)
        if order is not None:
            query = query[order[0]]
        keys = self._keys(query)
        if order is not None:
            keys = tuple(None if k is None else k[order[1]] for k in keys)
        enc, contrastive = self.cfg.encoder, uses_contrastive(self.cfg)
        both_views = contrastive and (not self.use_queue or enc.positive == "online")
        stage1 = None
        if self.use_queue and enc.anchor == "stage1":
            stage1 = tuple(t[index].to(self.device) for t in self.targets[1:])
        out, x_hat, projected = self.model(torch.cat([anchor, query]) if both_views else anchor,
                                           decode=self.cfg.loss.rec > 0, num_decoded=len(anchor),
                                           project=contrastive, stage1=stage1)
        if both_views:
            out = EncoderOutput(*(t[:len(anchor)] for t in out))
            if order is not None:  # the query views' rows back in the anchors' order
                projected = tuple(_rows_reordered(p, len(anchor), order[1]) for p in projected)
        views = _ProjectedViews(projected, len(anchor), both_views, stage1 is not None) if contrastive else None
        return keys, self._terms(index, x, out, x_hat, keys, views)

    def _query_order(self, batch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(a permutation of the ``batch`` query views, its inverse), drawn per step (a resumed run draws the same):
        the query views enter the BN groups in this order, so a positive's or key's group is a random mix of the
        batch, not its anchor's group (MoCo's shuffle-BN; ``models/split_bn.py``)."""
        permutation = torch.randperm(batch, generator=sampling.step_generator(self.cfg.run.seed, "shuffle_bn", step))
        return permutation.to(self.device), torch.argsort(permutation).to(self.device)

    def _vae_terms(self, index: torch.Tensor, step: int) -> tuple[tuple, dict[str, torch.Tensor]]:
        """The semi-supervised beta-VAE's terms (``vae_baseline``), noise drawn for the global batch."""
        batch, layout = self.cfg.encoder.batch_size, self.setup.layout
        _, content_dim, residual_dim = layout.dims
        rng, part = sampling.step_generator(self.cfg.run.seed, "encoder", step), sampling.rank_slice(batch)
        noise = tuple(torch.randn(batch, d, generator=rng)[part].to(self.device) for d in (content_dim, residual_dim))
        x = self.data.images[index].to(self.device).float().div_(255)
        found = self.labelled
        return (None, None), vae_terms(self.model, x, found.known[index].to(self.device), noise, found.sizes,
                                       layout.first_columns)

    def _grad_norms(self, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        """||d(weight * term)/d backbone|| per term: the loss balance (logged once per epoch as
        ``encoder/train/grad/<term>``). Read-only: the step's update is unchanged."""
        params = [p for p in self.online.backbone.parameters() if p.requires_grad]
        norms = {}
        for name, value in terms.items():
            grads = torch.autograd.grad(getattr(self.cfg.loss, name) * value, params, retain_graph=True,
                                        allow_unused=True)
            norms[f"grad/{name}"] = float(sum(g.pow(2).sum() for g in grads if g is not None) ** 0.5)
        return norms

    def _keys(self, query: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not self.use_queue:
            return None, None
        self.momentum.update(self.online, self.cfg.encoder.momentum)  # before the keys, as MoCo
        return self.momentum.keys(query, content=self.cfg.loss.con > 0, residual=self.cfg.loss.res > 0)

    def _terms(self, index, x, out, x_hat, keys, views) -> dict[str, torch.Tensor]:
        w, tau, terms = self.cfg.loss, self.cfg.encoder.temperature, {}
        if w.rec > 0:
            terms["rec"] = self.recon(x_hat, x)  # Eq. 2
        if w.sup > 0:
            targets = tuple(t[index].to(self.device) for t in self.targets)
            terms["sup"] = supervision_loss(tuple(out), targets, self.cfg.loss.sup_reduction)  # Eq. 3
        for name, branch, key in (("con", 0, keys[0]), ("res", 1, keys[1])):
            if getattr(w, name) <= 0:
                continue
            if self.use_queue:  # Eq. 4 (content) and Eq. 5 (residual)
                queue = (self.momentum.content_queue, self.momentum.residual_queue)[branch]
                positive = views.positive(branch) if views.online_positive else key
                terms[name] = info_nce_loss(views.anchor(branch), positive, queue.negatives(), tau,
                                            positive_grad=views.online_positive,
                                            not_negative=self._not_negative(index, queue))
            else:  # SimCLR baseline: in-batch negatives, both views with gradient
                terms[name] = nt_xent_loss(views.anchor(branch), views.positive(branch), tau)
        return terms

    def _not_negative(self, index: torch.Tensor, queue) -> torch.Tensor | None:
        """(B, K) True where a queued key is no negative of the anchor: it has the anchor's labelled-factor values
        (``encoder.label_aware_negatives``) or comes from the anchor's own image (``encoder.mask_own_keys``)."""
        mask = self._same_combination(index, queue)
        if self.cfg.encoder.mask_own_keys:
            own = queue.own_keys(index)
            mask = own if mask is None else mask | own
        return mask

    def _same_combination(self, index: torch.Tensor, queue) -> torch.Tensor | None:
        """(B, K) True where a queued key shares the anchor's labelled-factor values (a labelled queue only)."""
        if not hasattr(queue, "labels"):
            return None
        return self.combinations[index][:, None] == queue.labels[None, :]

    def state_dict(self, step: int, history: list[dict[str, float]] = ()) -> dict:
        """Everything an exact resume at ``step`` needs, with ``history``: the metrics of the epochs run so far
        (a trial restarted after its last checkpoint reports the final epoch's from it)."""
        return {"online": self.online.state_dict(), "momentum": self.momentum.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "step": step, "rng": checkpoint.rng_state(), "config": self.cfg.to_flat_dict(),
                "latent_key": self.latent.key if self.latent else None, "history": list(history),
                "rungs": {str(rung): dict(metrics) for rung, metrics in self.rungs.items()}}

    def resume(self, path: Path) -> int:
        """Load ``path`` if it exists (refusing another config's checkpoint); return the start step."""
        if not path.is_file():
            return 0
        saved = checkpoint.load(path, required=RESUME_KEYS)
        checkpoint.check_compatible(saved["config"], self.cfg.to_flat_dict(), path, ignore=RESUME_IGNORED)
        return self.load_state(saved)

    def load_state(self, saved: dict) -> int:
        """Put the trainer back in the state ``state_dict`` saved; return its step."""
        self.online.load_state_dict(saved["online"])
        self.momentum.load_state_dict(saved["momentum"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        checkpoint.set_rng_state(saved["rng"])
        self.history = list(saved.get("history", []))  # a checkpoint written before history was kept: none
        self.rungs = {int(rung): dict(metrics) for rung, metrics in saved.get("rungs", {}).items()}
        return int(saved["step"])


class _ProjectedViews:
    """Rows of the projected embeddings of one forward: [anchor view (B); query view (B) when the online f
    encodes it; stage-1 codes (B) under encoder.anchor=stage1], per branch (0 content, 1 residual).

    Readings of Eq. 4/5 (each a config key, logged): the anchor g_i is the online code of the original
    x_i (``encoder.anchor=online``) or the stage-1 code g~_i (``stage1``, a contrastive L_sup); the
    positive g_q is the online encoding of the query view, with gradient (``encoder.positive=online``,
    Algorithm 1 line 12: "Apply f, f_m^c to encode g^c_q, g^c_k") or the momentum key (``momentum``,
    MoCo). Anchors and positives both go through the branch's projection.
    """

    def __init__(self, projected: tuple[torch.Tensor, torch.Tensor], batch: int, online_positive: bool,
                 stage1_anchor: bool):
        self.projected, self.batch = projected, batch
        self.online_positive, self.stage1_anchor = online_positive, stage1_anchor

    def anchor(self, branch: int) -> torch.Tensor:
        rows = self.projected[branch]
        if len(rows) == self.batch:  # the anchor view alone: no slice (a slice would reorder gradient sums)
            return rows
        return rows[-self.batch:] if self.stage1_anchor else rows[:self.batch]  # (B, P)

    def positive(self, branch: int) -> torch.Tensor:
        return self.projected[branch][self.batch:2 * self.batch]  # (B, P)


def _rows_reordered(rows: torch.Tensor, batch: int, inverse: torch.Tensor) -> torch.Tensor:
    """``rows`` = [anchor views (B); query views (B), permuted; anything after] with the query views' rows put back
    in the anchors' order by ``inverse``."""
    return torch.cat([rows[:batch], rows[batch:2 * batch][inverse], rows[2 * batch:]])


def query_augmentation(setup: Setup) -> tuple[float, bool, float]:
    """(crop_scale_min, flip, color_jitter) of the query view; under partial labels with
    ``encoder.preserve_labelled``, nothing that changes a labelled factor (``augment.preserving``); with
    ``encoder.augment=false``, the identity (a scale-1 crop, no flip, no jitter)."""
    cfg, enc = setup.cfg, setup.cfg.encoder
    if not enc.augment:
        return 1.0, False, 0.0
    params = (enc.crop_scale_min, enc.flip, enc.color_jitter)
    if enc.preserve_labelled and cfg.eval.protocol == "partial-labels" and setup.data.factors is not None:
        return augment.preserving(*params, setup.labelled_names)
    return params


def _combinations(setup: Setup, latent: LatentResult | None, device: torch.device) -> torch.Tensor:
    """Each training image's labelled-factor combination (``LatentResult.combinations``), on ``device``."""
    if latent is None:
        raise ConfigError("encoder.label_aware_negatives: needs this run's stage 1 (its labelled-factor classifiers)")
    return latent.combinations(setup, "encoder.label_aware_negatives", device).to(device)


def _stage1_targets(data: ImageFactorData, latent: LatentResult | None) -> tuple[torch.Tensor, ...]:
    """(d_i, g^c_i, g^r_i) per training image, (N, D) each: the L_sup targets of Eq. 3."""
    if latent is None:
        raise ValueError("loss.sup > 0 needs a stage-1 result (the learned codes are its targets)")
    return latent.class_codes[data.classes], latent.content, latent.residual


def train_encoders(setup: Setup, latent: LatentResult | None, out_dir: str | Path,
                   runtime: LocalRuntime | None = None, logger: MetricsLogger | None = None,
                   on_rung: Callable[[int, EncoderTrainer], dict[str, float]] | None = None,
                   extended: dict | None = None) -> EncoderTrainer:
    """Train stage 2 into ``<out_dir>/checkpoints/encoder.pt``, resuming from it when present, else from
    ``extended`` when given (an earlier ladder's stable state, ``ladder.load_extension``). Under ``encoder.rungs``
    (WSD) the trunk stops at each lower rung's cooldown start, a branch cools down from there to the rung and is
    handed to ``on_rung`` (the evaluation: its metrics are kept in ``trainer.rungs`` and in the checkpoint, so a
    resumed run does not branch again), then the trunk goes on from its state before the branch. Where the top
    rung's cooldown starts, the trunk is saved as ``checkpoints/stable.pt``: what a longer ladder extends."""
    runtime, logger, cfg, data = runtime or LocalRuntime(), logger or NullLogger(), setup.cfg, setup.data
    trainer = EncoderTrainer(setup, latent, runtime)
    path = Path(out_dir) / "checkpoints" / CHECKPOINT
    start = trainer.resume(path)
    if not path.is_file() and extended is not None:
        start = trainer.load_state(extended)
    spe = sampling.steps_per_epoch(len(data), cfg.encoder.batch_size)
    total, epochs = sampling.encoder_steps(cfg, len(data))
    spec = LoopSpec("encoder", epochs, spe, cfg.encoder.batch_size, cfg.run.checkpoint_every, total_steps=total,
                    history=list(trainer.history),
                    progress=runtime.progress(total, start, f"[stage 2, seed {cfg.run.seed}]"))
    save = lambda step: str(checkpoint.save_atomic(trainer.state_dict(step, spec.history), path))  # noqa: E731
    rungs = schedules.parse_rungs(cfg.encoder.rungs)
    for rung in rungs[:-1]:
        if rung in trainer.rungs:
            continue
        begin = schedules.branch_start(rung, cfg.encoder.decay_fraction)
        if start > begin:
            raise checkpoint.CheckpointError(f"checkpoint {path}: at step {start}, past where rung {rung}'s cooldown "
                                             f"starts ({begin}), but no evaluation of rung {rung} was kept")
        if start < begin:  # the trunk up to the branch point; its checkpoint there is where a resumed branch starts
            spec.total_steps = begin
            run_loop(spec, start, trainer.step, save, logger, runtime.report)
            start = begin
        _branch(trainer, spec, begin, rung, on_rung)
        save(begin)  # the same state, now with the rung's evaluation: a resume does not branch again
    stable = schedules.branch_start(rungs[-1], cfg.encoder.decay_fraction) if rungs else total
    if start <= stable < total:  # the stable state a longer ladder extends (saved before any step past it)
        spec.total_steps = stable
        run_loop(spec, start, trainer.step, save, logger, runtime.report)
        start = stable
        checkpoint.save_atomic(trainer.state_dict(stable, spec.history), path.with_name(STABLE))
    spec.total_steps = total
    run_loop(spec, start, trainer.step, save, logger, runtime.report)
    spec.progress.close()
    trainer.history, trainer.last_step = spec.history, spec.last_step
    distributed.barrier()
    return trainer


def _branch(trainer: EncoderTrainer, trunk: LoopSpec, begin: int, rung: int,
            on_rung: Callable[[int, EncoderTrainer], dict[str, float]] | None) -> None:
    """Cool down from the trunk's state at ``begin`` to ``rung``, hand the result to ``on_rung``, then put the
    trunk's state back (modules, queues, optimiser, schedule, RNG): the trunk goes on as if no branch had run."""
    before = copy.deepcopy(trainer.state_dict(begin, trunk.history))
    trainer.scheduler.retarget(rung)
    branch = LoopSpec("encoder", trunk.epochs, trunk.steps_per_epoch, trunk.images_per_step, total_steps=rung)
    run_loop(branch, begin, trainer.step, lambda step: "", NullLogger(), lambda metrics, path: None)
    trainer.history, trainer.last_step = branch.history, branch.last_step
    result = on_rung(rung, trainer) if on_rung is not None else {}
    trainer.load_state(before)
    trainer.rungs[rung] = result
