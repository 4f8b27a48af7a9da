"""Negative controls of a cohort: write each control as a cohort folder, extract it with the recipe's settings
and train the same pipeline on it, to see how much of the real model's AUC survives when the lesion's texture
(or the lesion itself) is gone.

Reading the result: shuffling the ROI's voxels keeps every first-order and shape feature, so a full model that
does as well on shuffled voxels learns the intensity histogram, volume or shape, not texture. A texture-only
model on shuffled voxels should be near chance (AUC 0.5); if it is not, the texture features still carry the
histogram or the ROI size (grey-level counts, zone counts), not spatial pattern.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from joblib import Parallel, delayed

from radpipe.cohort import Case, CaseProblem, Cohort
from radpipe.controls.images import CONTROLS, case_rng, move_roi, noise_image, shuffle_roi
from radpipe.errors import CaseError, ConfigError
from radpipe.extract.settings import ExtractSettings

#: Written beside ``metrics.csv`` in the model folder.
NEGATIVE_CONTROLS_FILE = "negative_controls.csv"
COLUMNS = ["control", "features", "model", "n", "auc", "ci_low", "ci_high", "note"]
#: pyradiomics classes a texture-only model keeps (GLDM is IBSI's NGLDM).
TEXTURE_CLASSES = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")


def _make_case(case: Case, settings: ExtractSettings, mask_label: int | None, spacing_2d, control: str,
               folder: Path, seed: int) -> tuple[Case | None, CaseProblem | None]:
    from radpipe.extract import io, qc
    from radpipe.extract.features import read_case_mask

    try:
        image, _ = io.read_image(case.image, spacing_2d=spacing_2d)
        mask, _ = read_case_mask(Path(case.mask), image, settings.roi_name, spacing_2d)
        label = settings.label if settings.label is not None else mask_label
        roi, _ = qc.check_mask(image, mask, label=label, min_voxels=settings.min_voxels,
                               geometry_tolerance=settings.geometry_tolerance)
        rng = case_rng(seed, case.case_id, control)
        if control == "shuffled":
            image = shuffle_roi(image, roi, rng)
        elif control == "noise":
            image = noise_image(image, roi, rng)
        else:
            roi = move_roi(image, roi, rng)
    except CaseError as exc:
        return None, CaseProblem(case.case_id, f"{control} control: {exc.reason}", action=exc.action)
    # the extract stage reads this mask with the recipe's label, so the ROI carries that value
    roi = sitk.Cast(roi, sitk.sitkUInt8) * (label or 1)
    image_path, mask_path = folder / "images" / f"{case.case_id}.mha", folder / "masks" / f"{case.case_id}.mha"
    # compressed MetaImage: no time stamp in the file, so a rerun writes the same bytes and the extract
    # cache (keyed by file hashes) is reused
    sitk.WriteImage(image, str(image_path), useCompression=True)
    sitk.WriteImage(roi, str(mask_path), useCompression=True)
    return Case(case.case_id, image_path, mask_path, case.label, case.group), None


def control_cohort(cohort: Cohort, settings: ExtractSettings, control: str, folder: str | Path, *,
                   seed: int = 42, jobs: int = 1) -> Cohort:
    """Write the ``control`` version of every case of ``cohort`` into ``folder`` (images/, masks/) and return it
    as a cohort the extract stage reads like any other.

    A case whose control cannot be made (an unreadable mask, a ROI that fits nowhere else in the body) becomes a
    failed row of that control's ``qc.csv``, with the reason; the other cases go on.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from radpipe.demo import make_demo_cohort
    >>> from radpipe.cohort import load_cohort
    >>> work = Path(tempfile.mkdtemp())
    >>> cohort = load_cohort(make_demo_cohort(work / "cohort", n_cases=4))
    >>> shuffled = control_cohort(cohort, ExtractSettings(), "shuffled", work / "shuffled")
    >>> len(shuffled.cases), shuffled.cases[0].image.suffix
    (4, '.mha')
    """
    if control not in CONTROLS:
        raise ConfigError(f"unknown negative control {control!r}; choose from {', '.join(CONTROLS)}",
                          key="negative_controls")
    if settings.roi_mode != "single" or settings.extra_masks:
        raise ConfigError("negative controls need one ROI per case (extract.roi_mode: single, no extra_masks)",
                          key="negative_controls")
    folder = Path(folder)
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    made = Parallel(n_jobs=jobs)(
        delayed(_make_case)(case, settings, cohort.spec.mask_label, cohort.spec.spacing_2d, control, folder, seed)
        for case in cohort.cases)
    cases = [case for case, _ in made if case is not None]
    problems = [problem for _, problem in made if problem is not None]
    spec = cohort.spec.model_copy(update={"root": folder, "mask_label": None, "spacing_2d": None})
    return Cohort(f"{cohort.name}_{control}", spec, cases, cohort.clinical, list(cohort.problems) + problems,
                  [f"negative control '{control}' of {cohort.name} (seed {seed})"])


def texture_columns(columns, codebook: pd.DataFrame | None = None) -> list[str]:
    """The texture feature columns (GLCM, GLRLM, GLSZM, GLDM, NGTDM) of ``columns``, any image filter.

    The class is read from the extract stage's codebook when given (it also knows IBSI-style names), else from
    the pyradiomics column name.

    >>> texture_columns(["original_glcm_Contrast", "original_firstorder_Mean", "wavelet-LLH_ngtdm_Busyness"])
    ['original_glcm_Contrast', 'wavelet-LLH_ngtdm_Busyness']
    """
    if codebook is not None and {"column", "feature_class"} <= set(codebook.columns):
        classes = dict(zip(codebook["column"], codebook["feature_class"], strict=False))
    else:
        classes = {}
    def feature_class(column: str) -> str:
        parts = str(column).split("_", 2)
        return classes.get(column, parts[1] if len(parts) == 3 else "")
    return [column for column in columns if feature_class(column) in TEXTURE_CLASSES]


def cv_aucs(X: pd.DataFrame, y_codes: np.ndarray, settings, groups: np.ndarray | None = None,
            progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Out-of-fold AUC with its bootstrap 95% CI for every model of ``settings``, by the model stage's nested
    cross-validation (same folds for the same cases, seed and groups). Binary outcomes only.

    Examples
    --------
    >>> from radpipe.model.settings import ModelSettings
    >>> rng = np.random.default_rng(0)
    >>> y = np.tile([0, 1], 20)
    >>> X = pd.DataFrame({"f1": rng.normal(size=40) + 2 * y, "f2": rng.normal(size=40)})
    >>> table = cv_aucs(X, y, ModelSettings(models=["logreg"], outer_folds=4, bootstrap=50))
    >>> table.columns.tolist(), bool(table.loc[0, "auc"] > 0.8)
    (['model', 'n', 'auc', 'ci_low', 'ci_high'], True)
    """
    from radpipe.model.metrics import metrics_with_ci
    from radpipe.model.validate import nested_cv

    cv = nested_cv(X, y_codes, settings, groups, progress=progress)
    rows = []
    for name in settings.models:
        probs = np.full((settings.outer_repeats, len(y_codes)), np.nan)
        for fit in cv.folds[name]:
            probs[fit.repeat, fit.test_idx] = fit.test_prob
        # the AUC and its CI do not depend on the threshold
        row = metrics_with_ci(y_codes, probs, 0.5, n_boot=settings.bootstrap, seed=settings.seed)
        rows.append({"model": name, "n": len(y_codes), "auc": row["auc"], "ci_low": row["auc_ci_low"],
                     "ci_high": row["auc_ci_high"]})
    return pd.DataFrame(rows, columns=["model", "n", "auc", "ci_low", "ci_high"])


def run_negative_controls(cohort: Cohort, settings: ExtractSettings, inputs, real_metrics: pd.DataFrame,
                          work_dir: str | Path, model_dir: str | Path, *,
                          extract: Callable[[Cohort, Path], object], codebook: pd.DataFrame | None = None,
                          aggregate: str = "largest", seed: int = 42, jobs: int = 1,
                          controls: tuple[str, ...] = CONTROLS,
                          progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Make, extract and model every negative control; write ``negative_controls.csv`` into ``model_dir``.

    ``inputs`` are the real model's checked :class:`~radpipe.model.inputs.ModelInputs`: each control is modelled
    with the same settings, features, seed and groups, on the cases whose control could be made. ``real_metrics``
    is the real model's ``metrics.csv`` (its cross-validated AUCs are the ``none`` rows). ``extract(cohort,
    folder)`` runs the extract stage (``radpipe run`` passes its own, with progress bars and the training
    cohort's frozen bin width). Besides the full models, a texture-only model (GLCM, GLRLM, GLSZM, GLDM, NGTDM
    features) is trained on the real images and on each control.
    """
    from radpipe.extract.tables import read_feature_table
    from radpipe.model.inputs import modelling_table

    say = progress or (lambda message: None)
    work_dir, model_dir = Path(work_dir), Path(model_dir)
    if len(inputs.classes) != 2:
        raise ConfigError("negative controls report an AUC, so they need a binary outcome "
                          f"(this one has {len(inputs.classes)} classes)", key="negative_controls")
    settings_used = inputs.settings
    texture = texture_columns(inputs.X.columns, codebook)
    cv_rows = real_metrics[real_metrics["cohort"] == "cv"]
    rows = [{"control": "none", "features": "all", "model": r["model"], "n": len(inputs.X), "auc": r["auc"],
             "ci_low": r["auc_ci_low"], "ci_high": r["auc_ci_high"], "note": ""} for r in cv_rows.to_dict("records")]
    tables = [pd.DataFrame(rows, columns=COLUMNS)]

    def model(name: str, X: pd.DataFrame, y: np.ndarray, groups) -> None:
        for features, columns in (("all", list(inputs.X.columns)), ("texture", texture)):
            if name == "none" and features == "all":
                continue  # the real model's own numbers, above
            if not columns:
                continue
            counts = np.bincount(y, minlength=2)
            if counts.min() < settings_used.outer_folds:
                note = (f"not trained: the control could be made for {len(y)} of {len(inputs.X)} cases "
                        f"({counts.min()} in the smaller class, fewer than the {settings_used.outer_folds} folds)")
                tables.append(pd.DataFrame([{"control": name, "features": features, "model": m, "n": len(y),
                                             "note": note} for m in settings_used.models], columns=COLUMNS))
                continue
            say(f"negative control '{name}': training on {features} features ({len(columns)})")
            table = cv_aucs(X[columns], y, settings_used, groups)
            tables.append(table.assign(control=name, features=features, note="")[COLUMNS])

    model("none", inputs.X, inputs.y_codes, inputs.group_array)
    for control in controls:
        say(f"negative control '{control}': writing the control images")
        one = control_cohort(cohort, settings, control, work_dir / control / "cohort", seed=seed, jobs=jobs)
        result = extract(one, work_dir / control / "features")
        X = modelling_table(read_feature_table(Path(result.out_dir) / "features.csv"), aggregate)
        keep = [case for case in inputs.X.index if case in X.index]
        position = inputs.X.index.get_indexer(keep)
        groups = None if inputs.group_array is None else inputs.group_array[position]
        model(control, X.reindex(index=keep, columns=inputs.X.columns), inputs.y_codes[position], groups)
    out = pd.concat(tables, ignore_index=True)
    model_dir.mkdir(parents=True, exist_ok=True)
    out.to_csv(model_dir / NEGATIVE_CONTROLS_FILE, index=False)
    return out


def read_negative_controls(model_dir: str | Path) -> pd.DataFrame | None:
    """The model folder's ``negative_controls.csv``, or None when the run made no negative controls."""
    path = Path(model_dir) / NEGATIVE_CONTROLS_FILE
    return pd.read_csv(path) if path.is_file() else None
