"""radpipe: radiomics from image + mask to validated, explained models.

The public API, for notebooks::

    import radpipe
    cohort = radpipe.load_cohort("sts_pet")
    recipe = radpipe.load_recipe("pipelines/sts_pet.yaml")
    result = radpipe.extract_cohort(cohort, recipe.extract, "out/features")

Names are imported on first use, so ``import radpipe`` and ``radpipe --help`` stay fast.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("radpipe")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

_EXPORTS = {
    "load_cohort": "radpipe.cohort",
    "Cohort": "radpipe.cohort",
    "Case": "radpipe.cohort",
    "load_recipe": "radpipe.config",
    "load_datasets": "radpipe.config",
    "extract_cohort": "radpipe.extract.stage",
    "run_recipe": "radpipe.pipeline",
    "train_models": "radpipe.model.train",
    "load_model": "radpipe.model.persist",
    "save_model": "radpipe.model.persist",
    "explain": "radpipe.explain.report",
    "RadiomicsFeatures": "radpipe._radiomics_features",
    "cohort_paths": "radpipe._radiomics_features",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'radpipe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
