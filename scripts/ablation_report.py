"""The ablation study's table (``ablation.md``) and chart (``ablation.png``) from its rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scripts.ablation_plan import InferenceVariant, StudySettings, TrainVariant
from utils.core.locks import atomic_path

Variant = TrainVariant | InferenceVariant


def scores(rows: list[dict], kind: str, name: str, column: str) -> dict[int, float]:
    """Seed -> score of one variant's finished runs (runs without the score are left out)."""
    return {int(r["seed"]): float(r[column]) for r in rows if r["kind"] == kind and r["variant"] == name and r[column]}


def mean_sd(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def paired_change(a: dict[int, float], b: dict[int, float]) -> tuple[float, float | None] | None:
    """Mean over the shared seeds of a - b, and the standard deviation of those differences (None for one seed)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    return float(np.mean(diffs)), (float(np.std(diffs, ddof=1)) if len(diffs) > 1 else None)


def verdict(ours: tuple[float, float | None] | None, original: float | None) -> str:
    """Whether our change goes the original's way: yes, no, within noise (|change| <= its spread), or — (no figure)."""
    if ours is None or original is None:
        return "—"
    change, spread = ours
    if spread is not None and abs(change) <= spread:
        return "within noise"
    same = "yes" if np.sign(change) == np.sign(original) else "no"
    return same if spread is not None else f"{same} (one seed: no spread)"


def _fmt(x: float | None, signed: bool = False) -> str:
    return "—" if x is None else (f"{x:+.2f}" if signed else f"{x:.2f}")


def table_rows(rows: list[dict], kind: str, variants: list[Variant], column: str) -> list[str]:
    """Markdown rows: the variant, our scores, the original's, and our change against theirs."""
    by_name = {v.name: v for v in variants}
    lines = []
    for v in variants:
        ours = scores(rows, kind, v.name, column)
        if not ours and not scores(rows, kind, v.name, "val_psnr"):
            continue
        base = by_name.get(v.compare_with)
        change = paired_change(ours, scores(rows, kind, base.name, column)) if base else None
        orig_change = None
        if base and v.original[1] is not None and base.original[1] is not None:
            orig_change = v.original[1] - base.original[1]
        patches = sorted({r["patches"] for r in rows if r["kind"] == kind and r["variant"] == v.name})
        ours_change = (
            "—" if change is None else f"{change[0]:+.2f}" + (f" ± {change[1]:.2f}" if change[1] is not None else "")
        )
        cells = [v.label, "/".join(patches) or "", mean_sd(list(scores(rows, kind, v.name, "val_psnr").values())),
                 mean_sd(list(ours.values())), mean_sd(list(scores(rows, kind, v.name, "test_ssim").values())),
                 f"{_fmt(v.original[0])} / {_fmt(v.original[1])}", base.label if base else "",
                 ours_change, _fmt(orig_change, True), verdict(change, orig_change)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def header(column: str) -> str:
    """The table head; changes are measured on ``column`` (test PSNR, or validation PSNR without test labels)."""
    ours = "test" if column == "test_psnr" else "validation"
    return (
        "| variant | patches | validation PSNR | test PSNR | test SSIM | original val / public | compared with "
        f"| our change ({ours}) | original change (public) | same direction? |\n|---|---|---|---|---|---|---|---|---|---|"
    )


def score_column(rows: list[dict]) -> str:
    """Compare on the held-out test PSNR where the data have test labels, else on the validation PSNR."""
    return "test_psnr" if any(r["test_psnr"] for r in rows if r["kind"] == "training") else "val_psnr"


def markdown(
    rows: list[dict], train: list[TrainVariant], infer: list[InferenceVariant], s: StudySettings, notes: list[str]
) -> str:
    minutes = sum(float(r["minutes"]) for r in rows)
    column = score_column(rows)
    seeds = ", ".join(map(str, s.seeds))
    parts = [
        "# Ablation study",
        "",
        f"HINet width {s.wf}, depth {s.depth}; every training run {s.steps} steps ({s.epochs} epochs of "
        f"{s.steps_per_epoch} batches of {s.batch_size}), learning rate {s.initial_lr:g} to {s.min_lr:g}, random "
        f"initial weights, seeds {seeds}; fold {s.valid_fold} of {s.folds} for validation. Scores are mean ± standard "
        f'deviation over the seeds, in dB. A change is paired by seed; "within noise" means it is no larger than '
        f"the spread of the per-seed changes. Original figures: the contest data, full-size model. "
        f"{len(rows)} runs, {minutes:.0f} min in all.",
        "",
        "## Training variants (size 256 unless noted)",
        "",
        header(column),
        *table_rows(rows, "training", train, column),
        "",
        *(f"* {note}" for note in notes),
        *([""] if notes else []),
        "## Inference variants (the full recipe's 256 and 352 checkpoints)",
        "",
        *(
            [header("test_psnr"), *table_rows(rows, "inference", infer, "test_psnr")]
            if column == "test_psnr"
            else ["No held-out test labels (`test_label_img/`): the inference variants were not run."]
        ),
        "",
    ]
    return "\n".join(parts)


def chart(rows: list[dict], train: list[TrainVariant], infer: list[InferenceVariant], path: Path) -> None:
    """Bars of the mean test PSNR (validation where there is no test) with each seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [len(train) or 1, len(infer) or 1]})
    for ax, kind, variants, title in ((axes[0], "training", train, "training variants"),
                                      (axes[1], "inference", infer, "inference variants")):  # fmt: skip
        column = "test_psnr" if any(scores(rows, kind, v.name, "test_psnr") for v in variants) else "val_psnr"
        shown = [(v, scores(rows, kind, v.name, column)) for v in variants]
        shown = [(v, s) for v, s in shown if s]
        for i, (_, seed_scores) in enumerate(shown):
            values = list(seed_scores.values())
            ax.bar(i, np.mean(values), color="#8fb3d9", yerr=np.std(values, ddof=1) if len(values) > 1 else 0,
                   capsize=4)  # fmt: skip
            ax.plot([i] * len(values), values, "k.", ms=6)
        if shown:
            low = min(min(s.values()) for _, s in shown)
            high = max(max(s.values()) for _, s in shown)
            ax.set_ylim(low - 0.5 - 0.2 * (high - low), high + 0.3 + 0.1 * (high - low))
        ax.set_xticks(range(len(shown)), [v.label for v, _ in shown], rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(f"{'held-out test' if column == 'test_psnr' else 'validation'} PSNR (dB)")
        ax.set_title(f"{title}: mean, standard deviation, seeds")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write_report(
    rows: list[dict],
    train: list[TrainVariant],
    infer: list[InferenceVariant],
    s: StudySettings,
    out: Path,
    notes: list[str] = (),
) -> None:
    with atomic_path(out / "ablation.md") as tmp:
        tmp.write_text(markdown(rows, train, infer, s, list(notes)))
    chart(rows, train, infer, out / "ablation.png")
