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

from pathlib import Path

import torch

from contralord import augment, checkpoint, distributed, sampling
from contralord.config import ContraLordConfig
from contralord.data import ImageFactorData
from contralord.latent_stage import LatentResult, build_generator, build_recon_loss
from contralord.loop import LoopSpec, run_loop
from contralord.losses import info_nce_loss, nt_xent_loss, supervision_loss
from contralord.models.contralord import MomentumEncoders, OnlineEncoder
from contralord.models.encoders import build_backbone
from contralord.models.heads import EncoderHeads
from contralord.runtime import LocalRuntime
from contralord.tracking import MetricsLogger, NullLogger

CHECKPOINT = "encoder.pt"
RESUME_KEYS = ("online", "momentum", "optimizer", "scheduler", "step", "rng", "config")
RESUME_IGNORED = ("run.checkpoint_every", "run.threads", "run.device", "run.eval_size", "run.latent_cache", "eval.")


def build_online(cfg: ContraLordConfig, data: ImageFactorData, latent: LatentResult | None) -> OnlineEncoder:
    """f + (h_d, h_c, h_r), and the stage-1 generator when L_rec is on (frozen unless fine-tuned)."""
    torch.manual_seed(cfg.run.seed)
    enc, lat = cfg.encoder, cfg.latent
    backbone, feat_dim = build_backbone(enc.backbone, data.channels, cfg.data.image_size,
                                        enc.pretrained_path or None, width=enc.backbone_width)
    heads = EncoderHeads(feat_dim, lat.class_dim, lat.content_dim, lat.residual_dim, hidden_dim=enc.head_hidden)
    generator = None
    if cfg.loss.rec > 0:
        generator = build_generator(cfg, data.channels)
        if latent is not None:
            generator.load_state_dict(latent.generator_state)
        generator.requires_grad_(enc.finetune_generator)
    return OnlineEncoder(backbone, heads, generator)


class EncoderTrainer:
    """Stage 2's modules, optimiser and one training step."""

    def __init__(self, cfg: ContraLordConfig, data: ImageFactorData, latent: LatentResult | None,
                 runtime: LocalRuntime):
        self.cfg, self.data, self.latent, self.device = cfg, data, latent, runtime.device
        self.online = build_online(cfg, data, latent).to(self.device)
        self.model = runtime.wrap_model(self.online)
        self.use_queue = cfg.encoder.negatives == "queue" and (cfg.loss.con > 0 or cfg.loss.res > 0)
        rng = torch.Generator().manual_seed(cfg.run.seed + 1)
        dims = (cfg.latent.content_dim, cfg.latent.residual_dim)
        self.momentum = MomentumEncoders(self.online, cfg.encoder.queue_size, dims,
                                         cfg.encoder.shared_momentum_backbone, rng).to(self.device)
        params = [p for p in self.online.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=cfg.encoder.lr, weight_decay=cfg.encoder.weight_decay)
        total = cfg.encoder.epochs * sampling.steps_per_epoch(len(data), cfg.encoder.batch_size)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=total)
        self.recon = build_recon_loss(cfg, self.device) if cfg.loss.rec > 0 else None
        self.targets = _stage1_targets(data, latent) if cfg.loss.sup > 0 else None

    def views(self, index: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(original x, anchor view, query view or None) for this rank's slice, each (B, C, H, W)."""
        enc, batch = self.cfg.encoder, self.cfg.encoder.batch_size
        x = self.data.images[index].to(self.device).float().div_(255)
        rng, part = sampling.step_generator(self.cfg.run.seed, "encoder", step), sampling.rank_slice(batch)
        needs_query = self.cfg.loss.con > 0 or self.cfg.loss.res > 0
        draw = lambda: augment.draw_params(batch, rng, enc.crop_scale_min, enc.flip, enc.color_jitter)  # noqa: E731
        query = augment.augment(x, draw().slice(part.start, part.stop)) if needs_query else None
        anchor = augment.augment(x, draw().slice(part.start, part.stop)) if enc.augment_anchor else x
        return x, anchor, query

    def step(self, epoch: int, step_in_epoch: int, step: int) -> dict[str, float]:
        cfg, w = self.cfg, self.cfg.loss
        order = sampling.epoch_order(len(self.data), cfg.run.seed, "encoder", epoch)
        index = sampling.global_batch(order, step_in_epoch, cfg.encoder.batch_size)[
            sampling.rank_slice(cfg.encoder.batch_size)]  # (B_local,)
        x, anchor, query = self.views(index, step)
        keys = self._keys(query)
        out, x_hat = self.model(anchor, decode=w.rec > 0)
        terms = self._terms(index, x, out, x_hat, keys, query)
        total = sum(getattr(w, name) * value for name, value in terms.items())
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.use_queue:
            for queue, k in ((self.momentum.content_queue, keys[0]), (self.momentum.residual_queue, keys[1])):
                if k is not None:
                    queue.enqueue(k)
        names = {"rec": "rec", "sup": "sup", "con": "nce_content", "res": "nce_residual"}
        return {"total": total.item(), "lr": lr} | {names[k]: v.item() for k, v in terms.items()}

    def _keys(self, query: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not self.use_queue:
            return None, None
        self.momentum.update(self.online, self.cfg.encoder.momentum)  # before the keys, as MoCo
        return self.momentum.keys(query, content=self.cfg.loss.con > 0, residual=self.cfg.loss.res > 0)

    def _terms(self, index, x, out, x_hat, keys, query) -> dict[str, torch.Tensor]:
        w, tau, terms = self.cfg.loss, self.cfg.encoder.temperature, {}
        if w.rec > 0:
            terms["rec"] = self.recon(x_hat, x)  # Eq. 2
        if w.sup > 0:
            terms["sup"] = supervision_loss(tuple(out), tuple(t[index].to(self.device) for t in self.targets))  # Eq. 3
        if self.use_queue:
            if w.con > 0:
                terms["con"] = info_nce_loss(out.content, keys[0], self.momentum.content_queue.negatives(), tau)
            if w.res > 0:
                terms["res"] = info_nce_loss(out.residual, keys[1], self.momentum.residual_queue.negatives(), tau)
        elif w.con > 0 or w.res > 0:  # SimCLR baseline: in-batch negatives, keys with gradient
            q, _ = self.model(query)
            if w.con > 0:
                terms["con"] = nt_xent_loss(out.content, q.content, tau)
            if w.res > 0:
                terms["res"] = nt_xent_loss(out.residual, q.residual, tau)
        return terms

    def state_dict(self, step: int) -> dict:
        return {"online": self.online.state_dict(), "momentum": self.momentum.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "step": step, "rng": checkpoint.rng_state(), "config": self.cfg.to_flat_dict(),
                "latent_key": self.latent.key if self.latent else None}

    def resume(self, path: Path) -> int:
        """Load ``path`` if it exists (refusing another config's checkpoint); return the start step."""
        if not path.is_file():
            return 0
        saved = checkpoint.load(path, required=RESUME_KEYS)
        checkpoint.check_compatible(saved["config"], self.cfg.to_flat_dict(), path, ignore=RESUME_IGNORED)
        self.online.load_state_dict(saved["online"])
        self.momentum.load_state_dict(saved["momentum"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        checkpoint.set_rng_state(saved["rng"])
        return int(saved["step"])


def _stage1_targets(data: ImageFactorData, latent: LatentResult | None) -> tuple[torch.Tensor, ...]:
    """(d_i, g^c_i, g^r_i) per training image, (N, D) each: the L_sup targets of Eq. 3."""
    if latent is None:
        raise ValueError("loss.sup > 0 needs a stage-1 result (the learned codes are its targets)")
    return latent.class_codes[data.classes], latent.content, latent.residual


def train_encoders(cfg: ContraLordConfig, data: ImageFactorData, latent: LatentResult | None, out_dir: str | Path,
                   runtime: LocalRuntime | None = None, logger: MetricsLogger | None = None) -> EncoderTrainer:
    """Train stage 2 into ``<out_dir>/checkpoints/encoder.pt``, resuming from it when present."""
    runtime, logger = runtime or LocalRuntime(), logger or NullLogger()
    trainer = EncoderTrainer(cfg, data, latent, runtime)
    path = Path(out_dir) / "checkpoints" / CHECKPOINT
    start = trainer.resume(path)
    spe = sampling.steps_per_epoch(len(data), cfg.encoder.batch_size)
    spec = LoopSpec("encoder", cfg.encoder.epochs, spe, cfg.encoder.batch_size, cfg.run.checkpoint_every)
    save = lambda step: str(checkpoint.save_atomic(trainer.state_dict(step), path))  # noqa: E731
    run_loop(spec, start, trainer.step, save, logger, runtime.report)
    trainer.history, trainer.last_step = spec.history, spec.last_step
    distributed.barrier()
    return trainer
