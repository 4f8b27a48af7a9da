"""Explain stage: SHAP and LIME values and the HTML reports built from them."""
