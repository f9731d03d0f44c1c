"""Stage 1 with labelled factors (``latent.structure=factors``): Eq. 1 under the paper's partial labels.

The paper evaluates "with 100 labels", following Gabbay, Cohen & Hoshen (2021, zerodim): a few images
carry labels of some factors, and those labels supervise stage 1. Here (see ``contralord.labels``):
- g^c_i is the concatenation of one code per labelled factor (``models.latent.FactorCodes``): the
  label's row of the factor's table for a labelled image, the classifier's expected row otherwise.
- g^r_i is a per-image residual code with Eq. 1's Gaussian noise and penalty lambda. The factor codes
  get neither: the tables already bound their information (zerodim adds noise to the residual only).
- There is no class code d (the class factor is not labelled in zerodim's defaults); the generator's
  AdaIN is driven by [g^c, g^r + z] (``Generator(style_from_codes=True)``).

One step (zerodim's losses, our batching): an epoch-order batch of all images with
L_u = l(G(g^c, g^r + z), x) + lambda ||g^r||^2 + entropy * H(classifier), then a batch drawn from the
labelled images with L_l = l(...) + lambda ||g^r||^2 + label_ce * CE(classifier, label), and
L = L_u + labelled_weight * L_l. The entropy term starts at ``latent.entropy_start_epoch`` (zerodim: epoch
20 of 200): before it, the classifiers learn the labels and the reconstruction without being pushed to
commit to one value. The artifact stores every image's final g^c, so stage 2 and its L_sup are the same
code for both structures, and the factor model (classifiers and tables, ``factor_codes``) that zerodim's
amortisation and evaluation reuse (``eval.scored_code=classifier``).

At the end stage 1 reports, on the images without labels, its classifiers' accuracy per labelled factor
beside those of two supervised-only references (the matched ``reference_classifier`` and the
``best_reference``), and the disentanglement of its own
codes g^c scored exactly as the evaluation scores an encoder's (``latent/final/codes/...``): the ceiling a
stage-2 head regressing those codes can reach.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from contralord import labels, scoring
from contralord.config import ContraLordConfig
from contralord.data import ImageFactorData
from contralord.models.generator import Generator
from contralord.models.latent import FactorCodes, ImageCodes, build_factor_codes
from contralord.setup import Setup
from contralord.stage1.best_reference import best_reference_metrics, best_reference_steps, train_best_reference
from contralord.stage1.latent_base import CodeTableTrainer
from contralord.stage1.reference_classifier import classifier_accuracy, probe_positions, train_reference
from contralord.training import distributed, progress, sampling
from contralord.training.precision import autocast, fast_images, fast_module
from contralord.training.runtime import LocalRuntime
from contralord.training.tracking import MetricsLogger

LABEL_DRAW = 20_000_000  # step-generator counter offset of the labelled batch's draw
# The reference trains on stage 1's labelled batches, as many steps as stage 1 up to this: a classifier of a few
# hundred (paper: 100) labelled images has fitted them long before (the paper's scale would be 375k steps).
REFERENCE_MAX_STEPS = 20_000


class FactorDecoder(nn.Module):
    """Factor codes (tables + classifier) and the generator: what every rank shares (DDP-wrapped)."""

    def __init__(self, factor_codes: FactorCodes, generator: Generator):
        super().__init__()
        self.factor_codes, self.generator = factor_codes, generator

    def forward(self, x: torch.Tensor, known: torch.Tensor, residual: torch.Tensor):
        """x (B, C, H, W), known (B, F_l), residual (B, Dr) incl. noise -> (x_hat, g^c, logits)."""
        content, logits = self.factor_codes(x, known)  # (B, Dc), F_l x (B, n_j)
        empty = content.new_zeros(len(content), 0)  # no class code
        return self.generator(empty, content, residual), content, logits


class _FactorState(nn.Module):
    def __init__(self, cfg: ContraLordConfig, data: ImageFactorData, labelled: labels.LabelledFactors,
                 generator: Generator):
        super().__init__()
        torch.manual_seed(cfg.run.seed)
        lat, rng = cfg.latent, torch.Generator().manual_seed(cfg.run.seed)
        self.codes = ImageCodes(len(data), 0, lat.residual_dim, lat.init_scale, rng)
        factor_codes = build_factor_codes(lat, labelled.sizes, data.channels, cfg.data.image_size, rng)
        self.decoder = FactorDecoder(factor_codes, generator)


def _entropy(logits: list[torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
    """Mean over factors of the classifier's entropy on the ``rows`` (B,) bool images."""
    if not bool(rows.any()):
        return logits[0].new_zeros(())
    return sum(-(lg[rows].softmax(1) * lg[rows].log_softmax(1)).sum(1).mean() for lg in logits) / len(logits)


def _cross_entropy(logits: list[torch.Tensor], known: torch.Tensor) -> torch.Tensor:
    """Mean over factors of CE(classifier, label) on labelled images; known (B, F_l)."""
    return sum(F.cross_entropy(lg, known[:, j]) for j, lg in enumerate(logits)) / len(logits)


class FactorTrainer(CodeTableTrainer):
    """Stage 1 under ``latent.structure=factors``: the interface of ``latent_stage._LatentTrainer``."""

    def __init__(self, setup: Setup, runtime: LocalRuntime, generator: Generator, recon):
        cfg, data = setup.cfg, setup.data
        self.setup, self.cfg, self.data, self.device, self.recon = setup, cfg, data, runtime.device, recon
        self.progress = runtime.progress  # the references' steps after stage 1's (``diagnostics``)
        self.labelled = setup.labelled
        self.known = self.labelled.known.to(self.device)  # (N, F_l), -1 where unlabelled
        self.probe = probe_positions(self.labelled, cfg.run.seed)  # the accuracy curve's images without labels
        self.steps_per_epoch = sampling.steps_per_epoch(len(data), cfg.latent.batch_size)
        self.state = _FactorState(cfg, data, self.labelled, generator).to(self.device)
        self.decoder = fast_module(runtime.wrap_model(self.state.decoder), cfg.run)
        lat, fc = cfg.latent, self.state.decoder.factor_codes
        self.optimizer = torch.optim.Adam([
            {"params": self.state.decoder.generator.parameters(), "lr": lat.lr},
            {"params": [*fc.tables, self.state.codes.residual], "lr": lat.lr_codes},
            {"params": [*fc.trunks.parameters(), *fc.classifiers.parameters()], "lr": lat.lr_classifier,
             "betas": (lat.classifier_beta1, 0.999)},
        ], betas=(0.5, 0.999))
        total = lat.epochs * sampling.steps_per_epoch(len(data), lat.batch_size)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=total)

    def _batch_loss(self, index: torch.Tensor, rng: torch.Generator, global_size: int) -> tuple[torch.Tensor, ...]:
        """(recon, penalty, logits, known) of this rank's images ``index`` (B,) of a global batch of
        ``global_size``, with fresh noise on g^r drawn for the global batch (so ranks draw what one
        process draws)."""
        x = fast_images(self.data.images[index].to(self.device).float().div_(255), self.cfg.run)  # (B, C, H, W)
        _, residual = self.state.codes(index.to(self.device))  # (B, Dr)
        z = torch.randn(global_size, residual.shape[1], generator=rng)[sampling.rank_slice(global_size)]
        z = z.to(self.device)  # (B, Dr)
        known = self.known[index.to(self.device)]  # (B, F_l)
        with autocast(self.cfg.run, self.device):
            x_hat, _, logits = self.decoder(x, known, residual + self.cfg.latent.noise_std * z)
            return self.recon(x_hat, x), residual.pow(2).sum(dim=1).mean(), logits, known

    def step(self, epoch: int, step_in_epoch: int, step: int) -> dict[str, float]:
        lat, world = self.cfg.latent, distributed.world_size()
        local = lat.batch_size // world
        order = sampling.owned_order(len(self.data), self.cfg.run.seed, "latent", epoch)
        index = order[step_in_epoch * local:(step_in_epoch + 1) * local]  # (B_local,) this rank's images
        rng = sampling.step_generator(self.cfg.run.seed, "latent", step)
        rec, penalty, logits, known = self._batch_loss(index, rng, lat.batch_size)
        entropy = _entropy([lg.float() for lg in logits], known[:, 0] < 0)
        entropy_weight = lat.entropy if epoch >= lat.entropy_start_epoch else 0.0
        labelled, size = self._labelled_batch(step)
        rec_l, penalty_l, logits_l, known_l = self._batch_loss(labelled, rng, size)
        ce = _cross_entropy([lg.float() for lg in logits_l], known_l)
        total = (rec + lat.code_penalty * penalty + entropy_weight * entropy
                 + lat.labelled_weight * (rec_l + lat.code_penalty * penalty_l + lat.label_ce * ce))
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if world > 1:  # the residual table is not DDP-averaged: match the global-batch mean's gradient
            self.state.codes.residual.grad.div_(world)
        self.optimizer.step()
        self.scheduler.step()
        metrics = {"total": total.item(), "recon": rec.item(), "code_penalty": penalty.item(),
                   "recon_labelled": rec_l.item(), "label_ce": ce.item(), "entropy": entropy.item(), "lr": lr}
        epoch_end = step_in_epoch == self.steps_per_epoch - 1 and len(self.probe) and distributed.is_main()
        return metrics | (self._probe_accuracy() if epoch_end else {})  # the main rank's metrics are the ones logged

    def _probe_accuracy(self) -> dict[str, float]:
        """The classifiers' accuracy on the probe images at an epoch's end (the loop logs it as
        ``latent/train/probe_acc/<factor>``): stage 1's curve beside its references'."""
        accuracy = classifier_accuracy(self.state.decoder.factor_codes, self.data, self.labelled, self.device,
                                       self.probe)
        return {f"probe_acc/{name}": a for name, a in zip(self.labelled.names, accuracy, strict=True)}

    def _labelled_batch(self, step: int) -> tuple[torch.Tensor, int]:
        """(this rank's slice, global size) of step ``step``'s batch of labelled images."""
        batch = labelled_positions(self.cfg, self.labelled, step)
        return batch[sampling.rank_slice(len(batch))], len(batch)

    def code_tables(self) -> list[torch.nn.Parameter]:
        return [self.state.codes.residual]

    @torch.no_grad()
    def final_content(self) -> torch.Tensor:
        """g^c of every training image (N, Dc) in eval mode: a label's row where the image has one."""
        fc = self.state.decoder.factor_codes
        fc.eval()
        codes = []
        for chunk in torch.arange(len(self.data)).split(256):
            x = self.data.images[chunk].to(self.device).float().div_(255)
            codes.append(fc(x, self.known[chunk.to(self.device)])[0].cpu())
        fc.train()
        return torch.cat(codes)

    def diagnostics(self, content: torch.Tensor, logger: MetricsLogger) -> dict[str, float]:
        """What stage 1 learnt from its labels, against the ground truth (never a training signal): its
        classifiers' accuracy per factor on the unlabelled images, the supervised-only references' beside
        it (their accuracy curves on the probe images go to ``logger`` at their steps: ``latent/ref/probe_acc/
        <factor>`` every stage-1 epoch, ``latent/best_ref/probe_acc/<factor>`` every tenth of the best reference's
        refit), and the scores of its codes g^c under the evaluation's own protocol."""
        names, lat = self.labelled.names, self.cfg.latent
        accuracy = classifier_accuracy(self.state.decoder.factor_codes, self.data, self.labelled, self.device)
        result = {f"latent/final/classifier_acc/{n}": a for n, a in zip(names, accuracy, strict=True)}
        matched = matched_reference_steps(lat, self.steps_per_epoch)
        steps = progress.Bounded(self.progress, matched + best_reference_steps(lat, len(names)),
                                 f"[stage 1 references, seed {self.cfg.run.seed}]")  # no silent minutes after 100 %
        if matched:
            reference, curve = train_reference(self.cfg, self.data, self.labelled, self.device, matched,
                                               lambda step: labelled_positions(self.cfg, self.labelled, step),
                                               self.steps_per_epoch if len(self.probe) else 0, self.probe, steps.tick)
            _log_curve(logger, "latent/ref/probe_acc", names, curve)
            result |= {f"latent/final/ref_accuracy/{n}": a for n, a in zip(names, reference, strict=True)}
            result["latent/final/ref_steps"] = float(matched)
        if lat.best_reference_steps:
            best, choices, curve = train_best_reference(self.cfg, self.data, self.labelled, self.device,
                                                        self.probe if len(self.probe) else None, steps.tick)
            _log_curve(logger, "latent/best_ref/probe_acc", names, curve)
            result |= best_reference_metrics(names, best, choices)
        steps.finish()
        return result | stage1_code_scores(self.setup, content, self.state.codes.residual.detach().cpu())

    def artifact(self, key: str, metrics: dict[str, float], logger: MetricsLogger) -> dict[str, Any]:
        content = self.final_content()
        fc, generator = self.state.decoder.factor_codes, self.state.decoder.generator
        diagnostics = self.diagnostics(content, logger) if distributed.is_main() else {}
        return {"key": key, "content": content, "residual": self.state.codes.residual.detach().cpu(),
                "class_codes": torch.zeros(self.data.num_classes, 0),
                "generator": {k: v.cpu() for k, v in generator.state_dict().items()},
                "factor_codes": {k: v.cpu() for k, v in fc.state_dict().items()},
                "metrics": metrics | diagnostics, "config": self.cfg.to_flat_dict(),
                "data_fingerprint": self.data.fingerprint, "labelled": self.labelled.labelled}


def matched_reference_steps(lat, steps_per_epoch: int) -> int:
    """The matched reference's classifier steps: stage 1's, at most ``REFERENCE_MAX_STEPS``; 0 when it is off."""
    return min(lat.epochs * steps_per_epoch, REFERENCE_MAX_STEPS) if lat.reference_classifier else 0


def labelled_positions(cfg: ContraLordConfig, labelled: labels.LabelledFactors, step: int) -> torch.Tensor:
    """(B,) the global batch of labelled images of stage-1 step ``step``: ``latent.batch_size`` of them at most,
    a multiple of the world size, one seeded draw per step."""
    pool, world = labelled.labelled, distributed.world_size()
    size = min(cfg.latent.batch_size, len(pool)) // world * world
    draw = torch.randperm(len(pool), generator=sampling.step_generator(cfg.run.seed, "latent", LABEL_DRAW + step))
    return pool[draw[:size]]


def _log_curve(logger: MetricsLogger, prefix: str, names: tuple[str, ...],
               curve: list[tuple[int, list[float]]]) -> None:
    for step, accuracy in curve:
        logger.log_metrics({f"{prefix}/{n}": a for n, a in zip(names, accuracy, strict=True)}, step)


def stage1_code_scores(setup: Setup, content: torch.Tensor, residual: torch.Tensor) -> dict[str, float]:
    """DCI, SAP, MIG and leakage of stage 1's own codes on the images the evaluation scores, as
    ``latent/final/codes/<metric>``: the D a stage-2 head that regresses g^c exactly would get."""
    order = scoring.partial_labels_order(setup.cfg, setup.data)
    scores = scoring.score_labelled_codes(setup.cfg, content[order].double().numpy(), residual[order].double().numpy(),
                                          scoring.labelled_values(setup, order), setup.labelled_names,
                                          setup.layout.content_names)
    return {f"latent/final/codes/{k}": v for k, v in scores.items() if isinstance(v, float)}
