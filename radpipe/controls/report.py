"""The negative-control section of the cohort page: the table of ``negative_controls.csv`` and what it means,
in plain words, for the explained model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from radpipe.controls.run import NEGATIVE_CONTROLS_FILE, read_negative_controls

CONTROL_LABELS = {
    "none": "real images",
    "shuffled": "voxels shuffled inside the ROI",
    "moved": "ROI moved elsewhere in the body",
    "noise": "image replaced by noise (ROI mean and SD)",
}
FEATURE_LABELS = {"all": "all features", "texture": "texture only"}
#: AUC differences below this are read as "about the same" in the sentences (the tables give the CIs).
CLOSE = 0.05


def _auc(row) -> str:
    if not np.isfinite(row["auc"]):
        return "not trained"
    ci = f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if np.isfinite(row["ci_low"]) else ""
    return f"{row['auc']:.2f}{ci}"


def _value(table: pd.DataFrame, control: str, features: str, model: str) -> float:
    hit = table[(table["control"] == control) & (table["features"] == features) & (table["model"] == model)]
    return float(hit["auc"].iloc[0]) if len(hit) and np.isfinite(hit["auc"].iloc[0]) else float("nan")


def interpretation(table: pd.DataFrame, model: str) -> list[str]:
    """Plain sentences about ``model``'s rows of ``negative_controls.csv``.

    >>> table = pd.DataFrame({"control": ["none", "shuffled", "none", "shuffled"],
    ...                       "features": ["all", "all", "texture", "texture"], "model": ["rf"] * 4,
    ...                       "auc": [0.85, 0.84, 0.80, 0.52]})
    >>> print(interpretation(table, "rf")[1])
    The full model keeps its AUC on shuffled voxels (0.84 against 0.85 on the real images): what it learns is mostly the intensity histogram, volume or shape, not texture.
    """
    lines = ["Shuffling the voxels inside each ROI keeps every first-order and shape feature (the same values in "
             "another order, the same mask); only the spatial arrangement, which texture features measure, is "
             "destroyed. So a model "
             "that does as well on shuffled voxels is learning the intensity histogram, volume or shape, not texture."]
    real, shuffled = _value(table, "none", "all", model), _value(table, "shuffled", "all", model)
    if np.isfinite(real) and np.isfinite(shuffled):
        if shuffled >= real - CLOSE:
            lines.append(f"The full model keeps its AUC on shuffled voxels ({shuffled:.2f} against {real:.2f} on the "
                         "real images): what it learns is mostly the intensity histogram, volume or shape, not texture.")
        else:
            lines.append(f"The full model loses AUC on shuffled voxels ({shuffled:.2f} against {real:.2f} on the real "
                         "images): part of what it learns is the lesion's texture.")
    t_real, t_shuffled = _value(table, "none", "texture", model), _value(table, "shuffled", "texture", model)
    if np.isfinite(t_real) and np.isfinite(t_shuffled):
        verdict = ("near chance, as it should be" if t_shuffled < 0.6 else
                   "still above chance: the texture features also carry the histogram or the ROI size (grey-level "
                   "and zone counts grow with the number of voxels)")
        lines.append(f"A texture-only model scores {t_real:.2f} on the real images and {t_shuffled:.2f} on shuffled "
                     f"voxels, {verdict}.")
    moved, noise = _value(table, "moved", "all", model), _value(table, "noise", "all", model)
    if np.isfinite(moved):
        lines.append(f"With the ROI moved into other tissue (same size and shape, no lesion under it) the full model "
                     f"scores {moved:.2f}: what is left is the ROI's size and shape and the patient's surrounding "
                     "tissue.")
    if np.isfinite(noise):
        lines.append(f"With the image replaced by noise of the ROI's mean and SD it scores {noise:.2f}: what is left "
                     "is two numbers per patient plus the ROI's size and shape.")
    return lines


def negative_controls_section(model_dir: str | Path, model: str) -> dict | None:
    """What the cohort page shows: the table (rows of every model) and the sentences for the explained ``model``;
    None when the model folder has no ``negative_controls.csv``."""
    table = read_negative_controls(model_dir)
    if table is None or table.empty:
        return None
    rows = [{"control": CONTROL_LABELS.get(r["control"], r["control"]),
             "features": FEATURE_LABELS.get(r["features"], r["features"]), "model": r["model"],
             "n": int(r["n"]), "auc": _auc(r), "chosen": r["model"] == model,
             "note": r["note"] if isinstance(r.get("note"), str) else ""}
            for r in table.to_dict("records")]
    return {"rows": rows, "sentences": interpretation(table, model), "source": NEGATIVE_CONTROLS_FILE}
