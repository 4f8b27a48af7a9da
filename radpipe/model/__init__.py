"""Model stage: leakage-safe scikit-learn pipelines, nested CV, metrics with CIs, persistence.

Names are imported on first use: ``radpipe.config`` reads ``radpipe.model.settings`` for every CLI
command, and should not pay for scikit-learn's and scipy's import time.
"""

from importlib import import_module

_EXPORTS = {
    "LoadedModel": "radpipe.model.persist",
    "ModelIntegrityError": "radpipe.model.persist",
    "load_model": "radpipe.model.persist",
    "save_model": "radpipe.model.persist",
    "evaluate": "radpipe.model.prediction",
    "predict": "radpipe.model.prediction",
    "ModelSettings": "radpipe.model.settings",
    "TrainResult": "radpipe.model.train",
    "train_models": "radpipe.model.train",
    "CorrelationFilter": "radpipe.model.transformers",
    "FeatureSelector": "radpipe.model.transformers",
    "nested_cv": "radpipe.model.validate",
    "build_pipeline": "radpipe.model.zoo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'radpipe.model' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
