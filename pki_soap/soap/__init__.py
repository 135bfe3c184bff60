"""Everything IRIS-specific about the bytes on the wire."""

from pathlib import Path

WSDL_FILE = Path(__file__).resolve().parent / "CAServer.wsdl"
"""The IRIS-faithful WSDL (wire-protocol.md §6): served at ``?WSDL``, the client's fallback.

Package data, so an installed copy serves the same file as a checkout.
"""
