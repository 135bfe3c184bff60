"""Everything IRIS-specific about the bytes on the wire."""
