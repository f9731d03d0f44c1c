"""The paper's ablation tables as data: which config keys make a row, how a row is labelled, and where the
paper's own numbers are. Any other table is a grouping by config keys (``--by``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from contralord.config import LossConfig

PAPER_VALUES = Path(__file__).with_name("paper_values.json")
ROUNDS_ARTIFACT = "rounds.json"  # a sweep parent run's log of --until-decided (tune/rounds.py writes it)

# column -> MLflow metric of a trial run (the end-of-run evaluation); all are higher-is-better but ``UNRANKED``. A
# column name is also part of the sweep parent's metric names ("<column>/<variant>", tune/driver/publish.py): letters,
# digits, spaces, '-', '_', '.' and '/' only (MLflow refuses others)
METRICS = {
    "D": "encoder/eval/disentanglement", "C": "encoder/eval/completeness", "I": "encoder/eval/informativeness_test",
    "SAP": "encoder/eval/sap", "MIG": "encoder/eval/mig", "Smoothness": "encoder/eval/smoothness",
    "Centred smoothness": "encoder/eval/smoothness_centred", "Uniformity": "encoder/eval/uniformity_content",
    "Projection uniformity": "encoder/eval/uniformity_projection",
    "Top-1": "encoder/eval/probe_top1", "Top-5": "encoder/eval/probe_top5",
}
# how spread the codes are (contralord/metrics/smoothness.py, "Which way is better"): lower = more spread; no row is
# marked best in them, the paper's direction ("↑" on Eq. 7) contradicting its own text
UNRANKED = ("Centred smoothness", "Uniformity", "Projection uniformity")
SPREAD_NOTE = ("Smoothness is Eq. 7 as printed (uncentred; higher = codes more concentrated, which the paper marks "
               "↑); Centred smoothness is Eq. 7 on centred codes, Uniformity Wang & Isola's log potential of the "
               "centred h_c, Projection uniformity of the projection L_con acts on: lower = more spread, not ranked "
               "(the paper's ↑ contradicts its own uniformity argument)")


K_NOTE = ("K/N: the paper's grid, 1600 to 51200 of N = 480,000 images, is 0.33-10.7 % of N, its best row 12800 "
          "(2.7 %); an anchor's own key from an earlier step sits in the queue with probability about "
          "L(L+1)/2/(N/B)^2, L = K/B, and is its own negative unless encoder.mask_own_keys drops it")


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    by: tuple[str, ...]  # config keys whose values make a row
    experiment: str  # where the sweep of this table logs
    paper_table: str = ""  # key in paper_values.json ("" = no paper column)
    check_marks: bool = False  # label rows with a check mark per key (on when the value is > 0), as Table 4
    implied: tuple[str, ...] = ()  # keys a row's preset sets (they may differ between rows, not within one)
    names: tuple[tuple[str, str], ...] = ()  # (key value, the paper's name for it) where the paper names rows
    baseline: tuple = ()  # the row every other row is compared with, paired by seed (``by`` less ``separate``)
    # keys whose values are separate experiments (a data set): rows are ranked and paired only with the rows of the
    # same values, since seed s of one data set shares no stage 1 and no image with seed s of another
    separate: tuple[str, ...] = ()
    # (key, value): each row is compared with its twin, the row equal in every other key of ``by`` whose ``key``
    # has ``value`` (the schedule table: each WSD row against the cosine row of the same losses)
    paired_within: tuple = ()
    # ((key, value), ...): the rows the paper measured have these values (the paper has no such key); a row with
    # another value has no paper row, and the paper's rows are matched on the remaining keys
    paper_fixed: tuple = ()
    # a key whose value is also shown as a share of the data set's size N (Table 6: K/N, the paper's ratio)
    share_of_data: str = ""
    note: str = ""  # a footnote of every rendering of this table
    columns: tuple[str, ...] = ()  # only these of METRICS (default: every one the runs logged)
    floors: bool = False  # Table 1: the floors a run logged (eval.floors) become rows of their own (tables.floor_runs)

    def twin(self, key: tuple) -> tuple | None:
        """The key of the row ``key`` is compared with under ``paired_within`` (None: none, or ``key`` is one)."""
        if not self.paired_within:
            return None
        index, value = self.by.index(self.paired_within[0]), self.paired_within[1]
        return None if _same(key[index], value) else (*key[:index], value, *key[index + 1:])

    def row_label(self, key: tuple, data_size: str | None = None) -> list[str]:
        """The cells that name a row: one per grouping key (``share_of_data``'s with its share of ``data_size``)."""
        if self.check_marks:
            return ["✓" if float(v) == 1.0 else (f"✓ ({v})" if float(v) > 0 else "") for v in key]
        cells = [dict(self.names).get(v, show_value(v)) for v in key]
        if self.share_of_data and _is_number(data_size) and float(data_size) > 0:
            index = self.by.index(self.share_of_data)
            if _is_number(key[index]):
                cells[index] += f" ({100 * float(key[index]) / float(data_size):.3g} % of N)"
        return cells

    def group(self, key: tuple) -> tuple:
        """The values of ``separate`` in ``key``: rows of one group are compared, rows of two never."""
        return tuple(value for name, value in zip(self.by, key, strict=True) if name in self.separate)

    def groups(self, keys: list[tuple]) -> list[list[int]]:
        """The indices of ``keys`` in each group (one group when the spec separates nothing), in order."""
        found: dict[tuple, list[int]] = {}
        for i, key in enumerate(keys):
            found.setdefault(self.group(key), []).append(i)
        return list(found.values())

    def is_baseline(self, key: tuple, on_off: bool = False) -> bool:
        """``key`` is the baseline row's (numbers compared as numbers, other values as text); with ``on_off``, on a
        check-mark table, the same terms are on (weight > 0) whatever their weights: rec+sup at an older λ_sup.
        The keys of ``separate`` are not compared: each group has its own baseline row."""
        if not self.baseline:
            return False
        key = tuple(value for name, value in zip(self.by, key, strict=True) if name not in self.separate)
        if on_off and self.check_marks:
            return all((float(a) > 0) == (float(b) > 0) for a, b in zip(key, self.baseline, strict=True))
        return all(_same(a, b) for a, b in zip(key, self.baseline, strict=True))

    def paper_key(self, key: tuple) -> tuple | None:
        """The key of the paper's row for one of ours (check-mark tables compare on/off; None: the paper has no
        such row, ``paper_fixed``)."""
        fixed = dict(self.paper_fixed)
        if fixed:
            if any(str(value) != fixed[name] for name, value in zip(self.by, key, strict=True) if name in fixed):
                return None
            key = tuple(value for name, value in zip(self.by, key, strict=True) if name not in fixed)
        if self.check_marks:
            return tuple(int(float(v) > 0) for v in key)
        return tuple(dict(self.names).get(v, v) for v in key)


def _same(a, b) -> bool:
    """Numbers compared as numbers ("1" and "1.0" are one weight), other values as text."""
    return float(a) == float(b) if _is_number(a) and _is_number(b) else str(a) == str(b)


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool)


def show_value(value) -> str:
    """A key value as a table shows it: floats to 4 significant digits (Optuna samples 0.7035737028722149)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# what Table 2's method presets set (contralord/presets.py): the row, not a difference between runs
METHOD_KEYS = ("loss.rec", "loss.sup", "loss.con", "loss.res", "loss.kl", "loss.label", "latent.structure",
               "encoder.model", "encoder.positive", "eval.scored_code", "encoder.content_head")
# what a dataset's rows of Table 2 may set on their own (dSprites at 64 px beside Shapes3D at 32 px)
DATA_KEYS = ("data.image_size",)
METHOD_NAMES = (("contralord", "ContraLORD"), ("lord", "LORD"), ("gabbay", "Gabbay et al."),
                ("locatello", "Locatello et al."))
LINEAR_NAMES = (("contralord", "ContraLORD"), ("moco", "MoCo"), ("simclr", "SimCLR"), ("lord", "LORD"),
                ("gabbay", "Gabbay et al. 2021 (zerodim: our closest row to OverLORD, not OverLORD)"),
                ("pixels", "floor: raw pixels"), ("supervised", "floor: supervised on the labelled images"))
LINEAR_NOTE = ("Top-1/Top-5: a linear probe (standardised, multinomial logistic regression, C = 1) of the class from "
               "frozen backbone features f(x) of every method, fitted on eval.num_train training images and scored "
               "on held-out ones; top-5 only where the class has more than 5 values (else 1 by construction). "
               "Floors, on the same images: the probe on raw pixels, and the backbone trained from scratch on the "
               "classes of data.num_labels images alone (contralord/floors.py). LORD's stage 1 sees every "
               "training image's class; ContraLORD and Gabbay et al. see only the labelled factors' few labels "
               "(under partial labels the class is not one of them); MoCo and SimCLR see no label")

SPECS = {
    # Table 1 at our scale: each method's frozen f(x) under a linear probe, the two floors as rows (eval.floors)
    "table1": TableSpec("table1", "Table 1: linear classification of the class from frozen features",
                        ("data.name", "run.method"), "contralord-linear", "table1",
                        implied=METHOD_KEYS + DATA_KEYS + ("eval.floors", "encoder.augment_anchor",
                                                           "encoder.negatives"),
                        names=LINEAR_NAMES, columns=("Top-1", "Top-5"), floors=True, note=LINEAR_NOTE,
                        baseline=("contralord",), separate=("data.name",)),
    "table2": TableSpec("table2", "Table 2: methods under partial labels", ("data.name", "run.method"),
                        "contralord-methods", "table2", implied=METHOD_KEYS + DATA_KEYS, names=METHOD_NAMES,
                        baseline=("contralord",), separate=("data.name",)),
    "table4": TableSpec("table4", "Table 4: each loss", ("loss.rec", "loss.sup", "loss.con", "loss.res"),
                        "contralord-losses", "table4", check_marks=True, baseline=(1.0, LossConfig().sup, 0.0, 0.0)),
    "table5": TableSpec("table5", "Table 5: batch size", ("encoder.batch_size",), "contralord-batch_size", "table5"),
    "table6": TableSpec("table6", "Table 6: queue length K", ("encoder.queue_size",), "contralord-negatives",
                        "table6", share_of_data="encoder.queue_size", note=K_NOTE),
    # Table 6 with and without the own-key mask (the paper has none: its rows are the mask's off rows); run the
    # mask's rows with tune/sweep_negatives.py --set encoder.mask_own_keys=true into the same experiment
    "table6_mask": TableSpec("table6_mask", "Table 6: queue length K, with and without the own-key mask",
                             ("encoder.queue_size", "encoder.mask_own_keys"), "contralord-negatives", "table6",
                             paper_fixed=(("encoder.mask_own_keys", "False"),), share_of_data="encoder.queue_size",
                             note=K_NOTE),
    # Eq. 4/5 read four ways (anchor: the online code of x_i, or its stage-1 code; the query view augmented or
    # x_i itself), each with L_con on, against rec+sup (loss.con=0): does adding L_con help, under which reading?
    "readings": TableSpec("readings", "Readings of Eq. 4/5: anchor x augmentation x positive, L_con against rec+sup",
                          ("loss.con", "encoder.anchor", "encoder.augment", "encoder.label_aware_negatives",
                           "encoder.positive"), "contralord-readings",
                          baseline=(0.0, "online", "True", "False", "online")),
    # h_c learned, or stage 1's classifiers copied (frozen, or trained on), or L_con with label-aware negatives,
    # ContraLORD's losses; Gabbay et al. beside
    "content_head": TableSpec("content_head", "ContraLORD's h_c: learned, or stage 1's classifiers copied; "
                              "label-aware negatives", ("run.method", "encoder.content_head",
                                                        "encoder.label_aware_negatives"), "contralord-content_head",
                              implied=METHOD_KEYS, names=METHOD_NAMES, baseline=("contralord", "learned", "False")),
    # issue 28: is a WSD rung (a cooldown from a constant lr) as good as a cosine run of as many steps?
    "schedule": TableSpec("schedule", "Schedules at equal steps: a WSD ladder's rung against a cosine run",
                          ("loss.con", "loss.res", "encoder.schedule"), "contralord-schedule",
                          implied=("encoder.steps", "encoder.rungs"), paired_within=("encoder.schedule", "cosine")),
    # issue 28 item 6: lambda_sup on today's stage 1, each weight against 0.1 (the default when it was swept; now 1)
    # of the same losses
    "sup_weight": TableSpec("sup_weight", "λ_sup against 0.1, per loss set", ("loss.con", "loss.res", "loss.sup"),
                            "contralord-sup_weight", paired_within=("loss.sup", "0.1")),
}
# what a sweep kind groups by (tune/spaces.py sweeps these keys)
SWEEP_KIND_SPEC = {"linear": "table1", "methods": "table2", "losses": "table4", "batch_size": "table5",
                   "negatives": "table6", "readings": "readings", "content_head": "content_head",
                   "schedule": "schedule", "sup_weight": "sup_weight"}
SWEEP_KIND_KEYS = {
    "temperature": ("encoder.temperature", "encoder.momentum"),
    "optuna": ("encoder.batch_size", "encoder.queue_size", "loss.sup", "loss.con", "loss.res", "encoder.temperature"),
}


# config keys whose values are always separate experiments: a table grouped by one ranks within each of its values
# (grouped by such keys alone, it marks no row best). Another data set shares no image with this one, so ranking
# across it means nothing; data.size or data.image_size stay comparable rows (which size is better is a question a
# table may ask), though their seeds regress different stage-1 runs (the table's stage-1 notes name them)
SEPARATE_KEYS = ("data.name",)


def spec_for_keys(keys: tuple[str, ...]) -> TableSpec:
    """A plain table grouped by ``keys`` (no paper column); a data set among them separates (``SEPARATE_KEYS``)."""
    return TableSpec("by-" + "-".join(keys), "Grouped by " + ", ".join(keys), keys, "",
                     separate=tuple(k for k in keys if k in SEPARATE_KEYS))


def spec_for_sweep_kind(kind: str) -> TableSpec | None:
    if kind in SWEEP_KIND_SPEC:
        return SPECS[SWEEP_KIND_SPEC[kind]]
    return spec_for_keys(SWEEP_KIND_KEYS[kind]) if kind in SWEEP_KIND_KEYS else None


@cache
def _paper_file() -> dict:
    return json.loads(PAPER_VALUES.read_text())


def paper_dataset(table: str) -> str:
    """The dataset of one of the paper's tables ("" when the table spans several)."""
    return _paper_file()[table].get("dataset", "")


def paper_rows(table: str) -> dict[tuple, dict[str, float]]:
    """{row key: {column: value}} of one of the paper's tables (``table2``, ``table4``, ...)."""
    data = _paper_file()
    if table not in data:
        raise KeyError(f"{PAPER_VALUES.name} has no {table!r}; it has "
                       f"{', '.join(k for k in data if k.startswith('table'))}")
    columns = data[table].get("columns", data["columns"])
    return {tuple(row["key"]): dict(zip(columns, row["values"], strict=True)) for row in data[table]["rows"]}
