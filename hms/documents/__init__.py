"""Documents a request may run: parsed, validated and cached (persisted documents come here too)."""

from hms.documents.cache import Document, DocumentCache

__all__ = ["Document", "DocumentCache"]
