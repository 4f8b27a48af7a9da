"""Explain stage: SHAP and LIME values and the HTML reports built from them.

>>> from radpipe.explain import explain, ExplainSettings  # doctest: +SKIP
>>> explain("out/models/rf", features, "out/explain", labels=labels, n_jobs=2)  # doctest: +SKIP
"""

from radpipe.explain.lime_values import agreement, compute_lime
from radpipe.explain.report import ExplainError, ExplainResult, explain, read_lesion_slice
from radpipe.explain.settings import ExplainSettings
from radpipe.explain.shap_values import (
    ShapResult,
    choose_explainer,
    compute_shap,
    final_features,
    parse_feature_name,
    to_original,
)

__all__ = [
    "ExplainError", "ExplainResult", "ExplainSettings", "ShapResult", "agreement", "choose_explainer",
    "compute_lime", "compute_shap", "explain", "final_features", "parse_feature_name", "read_lesion_slice",
    "to_original",
]
