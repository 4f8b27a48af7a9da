"""The model zoo: one leakage-safe Pipeline per estimator family, with its hyper-parameter search space.

Every pipeline is ``impute -> variance -> scale -> decorrelate -> select -> clf``, with
``harmonise`` (ComBat) after ``impute`` and ``rebalance`` (a sampler) before ``select`` when the
settings ask for them; every step is fitted on training data only, so cross-validation refits all
of them in each fold. The final
estimator always has ``predict_proba`` (SVMs through ``CalibratedClassifierCV``), and
``pipeline[:-1].get_feature_names_out()`` names the features it sees; steps pass DataFrames, so
``pipeline[:-1].transform(X)`` returns a DataFrame with those names.
"""

from __future__ import annotations

from typing import Any

from scipy.stats import loguniform, randint, uniform
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    AdaBoostClassifier,
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    RandomForestClassifier,
    StackingClassifier,
    VotingClassifier,
)
from sklearn.feature_selection import VarianceThreshold
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC

from radpipe.model.settings import ENSEMBLE_NAMES, SURVIVAL_MODEL_NAMES, ModelSettings
from radpipe.model.transformers import ComBatHarmoniser, CorrelationFilter, FeatureSelector

_PREFIX = "clf__"


def _estimator(name: str, settings: ModelSettings) -> Any:
    if name in SURVIVAL_MODEL_NAMES:
        from radpipe.model.survival import survival_estimator

        return survival_estimator(name, settings)
    seed, weight = settings.seed, settings.class_weight
    if name == "svm":
        return CalibratedClassifierCV(SVC(kernel="rbf", class_weight=weight), method="sigmoid",
                                      cv=settings.calibration_folds)
    if name == "svm_linear":
        return CalibratedClassifierCV(SVC(kernel="linear", class_weight=weight), method="sigmoid",
                                      cv=settings.calibration_folds)
    if name == "logreg":
        return LogisticRegression(solver="saga", l1_ratio=0.0, C=1.0, class_weight=weight, max_iter=5000,
                                  tol=1e-3, random_state=seed)
    if name == "rf":
        return RandomForestClassifier(n_estimators=200, max_features="sqrt", random_state=seed, n_jobs=1,
                                      class_weight=weight)
    if name == "extra_trees":
        return ExtraTreesClassifier(n_estimators=200, max_features="sqrt", random_state=seed, n_jobs=1,
                                    class_weight=weight)
    if name == "xgb":
        from xgboost import XGBClassifier

        return XGBClassifier(n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8,
                             colsample_bytree=0.8, tree_method="hist", eval_metric="logloss",
                             random_state=seed, n_jobs=1, verbosity=0)
    if name == "adaboost":
        return AdaBoostClassifier(n_estimators=100, learning_rate=0.5, random_state=seed)
    if name == "gbm":
        return GradientBoostingClassifier(n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8,
                                          random_state=seed)
    raise ValueError(f"unknown model {name!r}")


# Small grids on purpose: radiomics cohorts are small, and a wide search over-fits the inner folds.
_GRIDS: dict[str, dict[str, list]] = {
    "svm": {"estimator__C": [0.1, 1.0, 10.0], "estimator__gamma": ["scale", 0.01]},
    "svm_linear": {"estimator__C": [0.01, 0.1, 1.0]},
    "logreg": {"C": [0.01, 0.1, 1.0], "l1_ratio": [0.0, 1.0]},
    "rf": {"min_samples_leaf": [1, 3]},
    "extra_trees": {"min_samples_leaf": [1, 3]},
    "xgb": {"max_depth": [2, 4], "learning_rate": [0.03, 0.1]},
    "adaboost": {"n_estimators": [50, 200], "learning_rate": [0.1, 1.0]},
    "gbm": {"max_depth": [2, 3], "learning_rate": [0.05, 0.1]},
}

_DISTRIBUTIONS: dict[str, dict[str, Any]] = {
    "svm": {"estimator__C": loguniform(1e-2, 1e2), "estimator__gamma": loguniform(1e-4, 1e-1)},
    "svm_linear": {"estimator__C": loguniform(1e-3, 1e1)},
    "logreg": {"C": loguniform(1e-3, 1e2), "l1_ratio": uniform(0, 1)},
    "rf": {"max_features": uniform(0.05, 0.6), "min_samples_leaf": randint(1, 6), "max_depth": [None, 3, 6]},
    "extra_trees": {"max_features": uniform(0.05, 0.6), "min_samples_leaf": randint(1, 6), "max_depth": [None, 3, 6]},
    "xgb": {"max_depth": randint(2, 6), "learning_rate": loguniform(1e-2, 3e-1), "min_child_weight": randint(1, 5)},
    "adaboost": {"n_estimators": randint(30, 300), "learning_rate": loguniform(1e-2, 2)},
    "gbm": {"max_depth": randint(1, 5), "learning_rate": loguniform(1e-2, 3e-1), "n_estimators": randint(50, 300)},
}


def _imputer(settings: ModelSettings) -> Any:
    imputer = SimpleImputer(strategy=settings.impute)
    if not settings.harmonise:
        return imputer
    # ComBat cannot take missing values, so imputation comes first; the batch labels (often text)
    # pass through it untouched, for the harmoniser to read and drop
    return ColumnTransformer([("batch", "passthrough", [settings.batch_column])], remainder=imputer,
                             verbose_feature_names_out=False)


def _sampler(settings: ModelSettings) -> Any:
    from imblearn.over_sampling import SMOTE, RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

    kinds = {"smote": SMOTE, "random_over": RandomOverSampler, "random_under": RandomUnderSampler}
    return kinds[settings.rebalance](random_state=settings.seed)


def preprocessing_steps(settings: ModelSettings) -> list[tuple[str, Any]]:
    """The data-dependent steps before the estimator, as configured."""
    steps: list[tuple[str, Any]] = [("impute", _imputer(settings))]
    if settings.harmonise:
        steps.append(("harmonise", ComBatHarmoniser(batch_column=settings.batch_column)))
    decorrelate, select = CorrelationFilter, FeatureSelector
    if settings.is_survival:  # features ranked by their relation to survival, never by a classifier's F test
        from radpipe.model.survival import SurvivalCorrelationFilter as decorrelate
        from radpipe.model.survival import SurvivalSelector as select
    steps += [
        ("variance", VarianceThreshold(settings.variance_threshold)
         if settings.variance_threshold is not None else "passthrough"),
        ("scale", StandardScaler()),
        ("decorrelate", decorrelate(settings.correlation_threshold)
         if settings.correlation_threshold is not None else "passthrough"),
    ]
    if settings.rebalance:
        # resampling acts in fit only (transform and predict skip it), on scaled, decorrelated features
        # where SMOTE's nearest neighbours mean something; before select, so pipeline[:-1] ends in a transformer
        steps.append(("rebalance", _sampler(settings)))
    steps.append(("select", select(method=settings.selection, k=settings.select_k)
                  if settings.selection != "none" else "passthrough"))
    return steps


def build_pipeline(name: str, settings: ModelSettings) -> Pipeline:
    """An unfitted Pipeline for a single estimator family (not an ensemble).

    With ``settings.rebalance`` it is imbalanced-learn's Pipeline (a subclass of scikit-learn's that
    lets a sampler resample the training data in ``fit``); otherwise scikit-learn's.
    """
    if name in ENSEMBLE_NAMES:
        raise ValueError(f"{name!r} is an ensemble: build it with build_ensemble from fitted members")
    if name == "search":
        raise ValueError("'search' is a search over whole pipelines: use radpipe.model.search.JointSearch "
                         "(its search_pipeline is the pipeline it sets)")
    pipeline_class = Pipeline
    if settings.rebalance:
        from imblearn.pipeline import Pipeline as pipeline_class
    # pandas between steps, so every step (and the estimator) is fitted with the feature names it sees
    return pipeline_class([*preprocessing_steps(settings), ("clf", _estimator(name, settings))]).set_output(
        transform="pandas")


def search_space(name: str, settings: ModelSettings) -> dict[str, Any]:
    """Grid (``search='grid'``) or distributions (``search='random'``) keyed by Pipeline parameter names."""
    source = _GRIDS if settings.search == "grid" else _DISTRIBUTIONS
    if name in SURVIVAL_MODEL_NAMES:
        from radpipe.model.survival import SURVIVAL_GRIDS, survival_distributions

        source = SURVIVAL_GRIDS if settings.search == "grid" else survival_distributions()
    space = {_PREFIX + key: value for key, value in source[name].items()}
    if settings.select_k_grid and settings.selection != "none":
        space["select__k"] = list(settings.select_k_grid)
    return space


def build_ensemble(kind: str, members: list[tuple[str, Pipeline]], settings: ModelSettings) -> Pipeline:
    """Soft voting or stacking over members' pipelines (each with its own preprocessing and tuned parameters).

    The ensemble sees every input column (``inputs`` is an identity step), so
    ``pipeline[:-1].get_feature_names_out()`` is the input feature list.
    """
    if kind == "voting":
        clf: Any = VotingClassifier(members, voting="soft")
    elif kind == "stacking":
        # the meta-learner's CV is stratified but not grouped: it only shapes the training fit
        clf = StackingClassifier(
            members,
            final_estimator=LogisticRegression(C=1.0),
            cv=StratifiedKFold(settings.inner_folds, shuffle=True, random_state=settings.seed),
            stack_method="predict_proba",
        )
    else:
        raise ValueError(f"unknown ensemble {kind!r}")
    return Pipeline([("inputs", FunctionTransformer(feature_names_out="one-to-one")), ("clf", clf)])
