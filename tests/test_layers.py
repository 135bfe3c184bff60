"""The import rule of docs/architecture.md, checked on the code: who may import whom.

Each module belongs to a part: its package under ``pki_soap``, or the shared bottom
(``errors``, ``escaping``, ``files``, ``messages``, ``web``).  A part imports only the parts
below it, so the graph has no cycles and each part can be read, and replaced, from the bottom up.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pki_soap"
BOTTOM = frozenset({"errors", "escaping", "files", "messages", "web"})

# part -> the parts it may import (besides itself and the bottom)
ALLOWED: dict[str, frozenset[str]] = {
    "bottom": frozenset(),
    "ca": frozenset(),
    "store": frozenset({"ca"}),
    "server": frozenset({"ca", "store"}),
    "soap-wire": frozenset(),
    "soap": frozenset({"ca", "store", "server", "soap-wire"}),
    "client": frozenset({"ca", "store", "soap-wire"}),
    "portal": frozenset({"ca", "store", "server", "client", "soap", "soap-wire"}),
    "wsgi": frozenset({"ca", "store", "server", "soap", "soap-wire", "portal"}),
    "cli": frozenset({"ca", "store", "server", "soap", "soap-wire", "client", "portal", "wsgi"}),
}
# The modules of soap/ that are the wire format alone, without spyne: the client shares them.
SOAP_WIRE = frozenset({"pki_soap.soap", "pki_soap.soap.envelope", "pki_soap.soap.dataset"})
# Third-party stacks kept to one part each.
ONLY_IN = {"spyne": "soap", "zeep": "client", "gunicorn": "cli", "jinja2": "portal"}


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _part(module: str) -> str:
    pieces = module.split(".")
    if len(pieces) == 1 or pieces[1] in BOTTOM or pieces[1] == "__version__":
        return "bottom"
    if ".".join(pieces[:3]) in SOAP_WIRE:
        return "soap-wire"
    return pieces[1]


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "pki_soap":
                yield from (f"pki_soap.{alias.name}" for alias in node.names)
            elif node.module.startswith("pki_soap.") and node.module.count(".") == 1:
                # from pki_soap.ca import keys: the module is pki_soap.ca.keys (or a name in it)
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    is_module = (PACKAGE.parent / (full.replace(".", "/") + ".py")).exists() or (
                        PACKAGE.parent / full.replace(".", "/")
                    ).is_dir()
                    yield full if is_module else node.module
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_part_is_known() -> None:
    parts = {_part(_module_name(path)) for path in MODULES}
    assert parts <= set(ALLOWED), parts


@pytest.mark.parametrize("path", MODULES, ids=lambda path: _module_name(path))
def test_a_module_imports_only_the_parts_below_its_own(path: Path) -> None:
    module = _module_name(path)
    own = _part(module)
    wrong = []
    for imported in _imports(path):
        top = imported.split(".")[0]
        if top in ONLY_IN and ONLY_IN[top] != own:
            wrong.append(f"{imported} (only {ONLY_IN[top]}/ uses {top})")
        if top != "pki_soap":
            continue
        part = _part(imported)
        if part in {own, "bottom"}:
            continue
        if part not in ALLOWED[own]:
            wrong.append(imported)
    assert wrong == [], f"{module} ({own}) may not import: {wrong}"


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    # The checker itself: an upward import (the store reaching into the server) is found.
    sample = tmp_path / "sample.py"
    sample.write_text("from pki_soap.server.tasks import CAServer\nimport spyne\n")
    found = [_part(name) for name in _imports(sample)]
    assert "server" in found and "server" not in ALLOWED["store"]
    assert ONLY_IN["spyne"] != "store"
