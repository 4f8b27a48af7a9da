"""Settings of the explain stage: the ``explain:`` section of a pipeline recipe.

Every number in the reports can be traced back to one of these fields, and ``summary.json`` records them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ExplainSettings(BaseModel):
    """How SHAP and LIME are computed and how much of them the reports show."""

    model_config = ConfigDict(extra="forbid")

    explainer: Literal["auto", "tree", "linear", "permutation", "kernel"] = Field(
        "auto",
        description=(
            "SHAP explainer. 'auto' picks the exact tree explainer for random forest, extra trees, "
            "gradient boosting and XGBoost, the linear explainer for logistic regression, and the "
            "permutation explainer with a k-means background for everything else (SVM, AdaBoost, ensembles)."
        ),
    )
    shap_background: int = Field(
        50,
        ge=1,
        description=(
            "Training rows sampled as the background of the tree (boosted trees) and linear explainers; SHAP "
            "values are relative to the mean prediction over this background (the base value)."
        ),
    )
    agnostic_background: int = Field(
        20,
        ge=1,
        description=(
            "k-means centroids of the training data used as the background of the permutation and kernel "
            "explainers; their cost grows linearly with it."
        ),
    )
    shap_max_evals: int | None = Field(
        None,
        ge=3,
        description=(
            "Model evaluations per patient for the permutation explainer (default: max(500, 2 x features + 1)); "
            "samples per patient for the kernel explainer (default: 2 x features + 2048)."
        ),
    )
    lime_samples: int = Field(1000, ge=10, description="Perturbed samples LIME draws around each patient.")
    lime_top: int = Field(10, ge=1, description="Features LIME reports per patient.")
    top_features: int = Field(
        10, ge=1, description="Features shown in each patient's waterfall and in the cohort bar charts."
    )
    dependence_plots: int = Field(5, ge=0, description="Dependence plots for the most important features.")
    seed: int = Field(42, description="Seed for background sampling, k-means, permutations, LIME and bootstraps.")
    max_patients: int | None = Field(
        None, ge=1, description="Write at most this many patient pages (the first cases in table order)."
    )
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples for the ROC confidence band.")
    stability_cases: int = Field(
        50,
        ge=2,
        description="Cases (sampled with the seed) on which each outer-fold model is explained for stability.",
    )
    waterfall_png: bool = Field(
        False,
        description=(
            "Also draw each patient's waterfall with matplotlib into figures/patients/ (the pages draw it in "
            "HTML; the PNG costs about 0.1-0.3 s per patient)."
        ),
    )
    banner: str = Field(
        "", description="A line shown at the top of every report page, e.g. 'SYNTHETIC DATA' or a study name."
    )
    images: bool = Field(True, description="Draw the image slice with the mask contour on patient pages.")
    similar_patients: int = Field(
        5,
        ge=0,
        description=(
            "Nearest training patients shown on each patient page (in the model's scaled, selected feature space; "
            "the patient and, on cross-validated pages, their own group are left out). 0 leaves the section out."
        ),
    )
