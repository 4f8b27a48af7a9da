"""Settings of the model stage: the ``model:`` section of a recipe YAML, validated by pydantic.

Every number that shapes a result (folds, seeds, selection, bootstrap) lives here, so a methods
section can be written from the recipe and a misspelt key is an error, not a silent default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

#: estimators of a time-to-event outcome (scikit-survival, the ``radpipe[survival]`` extra)
SURVIVAL_MODEL_NAMES = ("coxnet", "rsf", "gbsa")
MODEL_NAMES = (
    "search", "svm", "svm_linear", "logreg", "rf", "extra_trees", "xgb", "adaboost", "gbm", "voting", "stacking",
    *SURVIVAL_MODEL_NAMES,
)
ENSEMBLE_NAMES = ("voting", "stacking")
#: the joint search's families and selection methods (see radpipe.model.search)
SEARCH_FAMILIES = ("logreg_l1", "logreg_l2", "logreg_en", "svm_linear", "svm", "rf", "extra_trees", "xgb",
                   "naive_bayes", "knn")
#: the families searched unless model.search_families says otherwise: naive Bayes assumes independent features
#: (radiomics features are strongly correlated), k-NN is the most local learner and so the most prone to
#: anti-learning in small cross-validated samples, and L1 logistic regression repeats the 'lasso' selection
DEFAULT_SEARCH_FAMILIES = ("logreg_l2", "logreg_en", "svm_linear", "svm", "rf", "extra_trees", "xgb")
SEARCH_SELECTIONS = ("none", "univariate", "mrmr", "lasso", "trees")


class SurvivalOutcome(BaseModel):
    """A time-to-event outcome: ``model.outcome: {type: survival, time: os_days, event: os_event}``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["survival"] = Field(description="The outcome kind; 'survival' is a time-to-event outcome.")
    time: str = Field(description="Column of the outcome table with the follow-up time (event or censoring).")
    event: str = Field(description="Column with the event indicator: 1/True = the event happened, 0/False = censored.")
    horizons: list[float] | None = Field(
        None, description="Times at which survival, time-dependent AUC and calibration are reported (in time_unit); "
        "default: the 25th, 50th and 75th percentiles of the event times.")
    time_unit: str = Field("days", description="Unit of the time column, written on the model card.")

    @field_validator("horizons")
    @classmethod
    def _positive(cls, values: list[float] | None) -> list[float] | None:
        if values is not None and (not values or any(v <= 0 for v in values)):
            raise ValueError("horizons must be a non-empty list of positive times, e.g. [365, 730]")
        return sorted(values) if values else values


class ModelSettings(BaseModel):
    """How to build, tune, validate and report the models (the ``model:`` section of a recipe)."""

    model_config = ConfigDict(extra="forbid")
    # what model.robust_features did (file, ICC, threshold, features assessed and dropped): set by
    # radpipe.model.inputs on the settings as used, shown in cv_summary and so on the model card
    _robust_record: dict | None = PrivateAttr(None)

    models: list[str] = Field(
        # the joint search: on 37 radMLBench tables its nested AUC beat each of svm, rf and xgb fixed in advance
        # (the old default's best-of-three headline was a choice made on the outer folds; see README)
        default_factory=lambda: ["search"],
        description="Models to train, names from the zoo: " + ", ".join(MODEL_NAMES) + ". The default, 'search', "
        "chooses selection method, k, decorrelation threshold, family and hyper-parameters jointly inside the inner "
        "CV (radpipe.model.search), so its outer-CV AUC carries no choice made on the outer folds. A list of "
        "families (e.g. [svm, rf, xgb]) tunes each family on its own, with the selection and decorrelation settings "
        "below, and compares them; the best of them by outer-CV AUC is then slightly optimistic.",
    )
    search_budget: int = Field(
        24, ge=1, description="Candidate pipelines the 'search' model draws per inner search (on training folds "
        "of 300 cases or more, successive halving keeps the best third per round). A count, not a time, so the "
        "seed reproduces the result on any machine.")
    search_families: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SEARCH_FAMILIES),
        description="Model families the 'search' model may choose: " + ", ".join(SEARCH_FAMILIES) + " (default: "
        "all but logreg_l1, naive_bayes and knn).")
    search_selections: list[str] = Field(
        default_factory=lambda: list(SEARCH_SELECTIONS),
        description="Feature-selection methods the 'search' model may choose: " + ", ".join(SEARCH_SELECTIONS)
        + " (trees: extra-trees importance).")
    search_top: int = Field(
        10, ge=1, description="The 'search' model is an ensemble of this many best configurations (of "
        "the last halving round; 1: the single best pipeline).")
    search_combine: Literal["mean", "stacking"] = Field(
        "mean", description="How search_top > 1 configurations are combined: the mean of their probabilities, or "
        "a logistic regression on their inner out-of-fold probabilities.")
    ensemble_members: list[str] = Field(
        default_factory=lambda: ["svm", "rf", "xgb"],
        description="Families whose tuned pipelines the 'voting' and 'stacking' ensembles combine.",
    )
    positive_class: str | None = Field(
        None, description="Label of the positive class of a binary outcome. Needed unless the dataset sets "
        "positive_class or the labels are 0/1 or False/True (1/True is positive); never guessed."
    )
    outer_folds: int = Field(5, ge=2, description="Folds of the outer (performance-estimating) cross-validation.")
    outer_repeats: int = Field(1, ge=1, description="Repeats of the outer cross-validation, each with a new shuffle.")
    inner_folds: int = Field(3, ge=2, description="Folds of the inner cross-validation used for hyper-parameter search.")
    calibration_folds: int = Field(
        3, ge=2, description="Folds of the cross-validation with which SVMs calibrate their probabilities (Platt scaling)."
    )
    search: Literal["grid", "random"] = Field("grid", description="Hyper-parameter search: full grid or random sampling.")
    n_iter: int = Field(10, ge=1, description="Candidates drawn per model when search is 'random'.")
    seed: int = Field(42, description="Seed for splits, searches and estimators; the same seed gives the same numbers.")
    group_column: str | None = Field(
        None, description="Column of the labels table holding patient/centre groups kept together in one fold; filled "
        "from the dataset's group_column or `radpipe train --group-column` when unset."
    )
    impute: Literal["median", "mean"] = Field("median", description="Imputation of missing feature values, fitted per fold.")
    harmonise: Literal["combat"] | None = Field(
        None, description="Remove scanner/centre (batch) effects with ComBat (neuroCombat's empirical-Bayes estimates), "
        "fitted on each training fold after imputation and applied to its test fold; needs batch_column. A case from "
        "a batch not seen in training cannot be harmonised (an error), so batches are not held out by group_column."
    )
    batch_column: str | None = Field(
        None, description="Column of the cohort's labels table naming each case's batch (scanner, centre) for "
        "harmonise; required with it. Each batch needs at least 2 cases in every (inner) training fold; outer and inner "
        "folds are stratified on outcome x batch (on the outcome alone when a combined stratum has fewer cases than "
        "folds)."
    )
    variance_threshold: float | None = Field(
        0.0, ge=0, description="Drop features whose training-fold variance is at most this; None keeps all."
    )
    correlation_threshold: float | None = Field(
        0.9, gt=0, le=1, description="Drop the less label-relevant feature of each pair with |Pearson r| above this; None disables."
    )
    selection: Literal["univariate", "lasso", "mrmr", "none"] = Field(
        "univariate", description="Feature selection inside each fold: ANOVA F-test, L1 logistic regression, mRMR, or none."
    )
    select_k: int | None = Field(20, ge=1, description="Features kept by the selection step; None keeps all it selects.")
    select_k_grid: list[int] | None = Field(
        None, description="If set, the inner search also tunes k over these values (select_k is then ignored)."
    )
    class_weight: Literal["balanced"] | None = Field(
        "balanced", description="Class weighting of estimators that support it (no resampling, so nothing leaks)."
    )
    rebalance: Literal["smote", "random_over", "random_under"] | None = Field(
        None, description="Resample each training fold to balanced classes (imbalanced-learn: SMOTE, random over- or "
        "under-sampling) after scaling and decorrelation, before selection; test folds are never resampled. With "
        "class_weight 'balanced' too, the resampled fold is already balanced, so the weights are all 1 (no effect)."
    )
    bootstrap: int = Field(1000, ge=0, description="Stratified bootstrap resamples for 95% confidence intervals (0: none).")
    n_jobs: int = Field(1, ge=1, description="Parallel jobs for the hyper-parameter searches (joblib).")
    select_best_by: Literal["auc"] = Field("auc", description="Metric that picks the best model (mean out-of-fold AUC).")
    threshold_method: Literal["youden", "fixed"] = Field(
        "youden", description="How the decision threshold is chosen on training data: Youden's J, or 0.5."
    )
    outcome: SurvivalOutcome | None = Field(
        None, description="A time-to-event outcome ({type: survival, time: COLUMN, event: COLUMN, horizons: [..]}); "
        "unset: the outcome is the label column (binary or multi-class). A survival outcome's models default to "
        "coxnet, rsf and gbsa."
    )
    robust_features: str | None = Field(
        None, description="A robustness.csv written by `radpipe robustness` (or its folder): features it flags as "
        "not robust are dropped before modelling (label-free, so no leak into CV). 'auto' (radpipe run only) computes "
        "it first on the training cohort with the recipe's robustness: section, never on external cohorts.")
    robust_threshold: float | None = Field(
        None, ge=-1.0, le=1.0, description="With robust_features: keep features whose ICC lower 95% bound (ci_low) "
        "reaches this, instead of the table's own robust column.")
    clinical: list[str] | None = Field(
        None, description="Columns of the cohort's labels table used as clinical covariates (e.g. [age, grade]). With "
        "them radpipe also trains, on the same outer folds, a clinical-only logistic model ('clinical') and one over "
        "the covariates plus the in-fold selected radiomics features ('combined'), and compares them with the "
        "radiomics models (comparison.csv). Binary outcomes only."
    )
    clinical_types: dict[str, Literal["numeric", "categorical"]] | None = Field(
        None, description="Override the inferred type of a covariate, e.g. {grade: categorical} (default: numeric "
        "when every filled cell is a number). Numeric covariates are imputed (median) and standardised, categorical "
        "ones imputed (most frequent) and one-hot encoded, inside each training fold."
    )

    @field_validator("models", "ensemble_members")
    @classmethod
    def _known_models(cls, names: list[str]) -> list[str]:
        unknown = [name for name in names if name not in MODEL_NAMES]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; choose from {list(MODEL_NAMES)}")
        if len(set(names)) != len(names):
            raise ValueError(f"model names repeat in {names}")
        return names

    @field_validator("search_families", "search_selections")
    @classmethod
    def _known_search_choices(cls, names: list[str], info) -> list[str]:
        known = SEARCH_FAMILIES if info.field_name == "search_families" else SEARCH_SELECTIONS
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise ValueError(f"unknown {info.field_name} {unknown}; choose one or more of {list(known)}")
        return names

    @property
    def is_survival(self) -> bool:
        return self.outcome is not None

    @model_validator(mode="after")
    def _check(self) -> ModelSettings:
        self._check_clinical()
        if self.is_survival:
            self._check_survival()
        elif any(name in SURVIVAL_MODEL_NAMES for name in self.models):
            survival = [name for name in self.models if name in SURVIVAL_MODEL_NAMES]
            raise ValueError(f"{survival} model a time-to-event outcome: declare it with outcome: {{type: survival, "
                             "time: COLUMN, event: COLUMN}, or choose classifiers such as [logreg, rf]")
        if not self.models:
            raise ValueError("models is empty: name at least one model, e.g. ['svm', 'rf', 'xgb']")
        nested = [name for name in self.ensemble_members if name in ENSEMBLE_NAMES]
        if nested:
            raise ValueError(f"ensemble_members cannot contain ensembles {nested}")
        if any(name in ENSEMBLE_NAMES for name in self.models) and len(self.ensemble_members) < 2:
            raise ValueError("voting/stacking need at least two ensemble_members")
        if self.harmonise and not self.batch_column:
            raise ValueError(f"harmonise: {self.harmonise} needs batch_column: the column of the labels table that "
                             "names each case's scanner or centre")
        if self.batch_column and not self.harmonise:
            raise ValueError(f"batch_column {self.batch_column!r} is only used for harmonisation: add "
                             "'harmonise: combat', or remove batch_column")
        if self.harmonise and self.batch_column == self.group_column:
            raise ValueError(f"group_column and batch_column are both {self.batch_column!r}: grouped CV would hold "
                             "whole batches out of training, and ComBat cannot harmonise a batch it was not fitted on")
        return self

    def _check_clinical(self) -> None:
        if self.clinical is not None:
            if not self.clinical:
                raise ValueError("clinical is empty: name covariate columns of the labels table, e.g. [age, grade]")
            if len(set(self.clinical)) != len(self.clinical):
                raise ValueError(f"clinical covariates repeat in {self.clinical}")
            if self.is_survival:
                raise ValueError("clinical covariates are compared for a binary outcome; a survival outcome does not "
                                 "take them yet: remove clinical")
        unknown = [c for c in (self.clinical_types or {}) if c not in (self.clinical or [])]
        if unknown:
            raise ValueError(f"clinical_types names {unknown}, which are not in clinical {self.clinical or []}")

    def _check_survival(self) -> None:
        if "models" not in self.model_fields_set:
            self.models = list(SURVIVAL_MODEL_NAMES)
        wrong = [name for name in self.models if name not in SURVIVAL_MODEL_NAMES]
        if wrong:
            raise ValueError(f"models {wrong} are classifiers; a survival outcome takes "
                             f"{list(SURVIVAL_MODEL_NAMES)} (penalised Cox, random survival forest, gradient-boosted "
                             "survival)")
        if self.positive_class is not None:
            raise ValueError("positive_class applies to a binary outcome, not to a survival outcome: remove it")
        if self.rebalance is not None:
            raise ValueError("rebalance resamples classes and does not apply to a survival outcome: remove it")
        if self.selection == "mrmr":
            raise ValueError("selection 'mrmr' ranks by a classifier's F statistic; a survival outcome takes "
                             "'univariate' (each feature's concordance with survival), 'lasso' (the order features "
                             "enter a CoxNet path) or 'none'")

    def base_models(self) -> list[str]:
        """Non-ensemble families to tune: the requested ones plus the members any ensemble needs."""
        wanted = [name for name in self.models if name not in ENSEMBLE_NAMES]
        if any(name in ENSEMBLE_NAMES for name in self.models):
            wanted += [name for name in self.ensemble_members if name not in wanted]
        return wanted

    def _search_summary(self) -> dict:
        """The joint search's settings, only when the 'search' model is trained (other cards stay as they were)."""
        if "search" not in self.models:
            return {}
        return {"search_model": f"random search over whole pipelines, {self.search_budget} candidates per inner "
                "search (successive halving, factor 3, on training folds of 300 cases or more); "
                f"families {self.search_families}; selection {self.search_selections}; "
                + ("the single best configuration" if self.search_top == 1 else
                   f"{self.search_combine} of the {self.search_top} best configurations of the last round"),
                "search_budget": self.search_budget, "search_top": self.search_top}

    def cv_summary(self, scoring: str = "roc_auc") -> dict:
        """The settings that describe the validation scheme, for the model card and manifest.

        Fold counts are those of these settings: train records the counts it used (fitted to the smallest
        class, see ``radpipe.model.inputs.plan_folds``).

        ``scoring`` is the inner search's score, which depends on the outcome (the training code passes
        ``roc_auc_ovr`` for a multi-class one); with harmonisation the folds are stratified on outcome x batch.
        """
        strata = (" on outcome x batch (on the outcome alone when an outcome x batch stratum has fewer cases "
                  "than folds)") if self.harmonise else ""
        if self.is_survival:
            scoring = "Harrell's concordance index"
            strata = " on the event indicator" + (" x batch" if self.harmonise else "")
        return {
            "outer": f"{'StratifiedGroupKFold' if self.group_column else 'RepeatedStratifiedKFold'}"
            f"({self.outer_folds} folds x {self.outer_repeats} repeats)" + (f", stratified{strata}" if strata else ""),
            "inner": f"{'joint random' if self.models == ['search'] else self.search} search, "
            f"{self.inner_folds}-fold stratified CV{strata}, scoring {scoring}",
            "outer_folds": self.outer_folds,
            "outer_repeats": self.outer_repeats,
            "inner_folds": self.inner_folds,
            "calibration_folds": self.calibration_folds if any(
                name in ("svm", "svm_linear") for name in self.base_models()) else None,
            **self._search_summary(),
            "search": self.search,
            "n_iter": self.n_iter if self.search == "random" else None,
            "seed": self.seed,
            **({"robust_features": self._robust_record} if self._robust_record else {}),
            "group_column": self.group_column,
            "harmonise": self.harmonise,
            "batch_column": self.batch_column,
            "rebalance": self.rebalance,
            "correlation_threshold": self.correlation_threshold,
            "selection": self.selection,
            "select_k": self.select_k_grid or self.select_k,
            "threshold_method": None if self.is_survival else self.threshold_method,
            "bootstrap": self.bootstrap,
        }
