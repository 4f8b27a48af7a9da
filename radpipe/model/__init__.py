"""Model stage: leakage-safe scikit-learn pipelines, nested CV, metrics with CIs, persistence.

Names are imported on first use: ``radpipe.config`` reads ``radpipe.model.settings`` for every CLI
command, and should not pay for scikit-learn's and scipy's import time.
"""

from radpipe._lazy import lazy_exports

_EXPORTS = {
    "ModelInputs": "radpipe.model.inputs",
    "features_for_model": "radpipe.model.inputs",
    "read_features": "radpipe.model.inputs",
    "read_outcomes": "radpipe.model.inputs",
    "training_inputs": "radpipe.model.inputs",
    "LoadedModel": "radpipe.model.persist",
    "ModelIntegrityError": "radpipe.model.persist",
    "load_model": "radpipe.model.persist",
    "save_model": "radpipe.model.persist",
    "evaluate": "radpipe.model.prediction",
    "predict": "radpipe.model.prediction",
    "ModelSettings": "radpipe.model.settings",
    "TrainResult": "radpipe.model.train",
    "train_models": "radpipe.model.train",
    "fit_models": "radpipe.model.train",
    "ComBatHarmoniser": "radpipe.model.transformers",
    "CorrelationFilter": "radpipe.model.transformers",
    "FeatureSelector": "radpipe.model.transformers",
    "compare_models": "radpipe.model.compare",
    "linear_formula": "radpipe.model.radscore",
    "riley_binary": "radpipe.model.sample_size",
    "nested_cv": "radpipe.model.validate",
    "build_pipeline": "radpipe.model.zoo",
}

__getattr__, __dir__, __all__ = lazy_exports("radpipe.model", _EXPORTS)
