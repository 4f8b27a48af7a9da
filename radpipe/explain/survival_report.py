"""The explain stage for a time-to-event model (model card ``outcome_type: "survival"``): SHAP of the risk score,
a cohort page (Kaplan–Meier curves of the cross-validated risk groups, C-index table, time-dependent AUC,
calibration at the horizons, SHAP beeswarm) and one page per patient (cross-validated risk and risk group, the
final model's survival curve against the cohort's Kaplan–Meier curve, a SHAP waterfall of the risk).

:func:`radpipe.explain.explain` hands a survival model to :func:`explain_survival`; numbers come from
:mod:`radpipe.explain.survival_numbers`, figures from :mod:`radpipe.explain.plots`.
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from radpipe._io import atomic_write_bytes, atomic_write_text, software_versions
from radpipe.explain import plots
from radpipe.explain._format import plain_number
from radpipe.explain.attributions import feature_parts, write_csv
from radpipe.explain.headline import training_cases
from radpipe.explain.pages import b64, card_rows, env, feature_labels, waterfall_rows
from radpipe.explain.shap_values import original_name_map, to_original
from radpipe.explain.survival_numbers import (
    SOURCE_TEXT,
    SurvivalView,
    calibration_table,
    cv_metrics_row,
    final_survival,
    metrics_table,
    out_of_fold_risk,
    survival_rows,
)
from radpipe.explain.survival_shap import compute_risk_shap
from radpipe.model.folder import ModelFolder
from radpipe.model.survival import horizon_label

GROUP_LABELS = {"high": "high risk", "low": "low risk", "unknown": "unknown"}


def time_text(v) -> str:
    """A follow-up time or horizon as written in the data: whole numbers exactly, others to one decimal.

    >>> time_text(1095.0), time_text(71.83), time_text(12000)
    ('1,095', '71.8', '12,000')
    """
    v = float(v)
    return f"{v:,.0f}" if v.is_integer() else f"{v:,.1f}"


def explain_survival(model, folder: ModelFolder, X: pd.DataFrame, X_train: pd.DataFrame, train_note: str,
                     out_dir: Path, *, labels, images, page_cases: list[str], file_names: dict[str, str],
                     settings, n_jobs: int, progress, codebook: pd.DataFrame | None) -> dict:
    """Write the survival reports into ``out_dir``; returns the fields of :class:`~radpipe.explain.report.ExplainResult`
    (``lime`` is empty: LIME is not run for survival models)."""
    started = time.time()
    view = SurvivalView.of(model)
    timings: dict[str, float] = {}
    shap = compute_risk_shap(model.pipeline, X, X_train, explainer=settings.explainer,
                             background=settings.shap_background, agnostic_background=settings.agnostic_background,
                             max_evals=settings.shap_max_evals, seed=settings.seed, n_jobs=n_jobs)
    original = to_original(shap.values, view.names)
    timings["shap"] = time.time() - started
    final = final_survival(model.pipeline, X, view, page_cases)
    additivity = float(np.max(np.abs(shap.base_value + shap.values.sum(axis=1) - final.risk))) if len(X) else 0.0
    # e.g. a penalised Cox model whose penalty removed every feature: one score for all, nothing to attribute
    constant = bool(len(X) > 1 and np.ptp(final.risk.to_numpy()) <= 1e-12 * max(1.0, float(final.risk.abs().max())))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "figures" / "patients").mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "shap_values.csv", shap.to_frame())
    write_csv(out_dir / "shap_values_original.csv", original.assign(base_value=shap.base_value))
    atomic_write_text(out_dir / "lime.csv", "case_id,feature,feature_rule,weight,score\n")

    cv_rows = survival_rows(folder, view.model_name)
    oof = out_of_fold_risk(cv_rows, view.horizons)
    metrics = metrics_table(folder)
    m = cv_metrics_row(metrics, view.model_name)
    trained_on = training_cases(folder, X_train if X_train is not X else None)
    follow = _follow_up(X.index, oof, folder, labels, view)
    km = _cohort_km(oof, follow)
    labels_of = feature_labels(view.names, codebook)
    # an unused feature's permutation estimate is zero up to rounding (1e-17): below this it counts as no contribution
    eps = 1e-9 * max(1.0, float(np.nanmax(shap.values.abs().to_numpy(), initial=0.0)))
    mean_abs = original.abs().mean().sort_values(ascending=False, kind="stable")
    mean_abs = mean_abs.where(mean_abs > eps, 0.0)
    top = [n for n in mean_abs.index if mean_abs[n] > 0][: settings.top_features]
    cv_all = oof["risk"].to_numpy(dtype=float) if len(oof) else final.risk.to_numpy(dtype=float)
    heads = {c: _headline(c, oof, final, trained_on, cv_all) for c in X.index}

    pages_dir = out_dir / "patients"
    pages_dir.mkdir(exist_ok=True)
    template = env(settings.banner).get_template("survival_patient.html")
    rows = []
    if progress:
        progress(0, len(page_cases))
    for k, c in enumerate(page_cases):
        rows.append(_patient_page(c, template, X, X_train, shap, view, final, heads[c], follow.get(c), km, oof,
                                  images, settings, labels_of, file_names[c], pages_dir, out_dir, constant, eps))
        if progress:
            progress(k + 1, len(page_cases))
    timings["patient_pages"] = time.time() - started - timings["shap"]

    figs = _cohort_figures(X, shap, original, mean_abs, oof, metrics, folder, view, settings, labels_of, constant)
    for key, png in figs.items():
        atomic_write_bytes(out_dir / "figures" / f"cohort_{key}.png", png)
    summary = {
        "model_name": view.model_name, "outcome_type": "survival",
        "outcome": {"time": view.time_column, "event": view.event_column, "time_unit": view.time_unit},
        "horizons": view.horizons, "risk_cutoff": view.cutoff, "explainer": shap.explainer,
        "explainer_notes": shap.notes, "background_source": train_note, "base_value": shap.base_value,
        "additivity_max_error": additivity, "n_cases": int(len(X)), "n_patients": len(page_cases),
        "n_final_features": int(shap.values.shape[1]),
        "top_features": [{**feature_parts(n), "feature": n, "mean_abs_shap": float(mean_abs[n])} for n in top],
        "metrics_cv": m, "lime": "not computed for survival models", "constant_final_model": constant,
        "settings": settings.model_dump(),
    }
    table_rows = [{"case_id": c, "file": file_names.get(c), **heads[c], "follow": follow.get(c),
                   "top_feature": original.loc[c].abs().idxmax() if original.shape[1] else ""} for c in X.index]
    cohort_page = out_dir / "cohort.html"
    atomic_write_text(cohort_page, env(settings.banner).get_template("survival_cohort.html").render(
        title=f"{view.model_name}: explanations", summary=summary, view=view, m=m, figs={k: b64(v) for k, v in figs.items()},
        metrics_rows=_metrics_rows(metrics, view), top=summary["top_features"], rows=table_rows,
        names=labels_of.names, group_labels=GROUP_LABELS, source_text=SOURCE_TEXT, has_oof=len(oof) > 0,
        card=card_rows(model.card), card_md=folder.card_md(), notes=shap.notes, n_repeats=int(oof["repeats"].max())
        if len(oof) else 0, generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        versions=software_versions(), fmt=plain_number, fmt_time=time_text, constant=constant))
    if rows:
        write_csv(out_dir / "patients.csv", pd.DataFrame(rows).set_index("case_id"))
    summary["files"] = sorted(str(p.relative_to(out_dir)) for p in out_dir.glob("*.csv"))
    summary["elapsed_seconds"] = round(time.time() - started, 2)
    summary["timings_seconds"] = {k: round(v, 2) for k, v in timings.items()}
    summary["patients"] = {c: {"final_risk": float(final.risk[c]), "headline": heads[c]} for c in page_cases}
    return {"out_dir": out_dir, "cohort_page": cohort_page,
            "patient_pages": {c: pages_dir / f"{file_names[c]}.html" for c in page_cases},
            "shap": shap, "shap_original": original, "summary": summary,
            "lime": pd.DataFrame(columns=["case_id", "feature", "feature_rule", "weight", "score"])}


# ---------------------------------------------------------------- numbers of one case


def _headline(case, oof: pd.DataFrame, final, trained_on, cv_all: np.ndarray) -> dict:
    """The risk a page leads with and where it comes from (out-of-fold when the model folder has it)."""
    out = {"final_risk": float(final.risk[case]), "final_group": str(final.group[case])}
    if case in oof.index:
        row = oof.loc[case]
        out.update(source="cv", risk=float(row["risk"]), low=float(row["low"]), high=float(row["high"]),
                   repeats=int(row["repeats"]), high_calls=int(row["high_calls"]), group=str(row["group"]))
    else:
        source = "final" if trained_on is None else "training" if case in trained_on else "external"
        out.update(source=source, risk=out["final_risk"], low=None, high=None, repeats=0, high_calls=None,
                   group=out["final_group"])
    # where the risk stands among the cohort's cross-validated risks (ties count half)
    out["percentile"] = float(100 * ((cv_all < out["risk"]).mean() + 0.5 * (cv_all == out["risk"]).mean())) \
        if cv_all.size else None
    return out


def _follow_up(index, oof: pd.DataFrame, folder: ModelFolder, labels, view: SurvivalView) -> dict:
    """case -> (time, event) when known: predictions.csv (any cohort), else a labels table with the outcome columns."""
    known: dict[str, tuple[float, bool]] = {}
    for c, row in oof.iterrows():
        if pd.notna(row["time"]) and pd.notna(row["event"]):
            known[str(c)] = (float(row["time"]), bool(int(row["event"])))
    try:
        pr = folder.predictions()
    except Exception:  # optional table, already warned about by survival_rows
        pr = None
    if pr is not None and {"time", "event"} <= set(pr.columns):
        for c, t, e in pr[["case_id", "time", "event"]].dropna().itertuples(index=False):
            known.setdefault(str(c), (float(t), bool(int(e))))
    if isinstance(labels, pd.DataFrame) and {view.time_column, view.event_column} <= set(labels.columns):
        table = labels.copy()
        table.index = table.index.map(str)
        for c, t, e in table[[view.time_column, view.event_column]].dropna().itertuples():
            known.setdefault(str(c), (float(t), bool(int(e))))
    wanted = set(map(str, index))
    return {c: v for c, v in known.items() if c in wanted}


def _cohort_km(oof: pd.DataFrame, follow: dict):
    """The training cohort's Kaplan–Meier curve (cases of predictions.csv's cv rows), or of the explained cases
    with known follow-up."""
    if len(oof) and oof["time"].notna().all():
        t, e, source = oof["time"].to_numpy(float), oof["event"].to_numpy(float).astype(bool), "training"
    elif follow:
        t = np.array([v[0] for v in follow.values()])
        e = np.array([v[1] for v in follow.values()])
        source = "explained"
    else:
        return None
    km_t, s, lo, hi = plots.kaplan_meier(t, e)
    return {"time": km_t, "surv": s, "low": lo, "high": hi, "n": int(len(t)), "events": int(e.sum()), "source": source}


def _km_at(km, h: float) -> float | None:
    if km is None:
        return None
    k = np.searchsorted(km["time"], h, side="right") - 1
    return float(km["surv"][max(k, 0)])


def _risk_waterfall(contrib: pd.Series, raw: pd.Series, base: float, risk: float, cutoff: float | None,
                    top: int) -> dict:
    """Rows of the HTML waterfall of the risk score: from the base value, the ``top`` largest contributions and the
    rest, to the risk; positions are percentages of an axis spanning every intermediate value and the cut-off."""
    order = contrib.abs().sort_values(ascending=False, kind="stable").index
    steps = [(name, float(contrib[name])) for name in order[:top]]
    if len(order) > top:
        rest = len(order) - top
        steps.append((f"{rest} other feature{'s' if rest > 1 else ''}", float(contrib[order[top:]].sum())))
    points = np.cumsum([base] + [d for _, d in steps])
    marks = points if cutoff is None else np.append(points, cutoff)
    lo, hi = float(marks.min()), float(marks.max())
    span = max(hi - lo, 1e-9)
    lo, hi = lo - 0.08 * span, hi + 0.08 * span
    span = hi - lo

    def at(v):
        return round(100 * (float(v) - lo) / span, 3)

    rows = waterfall_rows(steps, base, raw, at, span)
    values = [t for t in MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= t <= hi]
    # as few decimals as write every tick exactly: 0.01, 0.02 rather than 0.0100, 0.0200
    step = values[1] - values[0] if len(values) > 1 else span
    values = [0.0 if abs(t) < step / 1e6 else t for t in values]
    decimals = next((d for d in range(8) if all(abs(round(t, d) - t) <= 1e-6 * step for t in values)), 8)
    ticks = [(at(t), f"{t:,.{decimals}f}") for t in values]
    return {"rows": rows, "ticks": ticks, "base": at(base), "prob": at(risk),
            "threshold": None if cutoff is None else at(cutoff), "base_value": base, "probability": risk}


def _patient_page(c, template, X, X_train, shap, view: SurvivalView, final, head, follow, km, oof, images, settings,
                  labels_of, file_name: str, pages_dir: Path, out_dir: Path, constant: bool, eps: float) -> dict:
    mapping = original_name_map(shap.values.columns, view.names)
    everything = shap.values.loc[c]
    contrib = everything[everything.abs() > eps]  # features the model does not use for this patient are left out
    raw = pd.Series({f: X.loc[c, mapping[f]] if mapping[f] in X.columns else shap.features.loc[c, f]
                     for f in contrib.index})
    train_num = X_train[view.names].apply(pd.to_numeric, errors="coerce")
    top = []
    for f in contrib.abs().sort_values(ascending=False, kind="stable").index[: settings.top_features]:
        orig = mapping[f]
        d = train_num[orig].dropna().to_numpy() if orig in train_num else np.array([])
        v = raw[f]
        pct = float(100 * ((d < v).mean() + 0.5 * (d == v).mean())) if d.size and pd.notna(v) else None
        top.append({**feature_parts(orig), "feature": orig, "value": v, "percentile": pct,
                    "shap": float(contrib[f])})
    horizons = []
    for h in view.horizons:
        col = f"surv_{horizon_label(h)}"
        cv = oof.loc[c] if c in oof.index and col in oof.columns else None
        horizons.append({"h": h, "cv": None if cv is None else float(cv[col]),
                         "cv_low": None if cv is None else float(cv[f"{col}_low"]),
                         "cv_high": None if cv is None else float(cv[f"{col}_high"]),
                         "final": None if pd.isna(final.at_horizons.loc[c, col]) else float(final.at_horizons.loc[c, col]),
                         "km": _km_at(km, h)})
    figs, image_note = {}, None
    if c in final.curves and km is not None:
        t, s = final.curves[c]
        cv_points = {r["h"]: (r["cv"], r["cv_low"], r["cv_high"]) for r in horizons if r["cv"] is not None}
        in_sample = head["source"] in ("cv", "training")
        figs["curve"] = plots.survival_curve(
            t, s, km["time"], km["surv"], km["low"], km["high"], time_unit=view.time_unit, horizons=view.horizons,
            cv_points=cv_points or None,
            curve_label="this patient, final model" + (" (in-sample)" if in_sample else ""),
            km_label=f"{'training cohort' if km['source'] == 'training' else 'explained cases'} (Kaplan–Meier, 95% band)")
    if settings.images and images and c in images:
        from radpipe.extract.slices import read_lesion_slice

        try:
            img, msk, spacing, where = read_lesion_slice(*tuple(images[c]))
            figs["image"] = plots.lesion_slice(img, msk, spacing)
            image_note = where[:1].upper() + where[1:]
        except Exception as exc:  # a missing or unreadable image must not stop the page
            image_note = f"image not shown: {exc}"
    for key, ext in (("curve", "png"), ("image", "jpg")):
        if key in figs:
            atomic_write_bytes(out_dir / "figures" / "patients" / f"{file_name}_{key}.{ext}", figs[key])
    # the unused features' rounding-level values go into the ends, so the bars still add up to the risk exactly
    waterfall = _risk_waterfall(contrib, raw, shap.base_value + float(everything.drop(contrib.index).sum()),
                                float(final.risk[c]), view.cutoff, settings.top_features)
    html = template.render(
        title=f"Patient {c}", case_id=c, head=head, view=view, follow=follow, horizons=horizons, km=km,
        figs={k: b64(v) for k, v in figs.items()}, image_note=image_note, waterfall=waterfall, top=top,
        names=labels_of.names, units=labels_of.units, explainer=shap.explainer, notes=shap.notes,
        settings=settings.model_dump(), group_labels=GROUP_LABELS, curve_note=final.note,
        up=[t for t in top if t["shap"] > 0][:3], down=[t for t in top if t["shap"] < 0][:3], fmt=plain_number,
        fmt_time=time_text, constant=constant, n_unused=int(len(everything) - len(contrib)))
    atomic_write_text(pages_dir / f"{file_name}.html", html)
    return {"case_id": c, "risk": head["risk"], "risk_source": head["source"], "risk_low": head["low"],
            "risk_high": head["high"], "risk_group": head["group"], "high_risk_repeats": head["high_calls"],
            "repeats": head["repeats"], "final_model_risk": head["final_risk"],
            "final_model_risk_group": head["final_group"], "page": f"patients/{file_name}.html"}


# ---------------------------------------------------------------- cohort page


def _cohort_figures(X, shap, original, mean_abs, oof, metrics, folder, view: SurvivalView, settings,
                    labels_of, constant: bool) -> dict[str, bytes]:
    figs: dict[str, bytes] = {}
    if len(oof) and oof["time"].notna().all():
        figs["km_groups"] = plots.kaplan_meier_groups(
            oof["time"], oof["event"].astype(bool), oof["group"], time_unit=view.time_unit,
            labels={"low": "low risk", "high": "high risk"}, horizons=view.horizons)
    if metrics is not None and "cohort" in metrics and view.horizons:
        cols = [f"td_auc_{horizon_label(h)}" for h in view.horizons]
        cv = metrics[metrics["cohort"].astype(str) == "cv"]
        if set(cols) <= set(cv.columns) and len(cv):
            curves = {str(r["model"]): [float(r[col]) for col in cols] for _, r in cv.iterrows()
                      if any(pd.notna(r[col]) for col in cols)}
            if curves:
                figs["td_auc"] = plots.td_auc(view.horizons, curves, highlight=view.model_name,
                                              time_unit=view.time_unit)
    cal = calibration_table(folder, view.model_name)
    panels = _calibration_panels(cal, view)
    if panels:
        figs["calibration"] = plots.survival_calibration(panels)
    if len(X) and not constant:
        raw = X[view.names].apply(pd.to_numeric, errors="coerce")
        shown_f = [n for n in mean_abs.index[:15] if mean_abs[n] > 0] or list(mean_abs.index[:15])
        figs["beeswarm"] = plots.beeswarm(original[shown_f], raw.reindex(columns=shown_f), top=15,
                                          seed=settings.seed, positive="higher risk", negative="lower risk",
                                          display_names=labels_of.names,
                                          xlabel="SHAP value (change in the risk score)")
        figs["mean_abs"] = plots.magnitude_bars(mean_abs[mean_abs > 0].head(settings.top_features),
                                                xlabel="mean |SHAP value| (risk score)",
                                                display_names=labels_of.names)
    return figs


def _calibration_panels(cal: pd.DataFrame | None, view: SurvivalView):
    """(title, predicted, observed, low, high) per horizon from calibration_survival.csv, tertiles low to high;
    a tertile without an observed value at a horizon (no follow-up that long) is left out."""
    if cal is None or not {"horizon", "predicted_survival", "observed_survival"} <= set(cal.columns):
        return []
    panels = []
    for h, part in cal.groupby("horizon", sort=True):
        if "risk_tertile" in part:
            part = part.sort_values("risk_tertile", key=lambda s: s.map({"low": 0, "middle": 1, "high": 2}))
        part = part[part["observed_survival"].notna()]
        if part.empty:
            continue
        obs = part["observed_survival"].to_numpy(float)
        panels.append((f"at {time_text(h)} {view.time_unit}", part["predicted_survival"].to_numpy(float), obs,
                       part.get("observed_ci_low", part["observed_survival"]).to_numpy(float),
                       part.get("observed_ci_high", part["observed_survival"]).to_numpy(float)))
    return panels


def _metrics_rows(metrics: pd.DataFrame | None, view: SurvivalView) -> list[dict]:
    """metrics.csv as the C-index table shows it: each estimate with its CI, missing cells as a dash."""
    if metrics is None or "c_harrell" not in metrics:
        return []

    def est(row, key, digits=3):
        v = row.get(key)
        if v is None or pd.isna(v):
            return "–"
        lo, hi = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
        text = f"{float(v):.{digits}f}"
        if lo is not None and hi is not None and pd.notna(lo) and pd.notna(hi):
            text += f" ({float(lo):.{digits}f}–{float(hi):.{digits}f})"
        return text

    out = []
    for _, r in metrics.iterrows():
        row = r.to_dict()
        p = row.get("logrank_p")
        out.append({
            "cohort": str(row.get("cohort")), "model": str(row.get("model")),
            "chosen": str(row.get("model")) == view.model_name,
            "n": "–" if pd.isna(row.get("n")) else str(int(row["n"])),
            "events": "–" if pd.isna(row.get("n_events")) else str(int(row["n_events"])),
            "c_harrell": est(row, "c_harrell"), "c_uno": est(row, "c_uno"),
            "c_harrell_value": row.get("c_harrell"), "c_uno_value": row.get("c_uno"),
            "td_auc": est(row, "td_auc_mean"),
            "ibs": "–" if pd.isna(row.get("ibs")) else f"{row['ibs']:.3f}" + (
                "" if pd.isna(row.get("ibs_null")) else f" (null {row['ibs_null']:.3f})"),
            "logrank_p": "–" if p is None or pd.isna(p) else _p_value(float(p)),
            "hazard_ratio": est(row, "hazard_ratio", 2),
            "c_folds": "–" if pd.isna(row.get("c_fold_mean")) else f"{row['c_fold_mean']:.3f}" + (
                "" if pd.isna(row.get("c_fold_sd")) else f" ± {row['c_fold_sd']:.3f}"),
        })
    return out


def _p_value(p: float) -> str:
    """A p-value as papers print it: 0.032, 0.0041, < 0.0001."""
    return "< 0.0001" if p < 1e-4 else f"{p:.2g}" if p < 0.01 else f"{p:.3f}"
