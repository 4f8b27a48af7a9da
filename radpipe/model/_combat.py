"""ComBat harmonisation of scanner/centre effects as a transformer: estimated on training data, applied to new data.

The estimation is neuroCombat's (Fortin et al., the reference Python ComBat for imaging, which
neuroHarmonize builds on). Its ``neuroCombatFromTraining`` fails on NumPy >= 2.3 (it calls ``int()`` on
a 1-element array), so the estimates are applied here; it is the same four-line formula, and the
tests check that transforming the training data reproduces neuroCombat's own harmonised output.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from radpipe.model.inputs import batch_label


class ComBatHarmoniser(TransformerMixin, BaseEstimator):
    """Remove additive and multiplicative batch (scanner, centre) effects from features with ComBat.

    ``fit`` estimates, per batch and feature, a location shift and a scale factor (empirical Bayes,
    shrunk across features; Johnson et al. 2007, Fortin et al. 2018) from the training rows only;
    ``transform`` removes them from any rows whose batch was seen in training. The batch labels are
    a column of ``X`` (strings allowed) that is dropped from the output, so nothing downstream
    sees the batch.

    Features without within-batch variation in the training data (constant, or constant within every
    batch) carry no information ComBat can scale; they are set to their training mean.

    Parameters
    ----------
    batch_column : str or int, default="batch"
        Column of ``X`` with each case's batch: a name for DataFrames, a position for arrays.

    Attributes
    ----------
    batches_ : ndarray of str
        Batch labels seen in training, sorted.
    batch_counts_ : dict
        Training cases per batch.
    harmonised_ : ndarray of bool of shape (n_features_out,)
        Features ComBat adjusted (the others are set to their training mean).
    grand_mean_ : ndarray of shape (n_features_out,)
        Training mean of every output feature.
    pooled_var_ : ndarray of shape (n_harmonised,)
        Pooled within-batch variance of the harmonised features.
    gamma_star_, delta_star_ : ndarray of shape (n_batches, n_harmonised)
        Empirical-Bayes location and scale of each batch (standardised units), in ``batches_`` order.
    empirical_bayes_ : bool
        False when fewer than two features could be harmonised (the priors pool features; with one
        feature the per-batch estimates are used as they are).
    n_features_in_ : int
        Columns of ``X``, the batch column included.
    feature_names_in_ : ndarray of str
        Present when ``X`` was a DataFrame with string column names.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from radpipe.model import ComBatHarmoniser
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(60, 3)), columns=["f1", "f2", "f3"])
    >>> X["scanner"] = np.repeat(["GE", "Siemens"], 30)
    >>> X.loc[X.scanner == "Siemens", ["f1", "f2", "f3"]] += 3.0  # a scanner offset
    >>> harmoniser = ComBatHarmoniser(batch_column="scanner").set_output(transform="pandas").fit(X)
    >>> out = harmoniser.transform(X)
    >>> list(out.columns)
    ['f1', 'f2', 'f3']
    >>> bool(abs(out[X.scanner == "Siemens"].mean() - out[X.scanner == "GE"].mean()).max() < 0.2)
    True
    """

    _parameter_constraints: dict = {"batch_column": [str, Interval(Integral, 0, None, closed="left")]}

    def __init__(self, batch_column: str | int = "batch"):
        self.batch_column = batch_column

    def _batch_index(self) -> int:
        names = getattr(self, "feature_names_in_", None)
        if isinstance(self.batch_column, str):
            if names is None:
                raise ValueError(f"batch_column={self.batch_column!r} names a column, but X has no column names: "
                                 "pass a DataFrame, or give the column's position")
            where = np.flatnonzero(names == self.batch_column)
            if not len(where):
                raise ValueError(f"X has no batch column {self.batch_column!r} (columns: {list(names)[:10]}"
                                 f"{' …' if len(names) > 10 else ''})")
            return int(where[0])
        if self.batch_column >= self.n_features_in_:
            raise ValueError(f"batch_column={self.batch_column} but X has only {self.n_features_in_} columns")
        return int(self.batch_column)

    def _split(self, X, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        """(batch labels as str, features as float) from X; the batch column may hold strings."""
        X = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=reset, ensure_min_features=2 if reset else 1)
        j = self._batch_index()
        batch = pd.Series(X[:, j]).map(batch_label)
        if batch.isna().any():
            raise ValueError(f"{int(batch.isna().sum())} case(s) have no value (empty, NaN or inf) in the batch "
                             f"column {self.batch_column!r} (rows {np.flatnonzero(batch.isna())[:5].tolist()}): "
                             "ComBat needs every case's batch")
        try:
            features = np.delete(X, j, axis=1).astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"feature columns (all but the batch column {self.batch_column!r}) must be numeric: "
                             f"{exc}") from None
        if not np.isfinite(features).all():
            raise ValueError("ComBat cannot take missing or infinite feature values: impute them first "
                             "(radpipe's pipeline imputes before harmonising)")
        return batch.to_numpy(dtype=str), features

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        from neuroCombat import neuroCombat

        batch, features = self._split(X, reset=True)
        if len(batch) < 4:
            raise ValueError(f"n_samples = {len(batch)}: ComBat needs at least two batches of two cases each")
        levels, counts = np.unique(batch, return_counts=True)
        if len(levels) < 2:
            raise ValueError(f"only one batch ('{levels[0]}') in the training data: there is nothing to harmonise")
        small = {str(b): int(n) for b, n in zip(levels, counts, strict=True) if n < 2}
        if small:
            raise ValueError(
                f"batch(es) {small} have fewer than 2 training cases: ComBat cannot estimate a batch's scale "
                "from one case. Merge small batches (e.g. rare scanner models into one 'other' batch); in nested "
                "cross-validation every inner training fold needs at least 2 cases of each batch")
        self.batch_counts_ = {str(b): int(n) for b, n in zip(levels, counts, strict=True)}
        self.grand_mean_ = features.mean(axis=0)
        self.harmonised_ = np.any([np.ptp(features[batch == b], axis=0) > 0 for b in levels], axis=0)
        n_adjust = int(self.harmonised_.sum())
        self.empirical_bayes_ = n_adjust >= 2
        self.batches_ = levels
        if n_adjust == 0:
            self.pooled_var_ = np.zeros(0)
            self.gamma_star_ = self.delta_star_ = np.zeros((len(levels), 0))
            return self
        # neuroCombat takes features x cases, prints its progress, and may divide 0 by 0 when an estimate converges
        with (contextlib.redirect_stdout(io.StringIO()), np.errstate(divide="ignore", invalid="ignore"),
              warnings.catch_warnings()):
            warnings.simplefilter("ignore", RuntimeWarning)  # its unused priors are NaN with one feature
            est = neuroCombat(np.ascontiguousarray(features[:, self.harmonised_].T),
                              pd.DataFrame({"batch": batch}), "batch", eb=self.empirical_bayes_)["estimates"]
        if [str(b) for b in est["batches"]] != [str(b) for b in levels]:  # pragma: no cover - neuroCombat's order
            raise RuntimeError(f"neuroCombat ordered the batches {list(est['batches'])}, expected {list(levels)}")
        self.pooled_var_ = np.asarray(est["var.pooled"], dtype=float).ravel()
        self.gamma_star_ = np.asarray(est["gamma.star"], dtype=float)
        self.delta_star_ = np.asarray(est["delta.star"], dtype=float)
        self.grand_mean_[self.harmonised_] = np.asarray(est["stand.mean"], dtype=float)[:, 0]
        if not (np.isfinite(self.gamma_star_).all() and np.isfinite(self.delta_star_).all()):
            raise ValueError("ComBat's estimates are not finite (too few cases per batch?)")
        return self

    def transform(self, X):
        check_is_fitted(self)
        batch, features = self._split(X, reset=False)
        unseen = sorted(str(b) for b in set(batch) - set(self.batches_))
        if unseen:
            raise ValueError(
                f"batch value(s) {unseen} in column {self.batch_column!r} were not in the training data "
                f"(training batches: {self.batches_.tolist()}): ComBat has no estimates for them. Harmonise "
                "with training data that includes those scanners/centres, or leave them out")
        out = np.repeat(self.grand_mean_[None, :], len(features), axis=0)
        if self.harmonised_.any():
            row = np.searchsorted(self.batches_, batch)
            mean, sd = self.grand_mean_[self.harmonised_], np.sqrt(self.pooled_var_)
            standardised = (features[:, self.harmonised_] - mean) / sd
            adjusted = (standardised - self.gamma_star_[row]) / np.sqrt(self.delta_star_[row])
            out[:, self.harmonised_] = adjusted * sd + mean
        return out

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "n_features_in_")
        names = _check_feature_names_in(self, input_features)
        return np.delete(names, self._batch_index())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.string = True
        return tags
