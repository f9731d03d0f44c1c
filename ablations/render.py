"""A Table as Markdown, LaTeX or CSV. Cells are mean ± std over seeds; a row with one seed shows
``(n=1)`` instead of a std; a cell averaged over fewer runs than its row says how many."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ablations import specs, stats
from ablations.tables import EXCLUDED, Table

EXCLUDED_WORDS = {"failed": "FAILED", "unfinished": "unfinished", "early_stopped": "stopped early",
                  "duplicate": "repeated seed (newest kept)"}


def _number(value: float) -> str:
    return f"{value:.3f}"


def cell_text(summary: stats.Summary | None, row_n: int, pm: str = "±") -> str:
    if summary is None:
        return "–"
    text = _number(summary.mean) + (" (n=1)" if summary.n == 1 else f" {pm} {_number(summary.std)}")
    return text + (f" (n={summary.n})" if summary.n not in (1, row_n) else "")


def footnotes(table: Table) -> list[str]:
    """Excluded runs per row, and what the bold marks mean (or that there are none)."""
    notes = []
    for row in table.rows:
        label = row_label(table, row)
        for reason in EXCLUDED:
            if row.excluded[reason]:
                ids = ", ".join(run_id[:8] for run_id in row.excluded_ids[reason])
                notes.append(f"{label}: {row.excluded[reason]} {EXCLUDED_WORDS[reason]} run(s) not averaged ({ids})")
        for column, count in row.dropped.items():
            if count:
                notes.append(f"{label}: {count} non-finite {column} value(s) left out")
    if table.unplaced:
        notes.append(f"{table.unplaced} run(s) without the grouping keys (no config logged) not shown")
    if table.setting:
        notes.append("setting: " + ", ".join(f"{k}={v}" for k, v in table.setting.items()))
    notes += table.handicaps
    notes += table.stage1
    if table.spec.note:
        notes.append(table.spec.note)
    if table.commits:
        several = len(table.commits) > 1
        notes.append(f"code: {'runs from ' + str(len(table.commits)) + ' git commits: ' if several else 'git '}"
                     f"{', '.join(table.commits)}")
    notes += machine_notes(table)
    if any(c in specs.UNRANKED for c in table.columns):
        notes.append(specs.SPREAD_NOTE)
    unmarked = [c for c in table.columns if not table.best[c] and c not in specs.UNRANKED]
    rule = "bold (unpaired rule): best mean whose 95% CI lies above every other row's 95% CI (Student t over seeds)"
    notes.append(rule + (f"; no row is best beyond the intervals in {', '.join(unmarked)}" if unmarked else ""))
    unmarked = [c for c in table.columns if not table.best_paired.get(c) and c not in specs.UNRANKED]
    rule = ("† (paired rule): best mean above every other row paired by seed (95% paired-t interval of the "
            "per-seed difference above 0; rows of one seed share its stage 1)")
    notes.append(rule + (f"; no row is best paired by seed in {', '.join(unmarked)}" if unmarked else ""))
    notes += paired_notes(table)
    if table.has_paper:
        notes.append("paper: the value the paper reports for the same row (one run, no variance given, at the "
                     "paper's own scale)")
    return notes


PAIRED_COLUMNS = ("D", "MIG")  # the columns whose paired comparisons a table spells out (else its spec's columns)


def row_label(table: Table, row) -> str:
    return ", ".join(f"{k}={specs.show_value(v)}" for k, v in zip(table.spec.by, row.key, strict=True))


def paired_text(c: stats.Paired) -> str:
    if c.n < 2:
        return f"{c.n} shared seed(s), no paired test"
    p = "p < 0.001" if c.p < 0.001 else f"p = {c.p:.3f}"
    return (f"{c.mean:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}], paired t {p}, higher in {c.wins} and lower in "
            f"{c.losses} of {c.n} seeds")


def paired_comparisons(table: Table) -> list[tuple[str, str, str, stats.Paired]]:
    """(column, row label, reference label, row - reference paired by seed) for each row against the spec's
    baseline row (when the table has one) and against the best mean of each of ``PAIRED_COLUMNS``."""
    found = []
    for column in [c for c in (table.spec.columns or PAIRED_COLUMNS) if c in table.columns]:
        pairs = [pair for group in table.groups for pair in _pairs(table, column, group)]
        pairs += _twin_pairs(table)
        for i, ref in pairs:
            row = table.rows[i]
            if row.values.get(column) and table.rows[ref].values.get(column):
                found.append((column, row_label(table, row), row_label(table, table.rows[ref]),
                              stats.paired(row.values[column], table.rows[ref].values[column])))
    return found


def _pairs(table: Table, column: str, group: list[int]) -> list[tuple[int, int]]:
    """(row, reference) within one group of rows: each row against the group's baseline row and its best mean; a
    pair already compared the other way round (the best row against the baseline) is not repeated."""
    rows = [(i, table.rows[i]) for i in group]
    means = [(i, row.cells[column].mean) for i, row in rows if row.cells[column] is not None]
    references = [i for i, row in rows if table.spec.is_baseline(row.key)]
    if not references:  # e.g. a Table 4 run at an older λ_sup: its rec+sup row, by the terms that are on
        references = [i for i, row in rows if table.spec.is_baseline(row.key, on_off=True)]
    best = [max(means, key=lambda m: m[1])[0]] if len(means) >= 2 and not table.spec.paired_within else []
    references += best  # a table of twins compares twins only
    pairs = [(i, ref) for ref in dict.fromkeys(references) for i in group if i != ref]
    return [(i, ref) for n, (i, ref) in enumerate(pairs) if (ref, i) not in pairs[:n]]  # a pair once, not reversed


def _twin_pairs(table: Table) -> list[tuple[int, int]]:
    """(row, its twin) under the spec's ``paired_within``, where the twin row is in the table."""
    index = {tuple(map(str, row.key)): i for i, row in enumerate(table.rows)}
    twins = [(i, table.spec.twin(row.key)) for i, row in enumerate(table.rows)]
    return [(i, index[tuple(map(str, twin))]) for i, twin in twins if twin and tuple(map(str, twin)) in index]


def paired_notes(table: Table) -> list[str]:
    return [f"paired {column}: {label} minus {ref}: {paired_text(c)}"
            for column, label, ref, c in paired_comparisons(table)]


def machine_notes(table: Table) -> list[str]:
    """Which machine(s) the averaged runs trained on (several only with --ignore-key machine)."""
    named = [f"{key} = {text}" for key, text in sorted(table.machines.items())]
    pooled = " (pooled with --ignore-key machine)" if len(named) > 1 else ""
    notes = [f"machine{'s' if len(named) > 1 else ''}{pooled}: {'; '.join(named)}"] if named else []
    if table.unknown_machine:
        notes.append(f"machine: not recorded for {table.unknown_machine} run(s) (logged before machine tags)")
    return notes


def _header(table: Table) -> list[str]:
    return [*table.spec.by, "n", *table.columns]


def _paper_cells(table: Table, row) -> list[str]:
    return [_number(row.paper[c]) if row.paper and c in row.paper else "–" for c in table.columns]


def to_markdown(table: Table) -> str:
    lines = [f"**{table.spec.title}** ({table.source}; mean ± std over seeds)", "",
             "| " + " | ".join(map(_md, _header(table))) + " |", "|" + "---|" * len(_header(table))]
    for i, row in enumerate(table.rows):
        cells = [cell_text(row.cells[c], row.n) for c in table.columns]
        cells = [f"**{text}**" if i in table.best[c] else text for c, text in zip(table.columns, cells, strict=True)]
        cells = [f"{text} †" if i in table.best_paired.get(c, ()) else text
                 for c, text in zip(table.columns, cells, strict=True)]
        label = table.spec.row_label(row.key, table.setting.get("data.size"))
        lines.append("| " + " | ".join([*map(_md, label), str(row.n), *cells]) + " |")
        if row.paper:
            lines.append("| " + " | ".join(["paper", *[""] * len(table.spec.by), *_paper_cells(table, row)]) + " |")
    return "\n".join(lines + [""] + [f"- {_md(note)}" for note in footnotes(table)]) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "✓": r"\checkmark",
                 "†": r"\dag{}"}


def _latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_latex(table: Table) -> str:
    """A booktabs table (needs \\usepackage{booktabs, amssymb})."""
    header = [_latex_escape(h) for h in _header(table)]
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_latex_escape(table.spec.title)}}}",
             r"\begin{tabular}{" + "c" * len(header) + "}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for i, row in enumerate(table.rows):
        cells = [cell_text(row.cells[c], row.n, pm=r"$\pm$") for c in table.columns]
        cells = [rf"\textbf{{{t}}}" if i in table.best[c] else t for c, t in zip(table.columns, cells, strict=True)]
        cells = [rf"{t}$^\dagger$" if i in table.best_paired.get(c, ()) else t
                 for c, t in zip(table.columns, cells, strict=True)]
        label = [_latex_escape(text) for text in table.spec.row_label(row.key, table.setting.get("data.size"))]
        lines.append(" & ".join([*label, str(row.n), *cells]) + r" \\")
        if row.paper:
            paper = [r"\textit{paper}", *[""] * len(table.spec.by), *_paper_cells(table, row)]
            lines.append(" & ".join(paper) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\par\footnotesize"]
    lines += [_latex_escape(note) + r"\\" for note in footnotes(table)]
    return "\n".join(lines + [r"\end{table}"]) + "\n"


def _float(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6g}"


def to_csv(table: Table) -> str:
    """One line per row: keys, n, excluded counts, then per metric mean, std, 95% CI, n, best, paper."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    per_metric = ("mean", "std", "ci95_low", "ci95_high", "n", "best", "best_paired", "paper")
    writer.writerow([*table.spec.by, "n", "seeds", *EXCLUDED, *[f"{c}_{s}" for c in table.columns for s in per_metric]])
    for i, row in enumerate(table.rows):
        values = []
        for c in table.columns:
            s = row.cells[c]
            paper = row.paper.get(c) if row.paper else None
            values += ([_float(s.mean), _float(s.std), _float(s.ci_low), _float(s.ci_high), s.n] if s else [""] * 5)
            values += [int(i in table.best[c]), int(i in table.best_paired.get(c, ()))]
            values += ["" if paper is None else repr(paper)]
        writer.writerow([*row.key, row.n, " ".join(row.seeds), *(row.excluded[r] for r in EXCLUDED), *values])
    return out.getvalue()


FORMATS = {"markdown": (to_markdown, "md"), "latex": (to_latex, "tex"), "csv": (to_csv, "csv")}


def render_all(table: Table, formats: list[str]) -> dict[str, str]:
    """{file extension: text} for each of ``formats`` (names of FORMATS)."""
    return {FORMATS[name][1]: FORMATS[name][0](table) for name in formats}


def save(table: Table, texts: dict[str, str], folder: Path, stem: str) -> list[Path]:
    """Write ``<stem>.<ext>`` for each rendered text and ``<stem>.png``; return the paths."""
    from ablations.plot import plot_table

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for extension, text in texts.items():
        paths.append(folder / f"{stem}.{extension}")
        paths[-1].write_text(text)
    return paths + [plot_table(table, folder / f"{stem}.png")]
