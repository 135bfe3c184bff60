"""pki-soap: the InterSystems IRIS PKI (CA server and client over SOAP), in Python.

Importing the package installs an import shim so that spyne 2.14, the last
release on PyPI, still imports on Python 3.12 and later (its bundled six 1.14
importer has no ``find_spec``).  It must run before anything imports spyne.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

__version__ = "0.1.0"


class _SixMovesLoader:
    def __init__(self, importer: Any) -> None:
        self._importer = importer

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        module: ModuleType = self._importer.load_module(spec.name)
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The bundled importer already executed the module."""


class _SpyneSixMovesFinder:
    """Serves ``spyne.util.six.moves.*`` through spyne's own bundled six importer."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> ModuleSpec | None:
        if not fullname.startswith("spyne.util.six.moves"):
            return None
        for importer in sys.meta_path:
            if type(importer).__name__ == "_SixMetaPathImporter" and fullname in getattr(
                importer, "known_modules", {}
            ):
                return importlib.util.spec_from_loader(fullname, _SixMovesLoader(importer))  # type: ignore[arg-type]
        return None


if sys.version_info >= (3, 12) and not any(
    isinstance(finder, _SpyneSixMovesFinder) for finder in sys.meta_path
):
    sys.meta_path.insert(0, _SpyneSixMovesFinder())
