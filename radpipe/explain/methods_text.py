"""A methods paragraph for a paper, written from what the run recorded: the extraction manifest, the model card,
``splits.json`` and the model folder's tables. Every sentence states a setting that was used, never a default the
run did not record; where the record is missing the sentence is left out rather than guessed.
"""

from __future__ import annotations

import json
from pathlib import Path

from radpipe.model.folder import ModelFolder

_STEP_WORDS = {
    "impute": "missing values were imputed",
    "variance": "constant features were removed",
    "scale": "features were standardised",
    "harmonise": "batch effects were removed with ComBat",
    "decorrelate": "highly correlated features were removed",
    "rebalance": "classes were rebalanced",
    "select": "features were selected",
}
_MODEL_WORDS = {
    "logreg": "penalised logistic regression", "svm": "a support vector machine", "rf": "a random forest",
    "xgb": "XGBoost gradient-boosted trees", "clinical": "a clinical-only logistic model",
    "combined": "a combined clinical and radiomics model",
}
_CLASS_WORDS = {"firstorder": "first-order", "glcm": "GLCM", "glrlm": "GLRLM", "glszm": "GLSZM", "gldm": "GLDM",
                "ngtdm": "NGTDM", "shape2D": "shape (2D)"}
_INTERPOLATORS = {"sitkBSpline": "B-spline", "sitkLinear": "linear", "sitkNearestNeighbor": "nearest-neighbour"}


def _join(items) -> str:
    items = [str(i) for i in items if str(i)]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _version(versions: dict, name: str) -> str:
    return f"{name} {versions[name]}" if versions.get(name) else ""


def read_extraction_manifest(features_dir: Path | None) -> dict:
    """The extract stage's ``manifest.json`` beside the feature table, or an empty dict."""
    if features_dir is None:
        return {}
    path = Path(features_dir) / "manifest.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _software(extraction: dict, card: dict) -> str:
    versions = {**extraction.get("versions", {}), **card.get("versions", {})}
    tools = [_version(versions, n) for n in ("pyradiomics-bhklab", "pyradiomics", "SimpleITK", "scikit-learn",
                                             "xgboost", "shap", "lime")]
    radpipe = versions.get("radpipe", "")
    python = versions.get("python", "")
    text = f"The analysis was run with radpipe {radpipe}".rstrip()
    if python:
        text += f" on Python {python}"
    tools = [t.replace("pyradiomics-bhklab", "pyradiomics (bhklab build)") for t in tools if t]
    return text + (f", using {_join(tools)}." if tools else ".")


def _extraction(extraction: dict) -> list[str]:
    if not extraction:
        return []
    out = []
    n, failed = extraction.get("n_cases"), extraction.get("failed", 0)
    cohort = extraction.get("cohort")
    if n is not None:
        where = f" of the cohort '{cohort}'" if cohort else ""
        out.append(f"Features were computed for {n} cases{where}; {failed or 'none'} failed quality control "
                   "(reasons per case in qc.csv).")
    settings = extraction.get("settings", {})
    params = extraction.get("pyradiomics_params", {})
    setting = params.get("setting", {})
    unit = settings.get("intensity_unit") or (extraction.get("discretisation") or {}).get("intensity_unit")
    prep = [s.get("method", str(s)) if isinstance(s, dict) else str(s) for s in settings.get("preprocessing") or []]
    sentence = []
    if prep:
        sentence.append(f"images were preprocessed ({_join(prep)})")
    if setting.get("resampledPixelSpacing"):
        spacing = " × ".join(f"{v:g}" for v in setting["resampledPixelSpacing"])
        method = _INTERPOLATORS.get(setting.get("interpolator"), setting.get("interpolator", "default"))
        sentence.append(f"images were resampled to {spacing} mm voxels with {method} interpolation")
    if settings.get("min_voxels"):
        sentence.append(f"regions of interest smaller than {settings['min_voxels']} voxels were refused")
    if sentence:
        out.append(_join(sentence)[0].upper() + _join(sentence)[1:] + ".")
    disc = extraction.get("discretisation") or {}
    if disc.get("binWidth") is not None:
        text = f"Grey levels were discretised with a fixed bin width of {disc['binWidth']:g}{' ' + unit if unit else ''}"
        if disc.get("median_levels") is not None:
            text += (f" (median {disc['median_levels']:g} grey levels per region, 5th–95th percentile "
                     f"{disc.get('levels_p5', float('nan')):g}–{disc.get('levels_p95', float('nan')):g})")
        out.append(text + ".")
    elif setting.get("binCount") is not None:
        out.append(f"Grey levels were discretised into a fixed number of {setting['binCount']} bins.")
    image_types = list((params.get("imageType") or {}).keys())
    classes = list((params.get("featureClass") or {}).keys())
    if image_types or classes:
        classes = [_CLASS_WORDS.get(c, c) for c in classes]
        out.append(f"Feature classes {_join(classes) or 'as configured'} were computed on the "
                   f"{_join(t.lower() for t in image_types) or 'original'} image"
                   f"{'s' if len(image_types) > 1 else ''} with pyradiomics.")
    return out


def _modelling(card: dict, splits: dict | None, models: list[str], n_features: int | None) -> list[str]:
    out = []
    cv = card.get("cv", {})
    steps = [line.split(":", 1)[0].strip() for line in str(card.get("pipeline_steps", "")).splitlines() if ":" in line]
    done = [_STEP_WORDS[s] for s in steps if s in _STEP_WORDS]
    n_cases, counts = card.get("n_cases"), card.get("class_counts", {})
    if n_cases:
        balance = _join(f"{v} {k}" for k, v in counts.items())
        out.append(f"{n_cases} cases entered modelling ({balance}); the positive class was "
                   f"'{card.get('positive_class')}'.")
    if done:
        details = []
        if cv.get("correlation_threshold") is not None:
            details.append(f"correlation threshold |r| > {cv['correlation_threshold']}")
        if cv.get("selection"):
            k = f", k = {cv['select_k']}" if cv.get("select_k") else ""
            details.append(f"{cv['selection']} selection{k}")
        if cv.get("rebalance"):
            details.append(f"rebalancing by {cv['rebalance']}")
        start = f"The {n_features} candidate features" if n_features else "The features"
        out.append(f"{start} went through a pipeline fitted within each training fold only: {_join(done)}"
                   + (f" ({'; '.join(details)})" if details else "") + ".")
    if models:
        named = [f"{_MODEL_WORDS[m]} ({m})" if m in _MODEL_WORDS else m for m in models]
        out.append(f"The models compared were {_join(named)}.")
    if cv.get("outer"):
        inner = cv.get("inner", "")
        out.append(f"Performance was estimated by nested cross-validation: outer {cv['outer']}, inner {inner}"
                   f" (seed {cv.get('seed')}).")
    if card.get("threshold_rule"):
        out.append(f"The decision threshold was {card['threshold_rule']}.")
    if cv.get("bootstrap"):
        out.append(f"Metrics are reported with 95% confidence intervals from {cv['bootstrap']} stratified bootstrap "
                   "resamples of the cases; models were compared with DeLong's test on the out-of-fold "
                   "probabilities (mean over repeats).")
    return out


def methods_paragraph(model_dir: str | Path, features_dir: str | Path | None = None) -> str:
    """A methods paragraph describing this run, in radpipe's own words, from its recorded files.

    Parameters
    ----------
    model_dir
        A folder written by ``radpipe train`` / ``radpipe run`` (``models/``).
    features_dir
        The extract stage's output folder (``features/``) for software, preprocessing and discretisation; without
        it only the modelling is described.

    Examples
    --------
    >>> import tempfile, json
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "model_card.json").write_text(json.dumps({"n_cases": 39, "positive_class": "yes",
    ...      "class_counts": {"no": 23, "yes": 16}, "versions": {"radpipe": "0.1.0"}}))
    >>> methods_paragraph(folder)
    "The analysis was run with radpipe 0.1.0. 39 cases entered modelling (23 no and 16 yes); the positive class was 'yes'."
    """
    folder = ModelFolder(Path(model_dir))
    card = folder.card()
    extraction = read_extraction_manifest(Path(features_dir) if features_dir else None)
    metrics = folder.metrics()
    models = list(dict.fromkeys(metrics["model"])) if metrics is not None and "model" in metrics else []
    n_features = len(card.get("feature_names", [])) or None
    sentences = [_software(extraction, card), *_extraction(extraction),
                 *_modelling(card, folder.splits(), models, n_features)]
    extra = []
    if folder.calibration_summary_path.exists():
        extra.append("calibration was assessed with quantile-binned and lowess calibration plots, "
                     "calibration-in-the-large and the calibration slope (bootstrap CIs)")
    if folder.decision_curve_path.exists():
        extra.append("clinical usefulness with decision curves (net benefit over threshold probabilities "
                     "0.01–0.99, against treating all and treating none)")
    if extra:
        sentences.append(_join(extra)[0].upper() + _join(extra)[1:] + ".")
    external = [c for c in (metrics["cohort"].unique() if metrics is not None and "cohort" in metrics else [])
                if c != "cv"]
    if external:
        sentences.append(f"The final models, refitted on all training cases, were tested on the external "
                         f"cohort{'s' if len(external) > 1 else ''} {_join(external)}.")
    return " ".join(s for s in sentences if s)
