"""Where stage 1's classifiers err (``make_tables.py --spec stage1 --confusion``).

For each stage-1 run: its artifact, downloaded from MLflow (``latent.pt``, logged by ``tune/trial/stage1.py``), the
training set rebuilt from the run's own params (the data are procedural or the user's files, so the same config
gives the same images), and per labelled factor the confusion of its classifier on the images without labels:
accuracy, the number of errors, the share of errors that land on a neighbouring value (±1, first and last counted as
neighbours, as hues on a circle are) and the largest cells off the diagonal (true value → predicted value), each with
its share of that factor's errors. An error mass in one cell is two values merged; errors spread over many cells
are a weak classifier. Reads only: the artifact goes to a temporary folder that is removed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from mlflow import MlflowClient

from ablations.runs import AblationError, TrialRun
from contralord.config import ConfigError, ContraLordConfig, all_keys
from contralord.latent_result import ARTIFACT, load_factor_codes, load_latent
from contralord.setup import Setup, build_data

TOP = 3  # cells shown per factor


@dataclass(frozen=True)
class FactorConfusion:
    factor: str
    accuracy: float
    errors: int
    adjacent: int  # errors whose prediction is a neighbouring value (±1 on a circle)
    cells: tuple[tuple[int, int, int], ...]  # (true, predicted, count), largest first


def confusion_matrix(truth: torch.Tensor, predicted: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size) counts: row = true value, column = predicted value."""
    matrix = torch.zeros(size, size, dtype=torch.long)
    matrix.index_put_((truth, predicted), torch.ones_like(truth), accumulate=True)
    return matrix


def adjacent_errors(matrix: torch.Tensor) -> int:
    """Errors whose predicted value is a neighbour of the true one: ±1, the first and last values neighbours."""
    size = matrix.shape[0]
    cells = {(i, j) for i in range(size) for j in ((i + 1) % size, (i - 1) % size) if j != i}
    return int(sum(matrix[i, j] for i, j in cells))


def largest_errors(matrix: torch.Tensor, top: int = TOP) -> tuple[tuple[int, int, int], ...]:
    off = matrix.clone()
    off.fill_diagonal_(0)
    order = torch.argsort(off.flatten(), descending=True, stable=True)[:top]
    size = matrix.shape[1]
    return tuple((int(i) // size, int(i) % size, int(off.flatten()[i])) for i in order if off.flatten()[i] > 0)


def _config(run: TrialRun) -> ContraLordConfig:
    known = set(all_keys())
    try:
        return ContraLordConfig.from_overrides({k: v for k, v in run.params.items() if k in known})
    except ConfigError as error:
        raise AblationError(f"--confusion: stage-1 run {run.run_id}'s params do not make a config: {error}") from None


@torch.no_grad()
def run_confusions(client: MlflowClient, run: TrialRun) -> list[FactorConfusion]:
    cfg = _config(run)
    setup = Setup.of(cfg, build_data(cfg))
    data, found = setup.data, setup.labelled
    with tempfile.TemporaryDirectory(prefix="stage1-confusion-") as folder:
        try:
            path = client.download_artifacts(run.run_id, ARTIFACT, folder)
        except Exception as error:  # MLflow raises several types for a missing artifact
            raise AblationError(f"--confusion: stage-1 run {run.run_id} has no {ARTIFACT} artifact "
                                f"({type(error).__name__})") from None
        artifact = load_latent(Path(path))
    if artifact.factor_codes is None:
        raise AblationError(f"--confusion: stage-1 run {run.run_id}'s artifact holds no classifiers")
    model = load_factor_codes(setup, artifact.factor_codes, torch.device("cpu"))
    unlabelled = torch.nonzero(~found.mask).squeeze(1)
    predicted = [[] for _ in found.names]
    for chunk in unlabelled.split(256):
        for j, logits in enumerate(model.logits(data.images[chunk].float().div_(255))):
            predicted[j].append(logits.argmax(1))
    out = []
    for j, name in enumerate(found.names):
        truth = data.factors[unlabelled][:, found.columns[j]]
        matrix = confusion_matrix(truth, torch.cat(predicted[j]), found.sizes[j])
        hits = int(matrix.diagonal().sum())
        out.append(FactorConfusion(name, hits / max(len(truth), 1), len(truth) - hits, adjacent_errors(matrix),
                                   largest_errors(matrix)))
    return out


def to_markdown(rows: dict[str, list[FactorConfusion]]) -> str:
    """``rows``: seed -> its run's confusions."""
    lines = ["**Where stage 1's classifiers err, on the images without labels** (largest cells off the diagonal: "
             "true → predicted, count, share of the factor's errors)", "",
             "| seed | factor | accuracy | errors | to a neighbouring value | largest confusions |",
             "|---|---|---|---|---|---|"]
    for seed, confusions in rows.items():
        for c in confusions:
            cells = "; ".join(f"{t} → {p}: {n} ({n / c.errors:.0%})" for t, p, n in c.cells) or "none"
            near = f"{c.adjacent / c.errors:.0%}" if c.errors else "–"
            lines.append(f"| {seed} | {c.factor} | {c.accuracy:.3f} | {c.errors} | {near} | {cells} |")
    lines += ["", "- to a neighbouring value: the predicted value is the true one ±1, the first and last values "
              "counted as neighbours (a circle, as hues are; for a linear factor such as a position that adds its rare "
              "first ↔ last confusions)"]
    return "\n".join(lines) + "\n"
