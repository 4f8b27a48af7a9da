"""``study.html``: the page a radiomics paper is written from, beside ``cohort.html``.

It reads only files earlier stages wrote: the extraction's ``qc.csv`` and ``manifest.json`` (the flow of cases),
the model folder's ``metrics.csv``/``comparison.csv``, ``predictions.csv`` (ROC), ``calibration_curve.csv``,
``calibration_summary.csv``, ``decision_curve.csv``, ``radscore.txt``, ``sample_size.json`` and the nomogram.
Each figure names the table it is drawn from; nothing shown is recomputed from the model.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from radpipe._io import atomic_write_text, software_versions
from radpipe.explain.checklists import CHECKLISTS, write_checklists
from radpipe.explain.methods_text import methods_paragraph, read_extraction_manifest
from radpipe.explain.pages import b64, env
from radpipe.model.calibration_curve import calibration_figure
from radpipe.model.decision_curve import (
    _COLOURS,
    _cohort_order,
    case_probabilities,
    decision_curve_figure,
    figure_png,
)
from radpipe.model.folder import MODELS_DIR, RADSCORE_TXT_FILE, ModelFolder

STUDY_FILE = "study.html"
#: threshold probabilities at which the page tabulates net benefit (the curve has them all)
NET_BENEFIT_SHOWN = (0.1, 0.2, 0.3, 0.4, 0.5)
#: comparison.csv's columns (written by the model stage's clinical / radiomics / combined comparison)
COMPARISON_COLUMNS = ["model", "kind", "auc", "auc_ci_low", "auc_ci_high", "reference", "auc_difference",
                      "difference_ci_low", "difference_ci_high", "delong_p", "probabilities"]
#: the metrics.csv columns the comparison table shows when there is no comparison.csv
METRICS_SHOWN = ["cohort", "model", "n", "auc", "auc_ci_low", "auc_ci_high", "sensitivity", "specificity", "brier",
                 "calibration_slope", "delong_p_vs_best"]


@dataclass
class FlowStep:
    """One box of the flow diagram: a count and what it counts."""

    label: str
    n: int | None
    note: str = ""


def _count_range(counts: list[int]) -> str:
    """'31–32', or '32' when every fold has the same count."""
    low, high = min(counts), max(counts)
    return f"{low}" if low == high else f"{low}–{high}"


def case_flow(folder: ModelFolder, features_dir: Path | None) -> list[FlowStep]:
    """The flow of cases: found → failed QC → included in modelling → folds → external cohorts.

    Counts come from the extraction's ``manifest.json``/``qc.csv``, the model card, ``splits.json`` and
    ``metrics.csv``; a step whose file is missing is left out.
    """
    steps: list[FlowStep] = []
    extraction = read_extraction_manifest(features_dir)
    qc_path = Path(features_dir) / "qc.csv" if features_dir else None
    if extraction.get("n_cases") is not None:
        steps.append(FlowStep("cases found", int(extraction["n_cases"]), f"cohort {extraction.get('cohort', '')}"))
    if qc_path is not None and qc_path.is_file():
        qc = pd.read_csv(qc_path, dtype=str)
        failed = qc[qc["status"] == "failed"]
        reasons = failed["reason"].fillna("").value_counts()
        note = "; ".join(f"{n} × {r}" for r, n in reasons.head(3).items() if r) or "see qc.csv"
        fixed = int((qc["status"] == "fixed").sum())
        steps.append(FlowStep("failed quality control", int(failed["case_id"].nunique()),
                              note + (f" ({fixed} masks fixed and kept)" if fixed else "")))
    card = folder.card()
    if card.get("n_cases") is not None:
        counts = card.get("class_counts", {})
        steps.append(FlowStep("included in modelling", int(card["n_cases"]),
                              ", ".join(f"{v} {k}" for k, v in counts.items())))
    splits = folder.splits()
    if splits and splits.get("folds"):
        test = [len(f["test"]) for f in splits["folds"]]
        train = [len(f["train"]) for f in splits["folds"]]
        repeats = splits.get("outer_repeats", 1)
        steps.append(FlowStep(f"outer cross-validation: {splits.get('outer_folds')} folds × {repeats} repeat"
                              f"{'s' if repeats != 1 else ''}", None,
                              f"each fold trains on {_count_range(train)} and tests on {_count_range(test)} "
                              "cases; every case is tested once per repeat"))
    metrics = folder.metrics()
    if metrics is not None:
        for cohort, rows in metrics[metrics["cohort"] != "cv"].groupby("cohort", sort=False):
            steps.append(FlowStep(f"external cohort {cohort}", int(rows["n"].iloc[0]),
                                  f"{int(rows['n_positive'].iloc[0])} positive; tested with the final models"))
    return steps


def comparison_rows(folder: ModelFolder) -> tuple[list[dict], str]:
    """The comparison table and the file it comes from: ``comparison.csv`` (clinical / radiomics / combined, with
    DeLong's test) when the run has one, else ``metrics.csv`` (every model and cohort)."""
    comparison = folder.comparison()
    if comparison is not None and len(comparison):
        return comparison.reindex(columns=COMPARISON_COLUMNS).to_dict("records"), "comparison.csv"
    metrics = folder.metrics()
    if metrics is None:
        return [], ""
    # a column an older or hand-made metrics.csv lacks shows as "–", not as an error
    return metrics.reindex(columns=METRICS_SHOWN).to_dict("records"), "metrics.csv"


def roc_figure(predictions: pd.DataFrame, *, source: str = "predictions.csv") -> bytes | None:
    """ROC curves of every model, one panel per cohort; out-of-fold probabilities are averaged over repeats."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    if "y_prob" not in predictions.columns:
        return None
    cases = case_probabilities(predictions)
    cohorts = [c for c in _cohort_order(cases["cohort"]) if cases.loc[cases["cohort"] == c, "y_true"].nunique() == 2]
    if not cohorts:
        return None
    fig, axes = plt.subplots(1, len(cohorts), figsize=(4.8 * len(cohorts), 4.8), squeeze=False)
    for ax, cohort in zip(axes[0], cohorts, strict=True):
        mine = cases[cases["cohort"] == cohort]
        for k, (model, part) in enumerate(mine.groupby("model", sort=False)):
            fpr, tpr, _ = roc_curve(part["y_true"], part["y_prob"])
            ax.plot(fpr, tpr, color=_COLOURS[k % len(_COLOURS)], lw=1.7, label=model)
        ax.plot([0, 1], [0, 1], color="#7f7f7f", lw=0.8, ls="--")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("1 − specificity")
        ax.set_ylabel("sensitivity")
        ax.set_title("out-of-fold (cross-validation)" if cohort == "cv" else f"external: {cohort}", fontsize=10)
        ax.legend(loc="lower right", fontsize=8.5, frameon=False)
    return figure_png(fig, f"table: {source}")


def _f3(value, signed: bool = False) -> str:
    """A metric with three decimals; "–" when undefined (a CI without bootstrap, a p value of the best model)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    if not np.isfinite(value):
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _radscore_texts(folder: ModelFolder) -> list[tuple[str, str]]:
    """(model, R formula) of every model folder with a ``radscore.txt``: the best model's first."""
    card = folder.card()
    found = []
    if (folder.path / RADSCORE_TXT_FILE).exists():
        found.append((str(card.get("model_name", "best model")), (folder.path / RADSCORE_TXT_FILE).read_text()))
    models_dir = folder.path / MODELS_DIR
    if models_dir.is_dir():
        for sub in sorted(models_dir.iterdir()):
            path = sub / RADSCORE_TXT_FILE
            if path.is_file() and sub.name not in {name for name, _ in found}:
                found.append((sub.name, path.read_text()))
    return found


def _net_benefit_rows(table: pd.DataFrame | None) -> list[dict]:
    if table is None or table.empty:
        return []
    shown = table[table["threshold"].round(6).isin(NET_BENEFIT_SHOWN)]
    rows = []
    for (cohort, model), part in shown.groupby(["cohort", "model"], sort=False):
        part = part.set_index("threshold")
        rows.append({"cohort": cohort, "model": model,
                     "values": [(float(part.at[t, "net_benefit"]), float(part.at[t, "treat_all"]))
                                if t in part.index else (np.nan, np.nan) for t in NET_BENEFIT_SHOWN]})
    return rows


def _nomogram(model_dir: Path, out_dir: Path) -> tuple[str | None, str]:
    """The nomogram PNG (base64) drawn by :func:`radpipe.explain.nomogram.write_nomogram`, or why there is none."""
    try:
        from radpipe.explain.nomogram import write_nomogram
    except ImportError:
        return None, "This radpipe has no nomogram module"
    path = write_nomogram(model_dir, out_dir / "figures")
    if path is None or not Path(path).is_file():
        return None, "No logistic model with a formula in this run, so no nomogram"
    return b64(Path(path).read_bytes()), Path(path).name


def write_study(model_dir: str | Path, out_dir: str | Path, *, features_dir: str | Path | None = None,
                banner: str = "") -> Path | None:
    """Write ``study.html`` and the CLEAR and METRICS checklists (:func:`radpipe.explain.checklists.write_checklists`)
    into ``out_dir`` for a binary classifier's model folder; None (nothing written) for other outcomes.

    Parameters
    ----------
    model_dir
        Folder written by ``radpipe train``.
    out_dir
        The explain folder (``study.html`` goes beside ``cohort.html``; the nomogram into ``figures/``).
    features_dir
        The extract stage's folder (``qc.csv``, ``manifest.json``), for the flow of cases and the methods; without
        it the flow starts at the cases included in modelling.
    banner
        A line shown above the page (e.g. "research use only").

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np, pandas as pd
    >>> from radpipe.model import ModelSettings, train_models
    >>> rng = np.random.default_rng(0)
    >>> y = pd.Series(["no", "yes"] * 10, index=[f"c{i:02d}" for i in range(20)])
    >>> X = pd.DataFrame({"f1": rng.normal(size=20) + (y == "yes"), "f2": rng.normal(size=20)}, index=y.index)
    >>> work = Path(tempfile.mkdtemp())
    >>> _ = train_models(X, y, ModelSettings(models=["logreg"], positive_class="yes", bootstrap=0), work / "m")
    >>> write_study(work / "m", work / "explain").name
    'study.html'
    """
    folder = ModelFolder(Path(model_dir))
    card = folder.card()
    if card.get("outcome_type") in ("survival", "multiclass") or len(card.get("classes", [])) != 2:
        return None
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    features_dir = Path(features_dir) if features_dir else None
    figs, sources = {}, {}
    predictions = folder.predictions()
    if predictions is not None:
        png = roc_figure(predictions)
        if png:
            figs["roc"], sources["roc"] = png, "predictions.csv"
    curve = pd.read_csv(folder.calibration_curve_path) if folder.calibration_curve_path.exists() else None
    summary = pd.read_csv(folder.calibration_summary_path) if folder.calibration_summary_path.exists() else None
    if curve is not None and len(curve):
        figs["calibration"] = calibration_figure(curve, summary, source=folder.calibration_curve_path.name)
        sources["calibration"] = folder.calibration_curve_path.name
    dca = pd.read_csv(folder.decision_curve_path) if folder.decision_curve_path.exists() else None
    if dca is not None and len(dca):
        figs["decision"] = decision_curve_figure(dca, source=folder.decision_curve_path.name)
        sources["decision"] = folder.decision_curve_path.name
    nomogram, nomogram_note = _nomogram(folder.path, out_dir)
    rows, rows_source = comparison_rows(folder)
    html = env(banner).get_template(STUDY_FILE).render(
        title=f"Study report: {read_extraction_manifest(features_dir).get('cohort') or card.get('model_name', 'model')}",
        card=card,
        flow=case_flow(folder, features_dir), rows=rows, rows_source=rows_source,
        figs={k: b64(v) for k, v in figs.items()}, sources=sources,
        calibration=[] if summary is None else summary.to_dict("records"),
        net_benefit=_net_benefit_rows(dca), shown_thresholds=NET_BENEFIT_SHOWN,
        nomogram=nomogram, nomogram_note=nomogram_note, radscores=_radscore_texts(folder),
        sample_size=folder.sample_size(), methods=methods_paragraph(folder.path, features_dir),
        checklists=[f"checklist_{name}.md" for name in CHECKLISTS], versions=software_versions(), f3=_f3,
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    target = out_dir / STUDY_FILE
    atomic_write_text(target, html)
    write_checklists(folder.path, out_dir, features_dir)  # after study.html: the case-flow item points at it
    return target
