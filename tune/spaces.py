"""Named sweeps as data: each is a list of (variant name, flat overrides) per preset scale.

Every knob swept here belongs to stage 2, so one stage 1 per seed serves every trial of a sweep; the
exception is Table 2's methods, whose LORD row has its own (class-code) stage 1 and whose Locatello row
has none: a trial whose stage 1 is not in the cache trains it itself.
The ``cpu`` grids are scaled to the cpu preset's 2048 images (K must stay below N).
"""

from __future__ import annotations

from typing import Any

from contralord.presets import DEFAULT_WEIGHTS, METHOD_PRESETS

Variant = tuple[str, dict[str, Any]]

NEGATIVES = {  # Table 6: queue length K
    "smoke": [128, 256],
    # the paper's K/N: 1600-51200 of N = 480,000 is 0.33-10.7 %, best at 12800 (2.7 %); here of N = 2048 (smoke's
    # grid keeps K >= its batch of 64, and N = 512 makes it 25-50 %: the tests' grid, not a measurement)
    "cpu": [8, 32, 64, 256],
    "paper": [1600, 3200, 6400, 12800, 25600, 51200],
}
BATCH_SIZES = {  # Table 5
    "smoke": [32, 64],
    "cpu": [32, 64, 128, 256],
    "paper": [32, 64, 128, 256, 512, 1024],
}
# Table 4. The paper's check marks were lost in its text; its prose fixes rows 1, 2, 4 and 5
# (rec; rec+sup; rec+sup+con, "+0.37 D over the row before"; all four). Row 3 is read as rec+sup+res.
# A term that is on has its default weight (config.LossConfig); off is 0.
LOSS_SETS = {name: {key: (weight if key.split(".")[1] in name.split("+") else 0.0)
                    for key, weight in DEFAULT_WEIGHTS.items()}
             for name in ("rec", "rec+sup", "rec+sup+res", "rec+sup+con", "rec+sup+con+res")}
TEMPERATURES = {"smoke": [0.1, 0.2], "cpu": [0.05, 0.1, 0.2, 0.5], "paper": [0.05, 0.07, 0.1, 0.2, 0.5]}
MOMENTA = {"smoke": [0.99], "cpu": [0.99, 0.999], "paper": [0.99, 0.999]}
# Eq. 4/5 read four ways, L_con on (no L_res), against rec+sup: anchor online h_c(f(x_i)) or the stage-1 code
# g~_i (Eq. 4's g^c_i carries no h(f(.)); Algorithm 1 line 12 encodes only g_q and g_k), query view augmented or
# x_i itself. The weights are the defaults' (config.LossConfig).
READINGS = [("rec+sup", LOSS_SETS["rec+sup"])] + [
    (f"con,anchor={anchor},{'aug' if augment else 'no-aug'}",
     LOSS_SETS["rec+sup+con"] | {"encoder.anchor": anchor, "encoder.augment": augment})
    for anchor in ("online", "stage1") for augment in (True, False)] + [
    ("con,anchor=online,aug,label-aware", LOSS_SETS["rec+sup+con"] | {"encoder.label_aware_negatives": True}),
    # MoCo's positive: the momentum key of the query view, against the default online encoding of it (Algorithm 1 l. 12)
    ("con,anchor=online,aug,positive=momentum", LOSS_SETS["rec+sup+con"] | {"encoder.positive": "momentum"})]
# Issue 28's check that the budget ladder's shortcut is honest: a WSD run's rung evaluation against a cosine run of
# as many steps, for rec+sup and all four terms. A WSD row's ladder (encoder.rungs) ends at the budget; its lower rung
# is a branch. cpu: the preset's 160 steps and 4x that; smoke: 8 and 16; paper: a quarter of and the paper's 200
# epochs (N = 480,000, batch 256: 375,000 steps).
SCHEDULE_LADDERS = {"smoke": (8, 16), "cpu": (160, 640), "paper": (93750, 375000)}
SCHEDULE_LOSS_SETS = ("rec+sup", "rec+sup+con+res")
# Issue 28 item 6: lambda_sup re-chosen on the zerodim-style stage 1 (LORD and zerodim weight code regression 10x the
# reconstruction). It was 0.1 when swept, now 1 (README, "Loss scales"). Rows: rec+sup and all four terms, each at
# every weight, each compared with lambda_sup 0.1 of the same losses, paired by seed (ablations/specs.py).
SUP_WEIGHTS = {"smoke": (0.1, 1.0), "cpu": (0.1, 1.0, 10.0), "paper": (0.1, 1.0, 10.0)}
SUP_WEIGHT_LOSS_SETS = ("rec+sup", "rec+sup+con+res")


def schedule_variants(preset: str) -> list[Variant]:
    """(loss set, cosine | wsd) at the preset's ladder top: cosine as one run of the top's steps, WSD with rungs."""
    ladder = SCHEDULE_LADDERS[preset]
    schedules = {"cosine": {"encoder.schedule": "cosine", "encoder.steps": ladder[-1]},
                 "wsd": {"encoder.schedule": "wsd", "encoder.rungs": ",".join(map(str, ladder))}}
    return [(f"{losses},{name}", LOSS_SETS[losses] | keys)
            for losses in SCHEDULE_LOSS_SETS for name, keys in schedules.items()]


def sup_weight_variants(preset: str) -> list[Variant]:
    """(loss set, lambda_sup) for every loss set of ``SUP_WEIGHT_LOSS_SETS`` at every weight of ``SUP_WEIGHTS``."""
    return [(f"{losses},sup={weight:g}", LOSS_SETS[losses] | {"loss.sup": weight})
            for losses in SUP_WEIGHT_LOSS_SETS for weight in SUP_WEIGHTS[preset]]


# Table 2: the methods the paper compares, each a preset of the same trainer (contralord/presets.py)
METHODS = ("locatello", "lord", "gabbay", "contralord")
# where h_c comes from (encoder.content_head): ContraLORD with its own head, with stage 1's classifiers copied
# and frozen (zerodim's amortisation: D and MIG are then stage 1's), or copied and trained; Gabbay et al. as
# zerodim runs it; and ContraLORD whose L_con drops the queued keys of the anchor's labelled-factor values
# (encoder.label_aware_negatives). All regress the same stage 1 per seed, so they compare paired by seed.
CONTENT_HEADS = [("contralord", METHOD_PRESETS["contralord"])] + [
    (f"contralord,h_c={head}", METHOD_PRESETS["contralord"] | {"encoder.content_head": head})
    for head in ("stage1_frozen", "stage1_init")] + [
    ("contralord,label-aware", METHOD_PRESETS["contralord"] | {"encoder.label_aware_negatives": True}),
    ("gabbay", METHOD_PRESETS["gabbay"])]


# Table 1: the linear probe of the class from each method's frozen f(x); the first row also scores the floors (raw
# pixels, a classifier on the labelled images: eval.floors), which depend on the seed's data only
LINEAR_METHODS = ("contralord", "moco", "simclr", "lord", "gabbay")


def linear_variants(preset: str) -> list[Variant]:
    names = LINEAR_METHODS[:2] if preset == "smoke" else LINEAR_METHODS
    return [(name, METHOD_PRESETS[name] | ({"eval.floors": True} if name == names[0] else {})) for name in names]


def variants(kind: str, preset: str) -> tuple[str, list[Variant]]:
    """(the swept key shown in tables, [(variant name, overrides), ...]) for a sweep kind."""
    if kind == "negatives":
        return "encoder.queue_size", [(f"K={k}", {"encoder.queue_size": k}) for k in NEGATIVES[preset]]
    if kind == "batch_size":
        return "encoder.batch_size", [(f"batch={b}", {"encoder.batch_size": b}) for b in BATCH_SIZES[preset]]
    if kind == "losses":
        names = ("rec+sup", "rec+sup+con+res") if preset == "smoke" else tuple(LOSS_SETS)
        return "losses", [(name, LOSS_SETS[name]) for name in names]
    if kind == "readings":
        return "reading", READINGS[:2] if preset == "smoke" else READINGS
    if kind == "content_head":
        return "content_head", CONTENT_HEADS[:2] if preset == "smoke" else CONTENT_HEADS
    if kind == "linear":
        return "run.method", linear_variants(preset)
    if kind == "methods":
        names = ("gabbay", "contralord") if preset == "smoke" else METHODS
        return "run.method", [(name, METHOD_PRESETS[name]) for name in names]
    if kind == "schedule":
        return "encoder.schedule", schedule_variants(preset)
    if kind == "sup_weight":
        return "loss.sup", sup_weight_variants(preset)
    if kind == "temperature":
        return "encoder.temperature", [(f"tau={t},m={m}", {"encoder.temperature": t, "encoder.momentum": m})
                                       for t in TEMPERATURES[preset] for m in MOMENTA[preset]]
    raise ValueError(f"unknown sweep kind {kind!r}")


def optuna_space(trial, preset: str) -> dict[str, Any]:
    """Define-by-run Optuna space over batch size, K, the loss weights and tau (stage-2 knobs)."""
    trial.suggest_categorical("encoder.batch_size", BATCH_SIZES[preset])
    trial.suggest_categorical("encoder.queue_size", NEGATIVES[preset])
    for key in ("loss.sup", "loss.con", "loss.res"):
        trial.suggest_float(key, 0.1, 10.0, log=True)
    trial.suggest_float("encoder.temperature", 0.03, 0.5, log=True)
    return {}
