"""Stage 1's accuracy against steps beside its two references' (``make_tables.py --spec stage1 --out DIR`` writes
``stage1_curves.png``): a panel per labelled factor, a line per seed and curve.

All three read the same probe images, a seeded draw of at most 1024 images without labels
(``contralord/stage1/reference_classifier.py: probe_positions``): stage 1's classifiers at every epoch's end
(``latent/train/probe_acc/<factor>``), the matched reference on stage 1's steps (``latent/ref/probe_acc/<factor>``),
and the best reference's refit on its own steps (``latent/best_ref/probe_acc/<factor>``: a tenth of
``latent.best_reference_steps`` apart). A curve that still climbs at its end was stopped early.
"""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from ablations.runs import TrialRun, seed_order

CURVES = {"stage 1": "latent/train/probe_acc/", "matched reference": "latent/ref/probe_acc/",
          "best reference (refit steps)": "latent/best_ref/probe_acc/"}
STYLES = {"stage 1": "-", "matched reference": "--", "best reference (refit steps)": ":"}
Curve = list[tuple[int, float]]


def read_curves(client: MlflowClient, runs: list[TrialRun], factors: list[str]) -> dict[tuple[str, str, str], Curve]:
    """{(seed, curve name, factor): [(step, accuracy), ...]} for every curve a run logged (older runs log none)."""
    found: dict[tuple[str, str, str], Curve] = {}
    for run in runs:
        logged = set(client.get_run(run.run_id).data.metrics)
        for name, prefix in CURVES.items():
            for factor in factors:
                if prefix + factor in logged:
                    history = client.get_metric_history(run.run_id, prefix + factor)
                    found[(run.seed, name, factor)] = sorted((int(p.step), float(p.value)) for p in history)
    return found


def plot_curves(curves: dict[tuple[str, str, str], Curve], factors: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(factors), figsize=(3.6 * len(factors), 3.2), squeeze=False)
    seeds = sorted({seed for seed, _, _ in curves}, key=seed_order)
    colours = {seed: f"C{i % 10}" for i, seed in enumerate(seeds)}
    for ax, factor in zip(axes[0], factors, strict=True):
        for (seed, name, curve_factor), points in sorted(curves.items()):
            if curve_factor == factor and points:
                ax.plot(*zip(*points, strict=True), STYLES[name], color=colours[seed], label=f"{name}, seed {seed}")
        ax.set_title(factor, fontsize=9)
        ax.set_xlabel("steps", fontsize=8)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("accuracy on the probe images", fontsize=8)
    axes[0][-1].legend(fontsize=6)
    fig.suptitle("stage 1 against its references: accuracy on images without labels", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _peak(points: Curve) -> tuple[int, float]:
    """(step, accuracy) of a curve's highest point; the earliest of equal highs."""
    return max(points, key=lambda point: (point[1], -point[0]))


def drift_markdown(curves: dict[tuple[str, str, str], Curve], factors: list[str]) -> str:
    """Per factor and seed: stage 1's highest accuracy on the probe images (and its step) against its last, and the
    matched reference's last, with the mean of each over the seeds that logged both curves. The peak is chosen on
    the images it is read on, so peak − last bounds what stopping stage 1 early could recover; it is no accuracy a
    run reaches. Empty when no stage-1 curve was logged."""
    seeds = sorted({seed for seed, name, _ in curves if name == "stage 1"}, key=seed_order)
    if not seeds:
        return ""
    lines = ["**Stage 1's drift: its highest accuracy on the probe images against its last** (from the curves "
             "above)", "", "| factor | seed | stage 1 peak (step) | stage 1 last (step) | peak − last | "
             "matched reference last |", "|---|---|---|---|---|---|"]
    for factor in factors:
        drops, references = [], []
        for seed in seeds:
            points = curves.get((seed, "stage 1", factor))
            if not points:
                continue
            (peak_step, peak), (last_step, last) = _peak(points), points[-1]
            reference = curves.get((seed, "matched reference", factor))
            ref_text = f"{reference[-1][1]:.3f}" if reference else "–"
            drops.append(peak - last)
            references.extend([reference[-1][1]] if reference else [])
            lines.append(f"| {factor} | {seed} | {peak:.3f} ({peak_step}) | {last:.3f} ({last_step}) | "
                         f"{peak - last:+.3f} | {ref_text} |")
        if len(drops) > 1:
            mean_ref = f"{sum(references) / len(references):.3f}" if references else "–"
            lines.append(f"| {factor} | mean | | | {sum(drops) / len(drops):+.3f} | {mean_ref} |")
    lines += ["", "- the probe images: a seeded draw of at most 1024 images without labels, read at every epoch's "
              "end; the peak is picked on them, so peak − last is an upper bound on what early stopping could "
              "recover (a rule that picks its epoch on held-out labels would recover less), not a result"]
    return "\n".join(lines)
