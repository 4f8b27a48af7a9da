"""Explain stage: SHAP and LIME values and the HTML reports built from them.

The entry point is :func:`radpipe.explain.report.explain` (``radpipe.explain_model``), whose docstring holds
a runnable example: a model folder and a feature table in, ``cohort.html`` and one page per patient out.
"""

from radpipe._lazy import lazy_exports

# Imported on first use: radpipe.config reads radpipe.explain.settings for every CLI command, and
# should not pay for shap's, lime's and matplotlib's import time.
_EXPORTS = {
    "agreement": "radpipe.explain.lime_values",
    "compute_lime": "radpipe.explain.lime_values",
    "ExplainError": "radpipe.explain.report",
    "ExplainResult": "radpipe.explain.report",
    "explain": "radpipe.explain.report",
    "read_lesion_slice": "radpipe.extract.slices",
    "ExplainSettings": "radpipe.explain.settings",
    "ShapResult": "radpipe.explain.shap_values",
    "choose_explainer": "radpipe.explain.shap_values",
    "compute_shap": "radpipe.explain.shap_values",
    "compute_shap_classes": "radpipe.explain.shap_values",
    "final_features": "radpipe.explain.shap_values",
    "parse_feature_name": "radpipe.explain.shap_values",
    "to_original": "radpipe.explain.shap_values",
}

__getattr__, __dir__, __all__ = lazy_exports("radpipe.explain", _EXPORTS)
