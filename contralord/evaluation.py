"""Evaluation of a trained encoder (ContraLORD Sec. 4.2-4.3): DCI, SAP, MIG, smoothness (Eq. 7), linear
probe, FID/LPIPS when the user supplies their weights, and LORD-style image grids.

Two protocols (``eval.protocol``), named in every metrics.json:
- **partial-labels** (default; the paper's "with 100 labels", after Gabbay, Cohen & Hoshen 2021 and
  their code avivga/zerodim): a few images carried labels of some factors during training
  (``contralord.labels``). The scored code is the labelled-factor code h_c(f(x)) (under the LORD class
  structure, which has no such code, the generative code [h_c, h_r]); it is scored against the
  labelled factors only, on training images, as ``contralord.scoring`` describes (its split, DCI, SAP, MIG,
  and ``residual_leakage``: a residual code that knows the labelled factors is not disentangled from them).
- **all-factors** (our first protocol, a harder and different question): [h_c, h_r] of held-out
  images against every factor but the class, disentanglement_lib's split (``eval.num_train`` fit,
  ``eval.num_test`` scored). LORD-family codes are not meant to be axis-aligned with the residual
  factors, so this cannot reproduce the paper's numbers; it stays for comparison with earlier runs.

Both: **smoothness** over the content and residual halves of the scored images; the **linear probe**
classifies the class from frozen backbone features f(x), fitted on training images and scored on
held-out ones (the format's test split, else images of the same source outside the training subset,
else the training images with ``heldout: false``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.utils import save_image

from contralord import floors, metrics
from contralord.config import ConfigError, ContraLordConfig, parse_factor_filter
from contralord.data import DataError, ImageFactorData, build_dataset
from contralord.encoding import BATCH, CodeCache, encode_classifier
from contralord.lagfree_nce import lagfree_infonce, lagfree_size
from contralord.models.contralord import OnlineEncoder
from contralord.scoring import dci_jobs, labelled_values, partial_labels_order, score_labelled_codes, scored_order
from contralord.setup import Setup
from contralord.stage2.encoder_stage import query_augmentation
from contralord.training import checkpoint


def heldout_dataset(cfg: ContraLordConfig, train: ImageFactorData, size: int) -> tuple[ImageFactorData, bool]:
    """Up to ``size`` images the encoder was not trained on; (data, True), or (train, False) if none."""
    d = cfg.data
    common = dict(class_factor=d.class_factor or None, at_most=True)
    try:
        test = build_dataset(d.name, d.path or None, d.image_size, size, cfg.run.seed + 1, split="test", **common)
        if len(test):
            return test, True
    except DataError:
        pass  # a single-split format: hold out what the training subset left
    rest = build_dataset(d.name, d.path or None, d.image_size, size, cfg.run.seed + 1, split=d.split,
                         factor_filter=parse_factor_filter(d.factor_filter) or None,
                         exclude=train.positions.numpy() if train.positions is not None else None, **common)
    return (rest, True) if len(rest) else (train, False)


def _disentanglement(cfg: ContraLordConfig, codes: np.ndarray, factors: np.ndarray) -> dict[str, float]:
    """DCI, SAP, MIG of ``codes`` (N, D) against ``factors`` (N, F), split train/test as configured."""
    n_test = min(cfg.eval.num_test, len(codes) // 3)
    train_c, train_f, test_c, test_f = codes[n_test:], factors[n_test:], codes[:n_test], factors[:n_test]
    jobs = dci_jobs(cfg, factors.shape[1])
    result = metrics.compute_mig(train_c, train_f)
    result |= metrics.compute_sap(train_c, train_f, test_c, test_f)
    result |= metrics.compute_dci(train_c, train_f, test_c, test_f, random_state=cfg.run.seed, n_jobs=jobs)
    return result | {"num_metric_train": float(len(train_c)), "num_metric_test": float(len(test_c))}


def _informative_factors(data: ImageFactorData) -> tuple[np.ndarray, list[str]]:
    """The non-class factors that vary in ``data``: (N, F') and their names."""
    factors = data.factors.numpy()
    keep = [j for j in range(factors.shape[1])
            if not np.array_equal(factors[:, j], data.classes.numpy()) and len(np.unique(factors[:, j])) > 1]
    return factors[:, keep], [data.factor_names[j] for j in keep]


def _linear_probe(cfg, train: ImageFactorData, train_codes: CodeCache, test: ImageFactorData, test_order,
                  test_features, device: torch.device) -> dict[str, float]:
    """The class from frozen f(x): fitted on ``eval.num_train`` training images, scored on ``test[test_order]``;
    ``probe_top5`` only with more than 5 classes, and with ``eval.floors`` Table 1's floors on the same images."""
    n = min(cfg.eval.num_train, len(train))
    index = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.run.seed))[:n]
    train_features = train_codes(index)["features"]  # (n, F)
    train_classes, test_classes = train.classes[index].numpy(), test.classes[test_order].numpy()
    probe = metrics.compute_linear_probe(train_features, train_classes, test_features, test_classes)
    classes = int(np.unique(train.classes.numpy()).size)
    result = {"probe_classes": float(classes)} | floors.top_k(probe, "probe", classes)
    if cfg.eval.floors:
        test_images = test.images[test_order]
        result |= floors.pixel_probe(train.images[index], train_classes, test_images, test_classes, classes)
        result |= floors.supervised_floor(cfg, train, test_images, test_classes, device)
    return result


def _partial_labels(setup: Setup, codes: dict[str, np.ndarray], values: np.ndarray,
                    classifier_codes: np.ndarray | None) -> dict[str, Any]:
    """The paper's protocol on encoded training images: ``codes`` from ``encode``, ``values`` (N, F_l);
    ``classifier_codes`` (N, Dc) replaces h_c under ``eval.scored_code=classifier``."""
    names, code_names = setup.labelled_names, setup.layout.content_names
    if classifier_codes is not None:
        scored, what = classifier_codes, "stage1-classifier"
    elif setup.structure == "factors":
        scored, what = codes["content"], "content"
    else:  # LORD's class structure has no labelled-factor code: score the generative code
        scored, what = np.concatenate([codes["content"], codes["residual"]], axis=1), "content+residual"
        code_names = code_names + [f"r{i}" for i in range(codes["residual"].shape[1])]
    return {"scored_code": what} | score_labelled_codes(setup.cfg, scored, codes["residual"], values, names, code_names)


def evaluate(setup: Setup, online: OnlineEncoder, out_dir: str | Path, device: torch.device | None = None,
             train_codes: CodeCache | None = None, factor_codes: torch.nn.Module | None = None) -> dict[str, Any]:
    """Compute every metric the dataset allows on the run's training set (``setup.data``) and held-out images,
    write ``metrics.json`` and the PNG grids.

    ``train_codes``: the codes of the training images, shared with the caller (``trainer.train``'s summary
    reads the same images); by default a fresh ``CodeCache``. Each image set is encoded once.
    ``factor_codes``: stage 1's labelled-factor classifiers and tables (``models.latent.FactorCodes``),
    needed by ``eval.scored_code=classifier``.
    """
    cfg, train = setup.cfg, setup.data
    classifier = cfg.eval.scored_code == "classifier"
    if classifier and factor_codes is None:
        raise ConfigError("eval.scored_code: classifier needs stage 1's labelled-factor classifiers "
                          "(latent.structure=factors and a stage 1), none given")
    out_dir, device = Path(out_dir), device or torch.device("cpu")
    if train_codes is None:
        train_codes = CodeCache(online, train.images, device)
    partial = cfg.eval.protocol == "partial-labels" and train.factors is not None
    if partial:  # the training images, as zerodim scores them (stage 1's own codes are scored on the same)
        data, heldout = train, False
        order = partial_labels_order(cfg, train)
    else:
        data, heldout = heldout_dataset(cfg, train, cfg.eval.num_train + cfg.eval.num_test)
        order = scored_order(cfg, len(data), len(data))
    size = len(order)
    codes = _codes_of(data, train, train_codes)(order)
    result: dict[str, Any] = {"protocol": cfg.eval.protocol, "heldout": heldout, "num_eval_images": size,
                              "structure": setup.structure}
    result |= metrics.compute_smoothness(codes["content"], codes["residual"]) | spread(online, codes["content"])
    result["smoothness_centred"] = metrics.compute_smoothness(codes["content"], codes["residual"],
                                                              centre=True)["smoothness"]
    if cfg.encoder.model != "vae":  # the InfoNCE terms without the momentum encoder's lag (contralord/lagfree_nce.py)
        lagfree = order[:lagfree_size(cfg, size)]
        result |= lagfree_infonce(cfg, online, data.images[lagfree], query_augmentation(setup), device)
    if partial:
        soft = encode_classifier(factor_codes, train.images, order, device) if classifier else None
        result |= _partial_labels(setup, codes, labelled_values(setup, order), soft)
    elif data.factors is not None:
        factors, names = _informative_factors(data)
        result["factors"] = names
        generative = np.concatenate([codes["content"], codes["residual"]], axis=1)  # (N, Dc + Dr)
        result |= _disentanglement(cfg, generative, factors[order.numpy()])
    if partial:  # the probe is scored on held-out images under both protocols
        data, _ = heldout_dataset(cfg, train, cfg.eval.num_test)
        order = torch.arange(len(data))
        codes = _codes_of(data, train, train_codes)(order)
    if len(np.unique(data.classes.numpy())) > 1:
        result |= _linear_probe(cfg, train, train_codes, data, order, codes["features"], device)
    if online.generator is not None:
        result |= render_grids(cfg, online, data, order[:cfg.eval.grid_size], out_dir, device)
        result |= generative_scores(cfg, online, data, order[:cfg.eval.num_test], device)
    checkpoint.write_json_atomic(result, out_dir / "metrics.json")
    return result


def spread(online, content: np.ndarray) -> dict[str, float]:
    """How the scored h_c spread (``metrics/smoothness.py``, "Which way is better"): Eq. 7 on centred codes
    (content and residual halves summed, as ``smoothness``) is left to the caller; here Wang & Isola's uniformity
    of the centred h_c, and of the projection L_con acts on (h_c itself, uncentred, where there is no projection;
    left out for a model without the projectors, such as a baseline's)."""
    out = {"uniformity_content": metrics.uniformity(content, "content")}
    projectors = getattr(online, "projectors", None)
    if projectors is not None:
        device = next(projectors.parameters(), torch.zeros(())).device
        with torch.inference_mode():
            projected = projectors.content(torch.from_numpy(content).float().to(device)).double().cpu().numpy()
        out["uniformity_projection"] = metrics.uniformity(projected, "projection", centre=False)
    return out


def _codes_of(data: ImageFactorData, train: ImageFactorData, train_codes: CodeCache) -> CodeCache:
    """``train_codes`` when ``data`` is the training set, else a cache of ``data``'s images."""
    return train_codes if data is train else CodeCache(train_codes.online, data.images, train_codes.device)


@torch.no_grad()
def render_grids(cfg, online: OnlineEncoder, data: ImageFactorData, index: torch.Tensor, out_dir: Path,
                 device: torch.device) -> dict[str, float]:
    """reconstructions.png (inputs over G(h_d, h_c, h_r)) and translation.png: cell (i, j) is
    G(d of image i, g^c and g^r of image j); the top row shows the images j, the left column images i.
    Also returns the reconstruction MSE of those images and, with user weights, LPIPS/FID."""
    online.eval()
    x = data.images[index].to(device).float().div(255)  # (n, C, H, W)
    d, gc, gr = online.heads(online.backbone(x))
    recon = online.generator(d, gc, gr)  # (n, C, H, W)
    n = len(index)
    rows_i, cols_j = torch.arange(n).repeat_interleave(n), torch.arange(n).repeat(n)  # (n*n,) cell (i, j)
    translated = online.generator(d[rows_i], gc[cols_j], gr[cols_j]).view(n, n, *x.shape[1:])
    blank = torch.ones_like(x[:1])
    top = torch.cat([blank, x])  # (n+1, C, H, W)
    body = torch.cat([torch.cat([x[i:i + 1], translated[i]]) for i in range(n)])
    out_dir.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat([x, recon]), out_dir / "reconstructions.png", nrow=n)
    save_image(torch.cat([top, body]), out_dir / "translation.png", nrow=n + 1)
    online.train()
    return {"recon_mse": float(torch.mean((recon - x) ** 2))}


@torch.no_grad()
def generative_scores(cfg, online: OnlineEncoder, data: ImageFactorData, index: torch.Tensor,
                      device: torch.device) -> dict[str, float]:
    """With user-supplied weights: LPIPS of reconstructions to their inputs, and FID of translations
    (each image's g^c, g^r with the class code of another, randomly paired image) to the real images."""
    if not (cfg.eval.lpips_weights or cfg.eval.inception_weights):
        return {}
    online.eval()
    pair = torch.randperm(len(index), generator=torch.Generator().manual_seed(cfg.run.seed + 3))
    real, recon, translated = [], [], []
    for chunk in torch.arange(len(index)).split(BATCH):
        x = data.images[index[chunk]].to(device).float().div(255)  # (B, C, H, W)
        d, gc, gr = online.heads(online.backbone(x))
        d_other, _, _ = online.heads(online.backbone(data.images[index[pair[chunk]]].to(device).float().div(255)))
        real.append(x.cpu()), recon.append(online.generator(d, gc, gr).cpu())
        translated.append(online.generator(d_other, gc, gr).cpu())
    online.train()
    real, recon, translated = torch.cat(real), torch.cat(recon), torch.cat(translated)
    result = {}
    if cfg.eval.lpips_weights:
        lpips = metrics.compute_lpips(recon, real, weights_path=cfg.eval.lpips_weights, device=device)
        result["lpips_reconstruction"] = lpips["lpips"]
    if cfg.eval.inception_weights:
        fid = metrics.fid_from_images(translated, real, cfg.eval.inception_weights, device=device)
        result["fid_translation"] = fid["fid"]
    return result
