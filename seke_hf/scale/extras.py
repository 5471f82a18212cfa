"""Optional extras (`pip install "seke-hf[ray]"`, `"seke-hf[s3]"`): imported on use, with a one-line error if absent."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {"ray": ("ray", "ray[data]"), "ray.data": ("ray", "ray[data]"), "s3fs": ("s3", "s3fs")}
"""Module -> (seke-hf extra, the package pip installs for it)."""


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says which extra to install."""


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` or raise `MissingExtra` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra, package = EXTRAS.get(module, (module, module))
        raise MissingExtra(f'{purpose} needs {package}, which is not installed: pip install "seke-hf[{extra}]"') from e
