"""Explanations by example for the patient pages: the most similar training patients and whether a patient is
unlike the training cases (out-of-distribution), read from the model folder's ``neighbours.joblib``.

The fitted objects belong to the model stage (:mod:`radpipe.model.neighbours`); this module only looks up
the page's patients and joins the numbers the pages show from the tables they name: distances written here
to ``similar_patients.csv``, outcomes from the model folder's ``train_labels.csv``, out-of-fold probabilities
and cross-validated OOD percentiles from its ``predictions.csv``.
"""

from __future__ import annotations

import base64
import warnings

import numpy as np
import pandas as pd

from radpipe.explain import plots
from radpipe.model.neighbours import DISTANCE_NAME, OOD_PERCENTILE

SIMILAR_COLUMNS = ["case_id", "rank", "neighbour", "distance", "outcome", "oof_probability", "oof_predicted"]


def similar_patients(model, X: pd.DataFrame, cases: list[str], headlines: dict, oof: pd.DataFrame,
                     train_labels: pd.Series | None, k: int) -> pd.DataFrame:
    """The ``k`` nearest training patients of each page case (:data:`SIMILAR_COLUMNS`), or an empty table.

    A case is never its own neighbour; on a cross-validated page (the case was in nested CV) the training
    cases of its group are left out too, as the outer folds left them out.
    """
    nb = getattr(model, "neighbours", None)
    if nb is None or k <= 0 or not cases:
        return pd.DataFrame(columns=SIMILAR_COLUMNS)
    group_of = nb.group_of()
    members: dict[str, set[str]] = {}
    for case, group in group_of.items():
        members.setdefault(group, set()).add(case)
    exclude = {c: ({c} | members.get(group_of.get(c), set())) if headlines[c]["source"] == "cv" else {c}
               for c in cases}
    table = nb.query(model.pipeline, X.loc[cases], k=k, exclude=exclude)
    labels = train_labels if train_labels is not None else pd.Series(dtype=object)
    table["outcome"] = table["neighbour"].map(lambda n: labels.get(n))
    table["oof_probability"] = table["neighbour"].map(oof["probability"]) if len(oof) else np.nan
    table["oof_predicted"] = (table["neighbour"].map(oof["predicted"]) if "predicted" in oof.columns
                              else pd.Series(None, index=table.index, dtype=object))
    return table[SIMILAR_COLUMNS]


def ood_of_cases(model, X: pd.DataFrame, cases: list[str], headlines: dict, cv_rows: pd.DataFrame | None) -> dict:
    """Each page case's OOD percentile and flag, and where they come from.

    Cross-validated cases take the percentile their fold's own scorer gave (``predictions.csv``; the median
    over repeats, flagged when most repeats flagged it); other cases are scored by the final model's scorer.
    """
    nb = getattr(model, "neighbours", None)
    out: dict[str, dict] = {}
    have_cv = cv_rows is not None and "ood_percentile" in cv_rows.columns
    by_case = cv_rows.groupby("case_id", sort=False) if have_cv else None
    others = [c for c in cases if not (have_cv and headlines[c]["source"] == "cv" and c in by_case.groups)]
    scored = nb.score(model.pipeline, X.loc[others]) if nb is not None and others else None
    for c in cases:
        if c not in others:
            rows = by_case.get_group(c)
            pct = rows["ood_percentile"].astype(float)
            flags = rows["ood_flag"].astype(str).str.lower().isin(["true", "1"])
            out[c] = {"percentile": float(pct.median()), "flag": bool(2 * flags.sum() > len(flags)),
                      "repeats": int(len(rows)), "source": "cv"}
        elif scored is not None:
            out[c] = {"percentile": float(scored.at[c, "ood_percentile"]), "flag": bool(scored.at[c, "ood_flag"]),
                      "repeats": 0, "source": "final"}
    return out


def thumbnails(neighbour_ids, images: dict | None, height: int = 96) -> dict[str, str]:
    """Base64 JPEG thumbnails (the zoomed lesion) of the neighbours whose image and mask are known."""
    from radpipe.extract.slices import read_lesion_slice

    out: dict[str, str] = {}
    for case in dict.fromkeys(neighbour_ids):
        if not images or case not in images:
            continue
        try:
            img, msk, spacing, _ = read_lesion_slice(*images[case])
            out[case] = base64.b64encode(plots.lesion_slice(img, msk, spacing, height=height,
                                                            zoom_only=True)).decode("ascii")
        except Exception as exc:  # one unreadable image must not stop the pages
            warnings.warn(f"no thumbnail for {case}: {exc}", stacklevel=2)
    return out


def page_section(case: str, table: pd.DataFrame, ood: dict, thumbs: dict[str, str], view, k: int,
                 neighbours=None) -> dict:
    """What a page's "Similar patients" section and its OOD warning show, as plain values."""
    rows = table[table["case_id"] == case]
    items = [{"case_id": r.neighbour, "outcome": None if pd.isna(r.outcome) else str(r.outcome),
              "probability": None if pd.isna(r.oof_probability) else float(r.oof_probability),
              "predicted": None if pd.isna(r.oof_predicted) else str(r.oof_predicted),
              "distance": float(r.distance), "thumb": thumbs.get(r.neighbour)} for r in rows.itertuples()]
    known = [i["outcome"] for i in items if i["outcome"] is not None]
    counts = [(c, known.count(c)) for c in view.classes if known.count(c)]
    share = (known.count(str(view.positive)) / len(known)) if known and not view.multiclass else None
    return {"k": k, "rows": items, "n_known": len(known), "counts": counts, "share_positive": share,
            "distance_name": DISTANCE_NAME, "ood": ood.get(case), "ood_cut": OOD_PERCENTILE,
            "grouped": bool(getattr(neighbours, "groups", None)),
            "typical": _finite(getattr(neighbours, "typical_distance", None))}


def _finite(value) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None
