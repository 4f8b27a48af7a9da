"""Leakage-safe scikit-learn transformers for radiomics pipelines, re-exported from their private modules.

Each is fitted inside every cross-validation fold (as a Pipeline step), so nothing it learns comes
from the cases it is evaluated on.
"""

from radpipe.model._combat import ComBatHarmoniser
from radpipe.model._correlation_filter import CorrelationFilter
from radpipe.model._selection import FeatureSelector

__all__ = ["ComBatHarmoniser", "CorrelationFilter", "FeatureSelector"]
