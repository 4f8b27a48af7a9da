"""Minimum sample size for developing a binary-outcome prediction model (Riley et al.).

Riley RD et al., "Calculating the sample size required for developing a clinical prediction model",
BMJ 2020;368:m441, and the derivation in Stat Med 2019;38:1276 (Part II). Three criteria, each a
minimum number of cases; the largest one is required:

1. expected uniform shrinkage of the predictor effects of at least 0.9 (little overfitting);
2. apparent and optimism-adjusted Nagelkerke R-squared differing by at most 0.05;
3. the overall risk (the intercept) estimated within +-0.05 (95% confidence).

Criteria 1 and 2 need the anticipated Cox-Snell R-squared of the model. Without one from earlier
studies, radpipe takes 15% of the largest Cox-Snell R-squared the prevalence allows, the conservative
default the authors suggest; a radiomics study rarely has a prior model to take it from. Each
criterion's n is rounded up, as the authors' ``pmsampsize`` software does.

The candidate predictor parameters are every parameter the modelling may estimate *before*
selection: all features offered to the in-fold selection (selection inside the folds does not
reduce what was searched) plus the clinical parameters (1 per numeric covariate, levels - 1 per
categorical one).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

#: Riley et al.'s default when no anticipated R-squared is known: this share of the maximum Cox-Snell R-squared
DEFAULT_R2_SHARE = 0.15


def max_r2_cs(prevalence: float) -> float:
    """The largest Cox-Snell R-squared a binary outcome of this prevalence allows (a perfect model)."""
    phi = float(prevalence)
    if not 0 < phi < 1:
        raise ValueError(f"prevalence must lie strictly between 0 and 1, not {prevalence}")
    log_null = phi * math.log(phi) + (1 - phi) * math.log(1 - phi)  # null log-likelihood per case
    return 1 - math.exp(2 * log_null)


def _n_for_shrinkage(parameters: int, r2_cs: float, shrinkage: float) -> int:
    return math.ceil(parameters / ((shrinkage - 1) * math.log(1 - r2_cs / shrinkage)))


@dataclass
class SampleSize:
    """Riley et al.'s three criteria and the minimum sample size they require (see the module docstring)."""

    candidate_predictors: int
    prevalence: float
    r2_cs: float
    r2_cs_source: str
    max_r2_cs: float
    criteria: list[dict] = field(default_factory=list)

    @property
    def n_required(self) -> int:
        return max(c["n"] for c in self.criteria)

    @property
    def events_required(self) -> int:
        return math.ceil(self.n_required * self.prevalence)

    @property
    def events_per_predictor_required(self) -> float:
        return self.n_required * self.prevalence / self.candidate_predictors

    def record(self, n_available: int, events_available: int) -> dict:
        """What ``sample_size.json`` holds: the criteria, the cohort's numbers and a warning when it is smaller."""
        epp = events_available / self.candidate_predictors
        warning = None
        if n_available < self.n_required:
            warning = (f"the cohort has {n_available} cases ({events_available} events) but Riley et al.'s criteria "
                       f"ask for at least {self.n_required} ({self.events_required} events) for "
                       f"{self.candidate_predictors} candidate predictor parameters: {epp:.2f} events per candidate "
                       f"predictor against {self.events_per_predictor_required:.1f} needed. Expect overfitting; read "
                       "the cross-validated performance and its confidence interval, and validate externally")
        return {
            "n_required": self.n_required,
            "n_available": int(n_available),
            "events_required": self.events_required,
            "events_available": int(events_available),
            "candidate_predictors": self.candidate_predictors,
            "prevalence": self.prevalence,
            "r2_cs": self.r2_cs,
            "r2_cs_source": self.r2_cs_source,
            "max_r2_cs": self.max_r2_cs,
            "criteria": [dict(c) for c in self.criteria],
            "events_per_predictor": epp,
            "events_per_predictor_required": self.events_per_predictor_required,
            "warning": warning,
            "reference": "Riley RD et al. BMJ 2020;368:m441 (criteria for a binary outcome)",
        }

    def as_dict(self) -> dict:
        return asdict(self)


def riley_binary(candidate_predictors: int, prevalence: float, r2_cs: float | None = None, *,
                 shrinkage: float = 0.9, optimism: float = 0.05, margin: float = 0.05) -> SampleSize:
    """Riley et al.'s minimum sample size for a binary outcome.

    Parameters
    ----------
    candidate_predictors : candidate predictor parameters (before any selection).
    prevalence : the outcome's prevalence (events / cases).
    r2_cs : anticipated Cox-Snell R-squared; default 15% of :func:`max_r2_cs`.
    shrinkage : the smallest acceptable expected shrinkage (criterion 1).
    optimism : the largest acceptable optimism in Nagelkerke's R-squared (criterion 2).
    margin : the absolute margin of error of the overall risk (criterion 3).

    Examples
    --------
    The published example (Riley et al. 2019/2020: 24 parameters, prevalence 0.174, R-squared 0.288):

    >>> result = riley_binary(24, 0.174, 0.288)
    >>> [c["n"] for c in result.criteria], result.n_required, round(result.events_per_predictor_required, 1)
    ([623, 662, 221], 662, 4.8)
    """
    if candidate_predictors < 1:
        raise ValueError("at least one candidate predictor parameter is needed")
    biggest = max_r2_cs(prevalence)
    source = "anticipated (given)"
    if r2_cs is None:
        r2_cs, source = DEFAULT_R2_SHARE * biggest, f"{DEFAULT_R2_SHARE:.0%} of the maximum Cox-Snell R2 (default)"
    if not 0 < r2_cs < biggest:
        raise ValueError(f"the anticipated Cox-Snell R2 {r2_cs} must lie between 0 and its maximum {biggest:.3f}")
    shrinkage_2 = r2_cs / (r2_cs + optimism * biggest)  # the shrinkage that keeps Nagelkerke's optimism <= optimism
    criteria = [
        {"name": f"expected shrinkage >= {shrinkage}", "n": _n_for_shrinkage(candidate_predictors, r2_cs, shrinkage),
         "shrinkage": shrinkage},
        {"name": f"optimism in Nagelkerke R2 <= {optimism}",
         "n": _n_for_shrinkage(candidate_predictors, r2_cs, shrinkage_2), "shrinkage": shrinkage_2},
        {"name": f"overall risk within +-{margin}",
         "n": math.ceil((1.96 / margin) ** 2 * prevalence * (1 - prevalence)), "shrinkage": None},
    ]
    return SampleSize(int(candidate_predictors), float(prevalence), float(r2_cs), source, biggest, criteria)


def sample_size_record(n_available: int, events_available: int, candidate_predictors: int,
                       r2_cs: float | None = None) -> dict:
    """``sample_size.json`` for a cohort: Riley et al.'s minimum against the cases and events it has.

    Examples
    --------
    >>> record = sample_size_record(39, 16, 12)
    >>> record["n_required"] > 39, round(record["events_per_predictor"], 2)
    (True, 1.33)
    """
    result = riley_binary(candidate_predictors, events_available / n_available, r2_cs)
    return result.record(n_available, events_available)
