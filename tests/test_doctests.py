"""The Examples sections of the public API run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["radpipe.cohort", "radpipe._radiomics_features", "radpipe.model._correlation_filter",
           "radpipe.model._selection", "radpipe.explain.shap_values", "radpipe.model.inputs", "radpipe._cli_progress"]


@pytest.mark.realdata
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, data_dir):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0, result
