"""The Examples sections of the public API run as written."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# every module whose docstrings hold an example: a new one is tested without being listed here
MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for path in (ROOT / "radpipe").rglob("*.py") if ">>> " in path.read_text(encoding="utf-8")
)


@pytest.mark.realdata
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, data_dir):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0, result


def test_examples_are_found():
    assert len(MODULES) > 30 and "radpipe.model.inputs" in MODULES and "radpipe.segment.methods" in MODULES
