"""Detect what a file holds from its content (and, for tables, its columns)."""
from __future__ import annotations

__all__ = ["sniff_container"]

AVRO_MAGIC = b"Obj\x01"
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
FITS_MAGIC = b"SIMPLE  ="


def sniff_container(head: bytes) -> str | None:
    """The container format of a file from its first bytes.

    Returns ``"avro"``, ``"parquet"``, ``"fits"``, ``"gzip"``, ``"json"`` or
    ``None`` when none of these match.
    """
    if head.startswith(AVRO_MAGIC):
        return "avro"
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(FITS_MAGIC):
        return "fits"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"{", b"["):
        return "json"
    return None
