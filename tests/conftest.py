"""Shared fixtures. Real data comes from RADPIPE_DATA (default ../shared/data); under CI=true a
missing data folder fails the test instead of skipping it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    return Path(os.environ.get("RADPIPE_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-data folder; skip locally when absent, fail in CI."""
    root = _data_root()
    if not (root / "README.md").exists():
        message = f"real data not found at {root} (set RADPIPE_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(autouse=True)
def _quiet_matplotlib(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _no_leftover_dataset_registry():
    """`radpipe --datasets FILE` sets the registry for the whole process: a CLI test that passes it must not
    leave its temporary registry to the tests that run after it."""
    yield
    from radpipe.config import use_datasets_file

    use_datasets_file(None)
