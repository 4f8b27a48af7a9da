"""Lazy re-exports (PEP 562): a package names its public objects without importing their modules.

``radpipe --help`` and every config check import ``radpipe.model.settings`` and
``radpipe.explain.settings``; with eager ``__init__`` files they would also pay for scikit-learn,
shap and matplotlib.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module


def lazy_exports(package: str, exports: dict[str, str | tuple[str, str]]) -> tuple[Callable, Callable, list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``.

    ``exports`` maps a public name to its module, or to ``(module, attribute)`` when the two names differ.
    """
    names = sorted(exports)

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = exports[name]
        module, attribute = target if isinstance(target, tuple) else (target, name)
        return getattr(import_module(module), attribute)

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__, names
