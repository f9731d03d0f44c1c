"""Checks that the end of a run can use what the user gave it, run before training: the user's weight files load into
the modules that will read them, and the evaluation can score this data (its splits, classes and factor values).
Each failure is one ``ConfigError`` line naming the key (docs/BAD_INPUT.md); ``preflight.prepare`` runs them, and a
sweep's checks before Ray starts run them once per data, evaluation and seed."""

from __future__ import annotations

from contralord.config import ConfigError, ContraLordConfig
from contralord.data import ImageFactorData
from contralord.setup import Setup


def check_against_data(setup: Setup) -> None:
    """What used to fail only after training, checked before it: the user's weight files load into the
    modules that will use them, and the end-of-run evaluation can score this data (``check_evaluation``)."""
    check_weight_contents(setup.cfg, setup.data)
    check_evaluation(setup)


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


def check_evaluation(setup: Setup) -> None:
    """The end-of-run evaluation can score this data. The linear probe's ``eval.num_train`` training images hold
    2 classes (``_check_probe``); under all-factors, the held-out images and their split (``_check_all_factors``);
    under partial-labels, each labelled factor takes at least 2 values in the kept
    images (after ``data.factor_filter``), and the 20% test split of the scored images (``eval.num_train +
    eval.num_test`` at most) holds at least as many images as the largest labelled factor has values, its
    80% at least 2 (sklearn's split; the metrics' classifiers fail otherwise, after training)."""
    import math

    from contralord.scoring import SPLIT_TEST

    cfg, data = setup.cfg, setup.data
    if not cfg.eval.enabled:
        return
    if cfg.eval.inception_weights and cfg.eval.num_test < 2:  # FID's covariance of the first num_test images
        raise ConfigError(f"eval.num_test: FID (eval.inception_weights) compares the statistics of eval.num_test "
                          f"images, expected at least 2, got {cfg.eval.num_test}")
    if cfg.eval.protocol == "all-factors" or data.factors is None:
        _check_all_factors(cfg, data)
        _check_probe(cfg, data)
        return
    found = setup.labelled
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

    from contralord.evaluation import _informative_factors, heldout_dataset
    from contralord.scoring import scored_order

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
