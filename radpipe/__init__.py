"""radpipe: radiomics from image + mask to validated, explained models.

The public API, for notebooks::

    import radpipe
    cohort = radpipe.load_cohort("sts_pet")
    recipe = radpipe.load_recipe("pipelines/sts_pet.yaml")
    result = radpipe.extract_cohort(cohort, recipe.extract, "out/features")

Names are imported on first use, so ``import radpipe`` and ``radpipe --help`` stay fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from radpipe._lazy import lazy_exports

try:
    __version__ = version("radpipe")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

# public name -> (module, attribute). The explain function is exported as ``explain_model``: the name
# ``radpipe.explain`` belongs to the subpackage, which Python binds on the package once it is imported.
_EXPORTS = {
    "load_cohort": ("radpipe.cohort", "load_cohort"),
    "Cohort": ("radpipe.cohort", "Cohort"),
    "Case": ("radpipe.cohort", "Case"),
    "load_recipe": ("radpipe.config", "load_recipe"),
    "load_datasets": ("radpipe.config", "load_datasets"),
    "ExtractSettings": ("radpipe.extract.settings", "ExtractSettings"),
    "extract_cohort": ("radpipe.extract.stage", "extract_cohort"),
    "extract_features": ("radpipe.extract.stage", "extract_cohort"),  # the name issue #7 asked for
    "RadiomicsFeatures": ("radpipe._radiomics_features", "RadiomicsFeatures"),
    "cohort_paths": ("radpipe._radiomics_features", "cohort_paths"),
    "ModelSettings": ("radpipe.model.settings", "ModelSettings"),
    "CorrelationFilter": ("radpipe.model.transformers", "CorrelationFilter"),
    "FeatureSelector": ("radpipe.model.transformers", "FeatureSelector"),
    "build_pipeline": ("radpipe.model.zoo", "build_pipeline"),
    "nested_cv": ("radpipe.model.validate", "nested_cv"),
    "training_inputs": ("radpipe.model.inputs", "training_inputs"),
    "read_features": ("radpipe.model.inputs", "read_features"),
    "read_outcomes": ("radpipe.model.inputs", "read_outcomes"),
    "train_models": ("radpipe.model.train", "train_models"),
    "load_model": ("radpipe.model.persist", "load_model"),
    "save_model": ("radpipe.model.persist", "save_model"),
    "predict": ("radpipe.model.prediction", "predict"),
    "ExplainSettings": ("radpipe.explain.settings", "ExplainSettings"),
    "explain_model": ("radpipe.explain.report", "explain"),
    "write_reports": ("radpipe.explain.report", "explain"),  # SHAP/LIME tables + cohort and patient pages
    "run_recipe": ("radpipe.pipeline", "run_recipe"),
    "SegmentSettings": ("radpipe.segment.methods", "SegmentSettings"),
    "segment_cohort": ("radpipe.segment.stage", "segment_cohort"),
}

__getattr__, __dir__, __all__ = lazy_exports("radpipe", _EXPORTS)
