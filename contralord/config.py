"""Configuration: frozen dataclasses, flat dotted overrides, validation.

The paper's symbols (ContraLORD, Sec. 3.2-3.3) map to fields once, here:
d -> latent.class_dim, g^c/g^r -> latent.content_dim/residual_dim, sigma -> latent.noise_std,
lambda -> latent.code_penalty, K -> encoder.queue_size, tau -> encoder.temperature,
m -> encoder.momentum, lambda_sup/con/res -> loss.sup/con/res (Eq. 6; rec weight is loss.rec).

Every way of configuring a run (CLI ``--set``, presets, sweeps, ablation specs) speaks the same flat
dotted keys, and ``to_flat_dict()`` is what gets logged, so params, sweep keys and table columns share
one vocabulary. Unknown keys, wrong types and invalid values raise ``ConfigError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A config key is unknown, mistyped or out of range; the message names the key."""


def _check(ok: bool, key: str, expected: str, found: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {found!r}")


def _choice(value: str, key: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, key, f"one of {', '.join(choices)}", value)


@dataclass(frozen=True)
class DataConfig:
    name: str = "shapes3d"  # see contralord.data.DATASET_NAMES
    path: str = ""  # file or folder for the real formats; unused by the embedded datasets
    image_size: int = 64  # 64 (LORD) or 32 (fast CPU runs)
    size: int = 0  # images kept (0 = all), chosen deterministically by run.seed
    class_factor: str = ""  # factors_file / smallnorb: which factor is the class ("" = dataset default)
    factor_filter: str = ""  # "shape:0,1;scale:0,1,2" keeps only those factor-value indices
    split: str = "train"  # train | test (formats that ship both)
    labelled_factors: str = ""  # partial-labels: comma-separated factor names ("" = the dataset's zerodim set)
    num_labels: int = 100  # partial-labels: images whose labelled factors are known (paper: 100; zerodim: 1000)
    max_array_gib: float = 16.0  # refuse any array a data file declares larger than this, before reading it

    def __post_init__(self):
        _check(self.image_size > 0, "data.image_size", "a positive int", self.image_size)
        _check(self.num_labels > 0, "data.num_labels", "a positive int", self.num_labels)
        _check(self.max_array_gib > 0, "data.max_array_gib", "a positive size in GiB", self.max_array_gib)
        _check(self.size >= 0, "data.size", "an int >= 0 (0 = all)", self.size)
        _choice(self.split, "data.split", ("train", "test"))
        parse_factor_filter(self.factor_filter)


@dataclass(frozen=True)
class LatentConfig:
    """Stage 1, embedding optimisation (Eq. 1), after LORD."""

    class_dim: int = 256  # d: one class code per class
    content_dim: int = 64  # g^c: one content code per image
    residual_dim: int = 64  # g^r: one residual code per image
    noise_std: float = 1.0  # sigma of z ~ N(0, sigma^2 I) added to g^c and g^r in training
    code_penalty: float = 0.001  # lambda on ||g^c||^2 + ||g^r||^2
    recon_loss: str = "mse"  # l of both stages: mse | bce (binary images, zerodim's dSprites; fp32) | perceptual
    vgg_weights: str = ""  # torchvision vgg16 state_dict file, needed for recon_loss=perceptual
    generator_width: int = 256  # channels of the generator's conv blocks (LORD: 256)
    init_scale: float = 0.05  # codes start uniform in +-init_scale (LORD)
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-4  # generator learning rate (Adam, betas 0.5/0.999, cosine decay)
    lr_codes: float = 1e-3  # code tables: 10x the generator, as LORD
    structure: str = "auto"  # factors (a code per labelled factor) | class (LORD: d per class) | auto
    factor_dim: int = 1  # factors: dims of each labelled factor's code (zerodim: 1)
    classifier_width: int = 16  # factors: first conv width of the classifier for unlabelled images
    lr_classifier: float = 1e-3  # factors: classifier learning rate (zerodim 1e-4; 1e-3 at our scale)
    classifier_beta1: float = 0.5  # factors: Adam beta1 of the classifiers (zerodim: 0.5, as every group)
    labelled_weight: float = 10.0  # factors: weight of the labelled batch's loss (zerodim: 10)
    label_ce: float = 0.001  # factors: cross-entropy weight of the classifier on labelled images
    entropy: float = 0.001  # factors: entropy weight of the classifier on unlabelled images
    entropy_start_epoch: int = 20  # factors: the entropy term is off before this epoch (zerodim: 20 of 200)
    classifier_trunks: str = "per_factor"  # factors: per_factor (zerodim: one CNN per factor) | shared (one CNN)
    factor_init: str = "symmetric"  # factors: tables uniform in +-init_scale (zerodim) | positive: [0, init_scale)
    soft_code_table_grad: bool = False  # factors: unlabelled images' softmax(C(x)) @ E also trains E (zerodim: no)
    reference_classifier: bool = True  # factors: also train the classifier on the labels alone, log its accuracy
    best_reference_steps: int = 480  # factors: the best reference's search runs this long (0 = no best reference)

    def __post_init__(self):
        for key in ("class_dim", "content_dim", "residual_dim", "generator_width", "epochs", "batch_size"):
            _check(getattr(self, key) > 0, f"latent.{key}", "a positive int", getattr(self, key))
        _check(self.noise_std >= 0, "latent.noise_std", "sigma >= 0", self.noise_std)
        _check(self.code_penalty >= 0, "latent.code_penalty", "lambda >= 0", self.code_penalty)
        _check(self.init_scale >= 0, "latent.init_scale", "a float >= 0", self.init_scale)
        _check(self.lr > 0 and self.lr_codes > 0, "latent.lr", "positive learning rates", (self.lr, self.lr_codes))
        _choice(self.recon_loss, "latent.recon_loss", ("mse", "bce", "perceptual"))
        _choice(self.structure, "latent.structure", ("auto", "factors", "class"))
        for key in ("factor_dim", "classifier_width"):
            _check(0 < getattr(self, key) <= MAX_FACTOR_DIM, f"latent.{key}", f"an int in [1, {MAX_FACTOR_DIM}]",
                   getattr(self, key))
        _check(0 <= self.classifier_beta1 < 1, "latent.classifier_beta1", "a float in [0, 1)", self.classifier_beta1)
        for key in ("lr_classifier", "labelled_weight", "label_ce", "entropy"):
            _check(getattr(self, key) >= 0, f"latent.{key}", "a float >= 0", getattr(self, key))
        _check(self.entropy_start_epoch >= 0, "latent.entropy_start_epoch", "an int >= 0", self.entropy_start_epoch)
        _check(0 <= self.best_reference_steps <= MAX_REFERENCE_STEPS, "latent.best_reference_steps",
               f"an int in [0, {MAX_REFERENCE_STEPS}]", self.best_reference_steps)
        _choice(self.classifier_trunks, "latent.classifier_trunks", ("per_factor", "shared"))
        _choice(self.factor_init, "latent.factor_init", ("symmetric", "positive"))


@dataclass(frozen=True)
class EncoderConfig:
    """Stage 2, encoder pre-training (Eq. 2-6) with MoCo-style momentum encoders and queues."""

    backbone: str = "lord"  # f: lord | resnet18 | resnet50
    backbone_width: int = 64  # first conv width of the lord encoder
    pretrained_path: str = ""  # user-supplied backbone weights; never downloaded
    head_hidden: int = 0  # hidden width of h_d, h_c, h_r (0 = linear heads)
    queue_size: int = 12800  # K, for each of the two queues
    temperature: float = 0.07  # tau
    momentum: float = 0.999  # m of the EMA update f_m <- m f_m + (1 - m) f
    negatives: str = "queue"  # queue (MoCo, K negatives) | batch (SimCLR NT-Xent, in-batch negatives)
    shared_momentum_backbone: bool = True  # one EMA backbone feeds both momentum heads (same math)
    allow_large_queue: bool = False  # K >= N: warn instead of refusing
    augment_anchor: bool = False  # also augment the anchor view (MoCo/SimCLR); default: original x_i
    augment: bool = True  # false: no crop, flip or jitter at all (the query view is x_i itself: a reading of Eq. 4)
    crop_scale_min: float = 0.2  # random resized crop scale range (min, 1); 1 disables cropping
    flip: bool = True  # random horizontal flip
    color_jitter: float = 0.4  # brightness/contrast/saturation strength; 0 disables
    finetune_generator: bool = False  # let L_rec update G in stage 2 (LORD's amortisation does)
    epochs: int = 200
    steps: int = 0  # the budget in optimiser steps, replacing epochs when > 0 (a batch-size sweep at equal steps)
    batch_size: int = 256
    lr: float = 1e-3  # Adam, under encoder.schedule
    weight_decay: float = 0.0
    # the lr schedule (contralord/schedules.py): cosine (anneals to 0 at the budget) | wsd (warmup-stable-decay: linear
    # warm-up, constant lr, a 1-sqrt cooldown over the budget's last decay_fraction; extendable, Hägele et al. 2024)
    schedule: str = "cosine"
    warmup_steps: int = 0  # wsd: linear warm-up steps
    decay_fraction: float = 0.2  # wsd: the cooldown's share of the budget (of each rung's)
    # wsd: budgets in steps at which a run is evaluated ("160,640,2560"); the top one is the budget (encoder.steps)
    rungs: str = ""
    positive: str = "online"  # who encodes the query view g_q: online f (Algorithm 1 line 12) | momentum f_m
    anchor: str = "online"  # g_i of Eq. 4/5: online output on the original x_i | stage1 code g~_i
    projection_dim: int = 64  # InfoNCE on an MLP projection of h_c / h_r (0 = on the codes themselves)
    preserve_labelled: bool = True  # factors: no augmentation that changes a labelled factor (see augment.py)
    model: str = "contralord"  # contralord (Eq. 2-6) | vae (Locatello et al. 2020's semi-supervised beta-VAE)
    # h_c: learned on f (Eq. 3) | stage1_frozen: stage 1's labelled-factor classifiers, copied and fixed (zerodim's
    # amortisation) | stage1_init: the same copy as h_c's starting point, trained by stage 2 (models/stage1_content.py)
    content_head: str = "learned"
    # L_con (Eq. 4): a queued key whose image has the anchor's labelled-factor values (its labels, else stage 1's
    # classifiers' first choice) is dropped from the negatives: it is no false negative (latent_result.py)
    label_aware_negatives: bool = False
    # L_con and L_res: a queued key encoded from the anchor's own image (an earlier step's view of it) is dropped
    # from the negatives; it sits in the queue with probability ~ L(L+1)/2/(N/B)^2, L = K/B (models/queue.py)
    mask_own_keys: bool = False
    # BatchNorm backbones (resnet*): BN statistics per group of batch_size / bn_splits images of a rank's batch, and
    # the query views shuffled, so no BN group holds both views of an image (MoCo's shuffle-BN on one device,
    # models/split_bn.py); 1 = one BN batch per forward (the positive pair shares its statistics). lord has no BN
    bn_splits: int = 8

    def __post_init__(self):
        for key in ("backbone_width", "epochs", "batch_size"):
            _check(getattr(self, key) > 0, f"encoder.{key}", "a positive int", getattr(self, key))
        _check(self.head_hidden >= 0, "encoder.head_hidden", "an int >= 0", self.head_hidden)
        _check(0 <= self.steps <= 10**9, "encoder.steps", "an int in [0, 1e9] (0 = encoder.epochs)", self.steps)
        _check(self.queue_size > 0, "encoder.queue_size", "K > 0", self.queue_size)
        _check(self.temperature > 0, "encoder.temperature", "tau > 0", self.temperature)
        _check(0.0 <= self.momentum <= 1.0, "encoder.momentum", "m in [0, 1]", self.momentum)
        _check(0.0 < self.crop_scale_min <= 1.0, "encoder.crop_scale_min", "a float in (0, 1]", self.crop_scale_min)
        _check(self.color_jitter >= 0, "encoder.color_jitter", "a float >= 0", self.color_jitter)
        _check(self.lr > 0, "encoder.lr", "a positive learning rate", self.lr)
        _check(self.weight_decay >= 0, "encoder.weight_decay", "a float >= 0", self.weight_decay)
        _choice(self.backbone, "encoder.backbone", ("lord", "resnet18", "resnet50"))
        _choice(self.negatives, "encoder.negatives", ("queue", "batch"))
        _choice(self.positive, "encoder.positive", ("online", "momentum"))
        _choice(self.anchor, "encoder.anchor", ("online", "stage1"))
        _check(self.projection_dim >= 0, "encoder.projection_dim", "an int >= 0", self.projection_dim)
        _check(self.bn_splits >= 1, "encoder.bn_splits", "an int >= 1", self.bn_splits)
        _check(self.backbone == "lord" or self.batch_size % self.bn_splits == 0, "encoder.bn_splits",
               f"a divisor of encoder.batch_size={self.batch_size} (BN groups of equal size)", self.bn_splits)
        _choice(self.model, "encoder.model", ("contralord", "vae"))
        _choice(self.content_head, "encoder.content_head", CONTENT_HEADS)
        self._check_schedule()

    def _check_schedule(self) -> None:
        from contralord.schedules import branch_start, parse_rungs

        _choice(self.schedule, "encoder.schedule", ("cosine", "wsd"))
        _check(self.warmup_steps >= 0, "encoder.warmup_steps", "an int >= 0", self.warmup_steps)
        _check(0.0 < self.decay_fraction < 1.0, "encoder.decay_fraction", "a float in (0, 1)", self.decay_fraction)
        try:
            rungs = parse_rungs(self.rungs)
        except ValueError as error:
            raise ConfigError(f"encoder.rungs: {error}") from None
        if not rungs:
            return
        _check(self.schedule == "wsd", "encoder.rungs", "encoder.schedule=wsd (a cosine run has not annealed at a "
               "lower rung; run a cosine ladder as separate runs with encoder.steps)", self.rungs)
        _check(self.steps in (0, rungs[-1]), "encoder.steps", f"0 or the top rung {rungs[-1]} (encoder.rungs="
               f"{self.rungs} sets the budget)", self.steps)
        first = branch_start(rungs[0], self.decay_fraction)
        _check(self.warmup_steps <= first, "encoder.warmup_steps", f"at most {first}, where the first rung's cooldown "
               f"starts (encoder.rungs={self.rungs}, encoder.decay_fraction={self.decay_fraction})", self.warmup_steps)


@dataclass(frozen=True)
class LossConfig:
    """Weights of Eq. 6: L = rec * L_rec + sup * L_sup + con * L_con + res * L_res. A weight of 0
    switches the term off: it is then not computed at all."""

    # The paper gives none of lambda_sup/con/res (its "(L_rec + .L_sup)" lost one). lambda_con and lambda_res keep
    # their term's gradient on the backbone within 10x of L_rec's (logged per epoch as encoder/train/grad/<term>;
    # cpu preset, partial labels: README, "Loss scales"). lambda_sup was 0.1 by that rule until the lambda_sup
    # sweep on the zerodim-style stage 1 (RESULTS.md): 1 gave the full method +0.12 D (3 of 3 seeds) and removed
    # the contrastive terms' penalty at 640 steps, while rec+sup is indifferent to it (PRE_SUP_WEIGHT_VALUES).
    rec: float = 1.0
    sup: float = 1.0  # lambda_sup
    con: float = 0.1  # lambda_con
    res: float = 0.2  # lambda_res
    sup_reduction: str = "mean"  # L_sup per image: mean over code dims (LORD) | sum (Eq. 3 as printed)
    kl: float = 1.0  # encoder.model=vae: beta of the KL term
    label: float = 1.0  # encoder.model=vae: gamma of the supervised loss on the labelled latents

    def __post_init__(self):
        for key in ("rec", "sup", "con", "res", "kl", "label"):
            _check(getattr(self, key) >= 0, f"loss.{key}", "a weight >= 0", getattr(self, key))
        _check(any(getattr(self, k) > 0 for k in ("rec", "sup", "con", "res")), "loss", "at least one weight > 0", 0)
        _choice(self.sup_reduction, "loss.sup_reduction", ("mean", "sum"))


CONTENT_HEADS = ("learned", "stage1_frozen", "stage1_init")
MAX_FACTOR_DIM = 256  # latent.factor_dim, latent.classifier_width: 1e6 asked for a 6 GB generator after preflight
MAX_GRID_SIZE = 64  # eval.grid_size: images per side of a grid (64 x 64 = 4096 generated images)
MAX_REFERENCE_STEPS = 100_000  # latent.best_reference_steps: 4 recipes of it, then up to as many refits


@dataclass(frozen=True)
class EvalConfig:
    """The evaluation at the end of stage 2 (``contralord.evaluation``)."""

    enabled: bool = True  # run it at the end of training
    protocol: str = "partial-labels"  # partial-labels (the paper's, after zerodim) | all-factors (see evaluation)
    num_train: int = 10000  # all-factors: held-out codes the metric predictors are fitted on (disentanglement_lib)
    num_test: int = 5000  # all-factors: held-out codes they are scored on (partial-labels: an 80/20 split)
    dci_jobs: int = 0  # parallel DCI fits (0 = one per factor, capped by torch's threads and the cores)
    grid_size: int = 8  # images per side of the reconstruction and translation grids
    inception_weights: str = ""  # Inception-v3 weights for FID (user-supplied; FID skipped if empty)
    lpips_weights: str = ""  # AlexNet weights for LPIPS's backbone (user-supplied; skipped if empty)
    scored_code: str = "encoder"  # partial-labels: the scored g^c is h_c(f(x)) (encoder) | stage 1's
    # classifier codes softmax(C_j(x)) @ E_j of every image, no label used (classifier: zerodim's evaluation)
    # Table 1's floors beside the linear probe (contralord/floors.py): the probe on raw pixels, and a classifier
    # trained for floor_steps steps on the classes of data.num_labels images alone
    floors: bool = False
    floor_steps: int = 400

    def __post_init__(self):
        _choice(self.protocol, "eval.protocol", ("partial-labels", "all-factors"))
        _choice(self.scored_code, "eval.scored_code", ("encoder", "classifier"))
        for key in ("num_train", "num_test", "grid_size", "floor_steps"):
            _check(getattr(self, key) > 0, f"eval.{key}", "a positive int", getattr(self, key))
        # a grid is grid_size x grid_size generated images: 3000 asked for 9 million of them after training
        _check(self.grid_size <= MAX_GRID_SIZE, "eval.grid_size", f"at most {MAX_GRID_SIZE}", self.grid_size)
        _check(self.dci_jobs >= 0, "eval.dci_jobs", "an int >= 0", self.dci_jobs)


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads (0 = torch's default)
    checkpoint_every: int = 0  # also checkpoint every N steps (0 = at epoch ends only)
    latent_cache: str = ""  # folder of stage-1 artifacts keyed by hash ("" = <out>/latent_cache)
    eval_size: int = 2000  # training images encoded for the end-of-run summary
    method: str = "contralord"  # the row name of Table 2 (set by the method presets; changes no number)
    precision: str = "fp32"  # fp32 | bf16 (autocast for the forward passes; contralord/training/precision.py)
    channels_last: bool = False  # NHWC convolutions and batches
    compile: bool = False  # torch.compile the trained modules
    # a finished WSD ladder's stable state (<its out>/checkpoints/stable.pt) this run extends: it starts there with
    # that run's rung evaluations and trains only the steps above them (contralord/run/ladder.py); the numbers equal a
    # straight run's, so no hash or reuse key holds it
    extend_from: str = ""

    def __post_init__(self):
        # torch's generators take seeds below 2**64 and the stages add small offsets: keep to 32 bits
        _check(0 <= self.seed < 2**32, "run.seed", "an int from 0 to 2**32 - 1", self.seed)
        _check(self.threads >= 0, "run.threads", "an int >= 0", self.threads)
        _check(self.checkpoint_every >= 0, "run.checkpoint_every", "an int >= 0", self.checkpoint_every)
        _check(self.eval_size >= 0, "run.eval_size", "an int >= 0", self.eval_size)
        _check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"), "run.device",
               "auto, cpu, cuda or cuda:N", self.device)
        _choice(self.precision, "run.precision", ("fp32", "bf16"))


# The keys added with the paper's evaluation protocol, at the values that reproduce the runs (and the
# numbers) of the earlier protocol: the ``all-factors`` preset, and how old config.json files are read.
PRE_PROTOCOL_VALUES: dict[str, Any] = {
    "eval.protocol": "all-factors", "latent.structure": "class", "encoder.positive": "momentum",
    "encoder.anchor": "online", "encoder.projection_dim": 0, "encoder.preserve_labelled": False,
    "loss.sup_reduction": "sum",
}

# The stage-1 classifier keys added after the partial-labels protocol, at the values that runs saved before
# them were trained with (``from_saved`` fills them in for a config.json that lacks them).
PRE_ZERODIM_CLASSIFIER_VALUES: dict[str, Any] = {
    "latent.entropy_start_epoch": 0, "latent.classifier_trunks": "shared", "latent.factor_init": "positive",
    "latent.soft_code_table_grad": True, "latent.reference_classifier": False,
}

# lambda_sup's default before it became 1 (runs save every key, so no saved config needs it; comparisons with
# older code pass it)
PRE_SUP_WEIGHT_VALUES: dict[str, Any] = {"loss.sup": 0.1}

# keys whose default is what every run logged before them did (tests show the default path unchanged bit for bit):
# a table reads an older run's missing key as this value, so rows that differ in it alone still compare
KEYS_ADDED_WITH_OLD_BEHAVIOUR: dict[str, Any] = {"encoder.content_head": "learned",
                                                 "encoder.label_aware_negatives": False,
                                                 "encoder.schedule": "cosine", "encoder.warmup_steps": 0,
                                                 "encoder.decay_fraction": 0.2, "encoder.rungs": "",
                                                 "encoder.mask_own_keys": False, "run.extend_from": "",
                                                 "encoder.bn_splits": 1, "eval.floors": False, "eval.floor_steps": 400,
                                                 "latent.classifier_beta1": 0.5}


def as_it_ran(saved: dict[str, Any], text: bool = False) -> dict[str, Any]:
    """A run's saved or logged flat config with each key it predates at the value it ran with
    (``KEYS_ADDED_WITH_OLD_BEHAVIOUR``); ``text``: those values as MLflow logs params (``str``)."""
    return {k: str(v) if text else v for k, v in KEYS_ADDED_WITH_OLD_BEHAVIOUR.items()} | dict(saved)


# a safety cap (changes what is refused, never a number); where an extended ladder starts (equal to a straight run)
HASH_IGNORED = ("data.max_array_gib", "run.extend_from")
# Keys added after stage-1 artifacts were cached: at the value those artifacts were trained under a key is left out
# of ``section_hash``, so the artifacts trained before it existed keep their cache key. (The keys above them were
# added before this rule and stay in every hash, so that the runs hashed with them are found again.)
HASH_SINCE_ADDED = {k: KEYS_ADDED_WITH_OLD_BEHAVIOUR[k] for k in ("latent.classifier_beta1",)}

SECTIONS = {"data": DataConfig, "latent": LatentConfig, "encoder": EncoderConfig, "loss": LossConfig,
            "eval": EvalConfig, "run": RunConfig}


@dataclass(frozen=True)
class ContraLordConfig:
    data: DataConfig = field(default_factory=DataConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        # bf16 rounds the generator's sigmoid to exactly 1.0 from a logit of about 6.5, where BCE's gradient is 0
        _check(self.latent.recon_loss != "bce" or self.run.precision == "fp32", "latent.recon_loss",
               "mse or perceptual with run.precision=bf16 (bce needs fp32)", self.latent.recon_loss)

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None = None) -> ContraLordConfig:
        """Build a config from flat dotted keys, e.g. ``{"encoder.queue_size": 512}``.

        Values may be typed Python values or strings (from a command line); both are checked.
        """
        grouped: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for key, value in (overrides or {}).items():
            section, _, name = key.partition(".")
            known = {f.name: f for f in dataclasses.fields(SECTIONS[section])} if section in SECTIONS else {}
            if name not in known:
                raise ConfigError(f"{key}: unknown config key{_did_you_mean(key)}")
            grouped[section][name] = _coerce(key, value, known[name].type)
        return cls(**{name: SECTIONS[name](**values) for name, values in grouped.items()})

    @classmethod
    def from_saved(cls, saved: dict[str, Any], overrides: dict[str, Any] | None = None) -> ContraLordConfig:
        """A run's saved ``config.json`` (plus ``overrides``), upgrading runs written before the paper's
        protocol existed: their missing keys take the values those runs were trained with."""
        saved = dict(saved)
        if "eval.few_labels" in saved or saved.get("eval.protocol") in ("standard", "few-labels"):  # saved before
            saved.pop("eval.few_labels", None)
            saved = PRE_PROTOCOL_VALUES | saved | {"eval.protocol": "all-factors"}
        if "latent.structure" in saved and "latent.classifier_trunks" not in saved:  # saved before those keys
            saved = PRE_ZERODIM_CLASSIFIER_VALUES | saved
        if "latent.structure" in saved and "latent.best_reference_steps" not in saved:  # saved before the best ref
            saved = {"latent.best_reference_steps": 0} | saved
        if "encoder.backbone" in saved and "encoder.bn_splits" not in saved:  # saved before split BN: one BN batch
            saved = {"encoder.bn_splits": 1} | saved
        return cls.from_overrides(saved | dict(overrides or {}))

    def to_flat_dict(self) -> dict[str, Any]:
        """The whole config as ``{"section.key": value}`` (what MLflow logs as params)."""
        return {f"{s}.{k}": v for s in SECTIONS for k, v in dataclasses.asdict(getattr(self, s)).items()}

    def section_hash(self, *sections: str) -> str:
        """sha256 (16 hex) of the named sections' flat values (less ``HASH_IGNORED``, which change no
        number, and less ``HASH_SINCE_ADDED`` keys at their old value): a cache key for stage-1 artifacts."""
        flat = {k: v for k, v in self.to_flat_dict().items() if k.split(".")[0] in sections and k not in HASH_IGNORED
                and not (k in HASH_SINCE_ADDED and v == HASH_SINCE_ADDED[k])}
        return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


def all_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, c in SECTIONS.items() for f in dataclasses.fields(c)]


def _did_you_mean(key: str) -> str:
    """' (did you mean a.b?)' for the nearest known keys, else where to find them all."""
    close = difflib.get_close_matches(key, all_keys(), n=3, cutoff=0.6)
    section = key.partition(".")[0]
    if not close and section in SECTIONS:
        return f" (keys of {section}: {', '.join(f.name for f in dataclasses.fields(SECTIONS[section]))})"
    if not close:
        return f" (sections: {', '.join(SECTIONS)}; every key is in contralord/config.py)"
    return f" (did you mean {' or '.join(close)}?)"


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _coerce(key: str, value: Any, type_name: str) -> Any:
    """Turn ``value`` into the field's type, or raise ConfigError naming ``key``."""
    kind = _TYPES[type_name]
    if isinstance(value, str) and kind is not str:
        return _parse_string(key, value, kind)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind:
        raise ConfigError(f"{key}: expected {type_name}, got {value!r} ({type(value).__name__})")
    if kind is float and not math.isfinite(value):  # inf/nan pass every range check and train NaNs
        raise ConfigError(f"{key}: expected a finite float, got {value!r}")
    return value


def _parse_string(key: str, text: str, kind: type) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0"):
            raise ConfigError(f"{key}: expected bool (true/false), got {text!r}")
        return lowered in ("true", "1")
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{key}: expected {kind.__name__}, got {text!r}") from None
    if kind is float and not math.isfinite(value):  # inf/nan pass every range check and train NaNs
        raise ConfigError(f"{key}: expected a finite float, got {text!r}")
    return value


def parse_factor_filter(text: str) -> dict[str, list[int]]:
    """``"shape:0,1;scale:2"`` -> ``{"shape": [0, 1], "scale": [2]}`` (the ``data.factor_filter`` syntax)."""
    result: dict[str, list[int]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, values = part.partition(":")
        try:
            result[name.strip()] = [int(v) for v in values.split(",")]
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(f"data.factor_filter: expected 'name:i,j;name2:k', got {text!r}")
    return result


def parse_set_args(items: list[str]) -> dict[str, str]:
    """``["a.b=1", "c.d=x"]`` (the CLI's repeated ``--set``) -> ``{"a.b": "1", "c.d": "x"}``."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        overrides[key.strip()] = value.strip()
    return overrides
