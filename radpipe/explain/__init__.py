"""Explain stage: SHAP and LIME values and the HTML reports built from them.

>>> from radpipe.explain import explain, ExplainSettings  # doctest: +SKIP
>>> explain("out/models/rf", features, "out/explain", labels=labels, n_jobs=2)  # doctest: +SKIP
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
