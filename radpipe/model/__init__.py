"""Model stage: leakage-safe scikit-learn pipelines, nested CV, metrics with CIs, persistence."""

from radpipe.model.persist import LoadedModel, ModelIntegrityError, load_model, save_model
from radpipe.model.predict import evaluate, predict
from radpipe.model.settings import ModelSettings
from radpipe.model.train import TrainResult, train_models
from radpipe.model.transformers import CorrelationFilter, FeatureSelector

__all__ = [
    "CorrelationFilter", "FeatureSelector", "LoadedModel", "ModelIntegrityError", "ModelSettings", "TrainResult",
    "evaluate", "load_model", "predict", "save_model", "train_models",
]
