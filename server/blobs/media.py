"""What a file's bytes say it is: the media type sniffed from its first bytes, and whether it fits a question's kind."""

from __future__ import annotations

import re
from collections.abc import Iterable

from forms.fieldtypes import media_type_matches

# The first bytes of the formats phones make and people attach. Order matters: the first match wins,
# and the ISO base media formats (``ftyp`` boxes) are told apart by their brand below.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"#!AMR", "audio/amr"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),  # .doc, .xls
)
_RIFF = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}
_FTYP_BRANDS = {
    b"heic": "image/heic", b"heix": "image/heic", b"mif1": "image/heif", b"msf1": "image/heif",
    b"avif": "image/avif", b"M4A ": "audio/mp4", b"M4B ": "audio/mp4", b"3gp4": "video/3gpp",
    b"3gp5": "video/3gpp", b"3gp6": "video/3gpp", b"3g2a": "video/3gpp2", b"qt  ": "video/quicktime",
}
_TEXT = re.compile(rb"[\t\n\r\x20-\x7e\x80-\xff]*")
SNIFF_BYTES = 64

KINDS = ("image", "audio", "video", "file")
# Phone recorders write audio into containers that sniff as video (3GP, WebM, MP4 brands).
_AUDIO_CONTAINERS = ("video/3gpp", "video/webm", "video/mp4")
# What the bytes of a file named with an accepted extension must sniff as (unknown ones: anything).
_EXTENSION_TYPES = {
    ".pdf": ("application/pdf",), ".jpg": ("image/jpeg",), ".jpeg": ("image/jpeg",), ".png": ("image/png",),
    ".docx": ("application/zip",), ".xlsx": ("application/zip",), ".pptx": ("application/zip",),
    ".odt": ("application/zip",), ".ods": ("application/zip",), ".zip": ("application/zip",),
    ".doc": ("application/x-ole-storage",), ".xls": ("application/x-ole-storage",),
    ".csv": ("text/plain",), ".txt": ("text/plain",),
}


def sniff(head: bytes) -> str:
    """The media type the first bytes (:data:`SNIFF_BYTES` of them) show, ``text/plain`` for text without
    a signature (CSV), else ``application/octet-stream``."""
    for offset, magic, media_type in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return media_type
    if head[:4] == b"RIFF" and head[8:12] in _RIFF:
        return _RIFF[head[8:12]]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _FTYP_BRANDS:
            return _FTYP_BRANDS[brand]
        return "video/mp4"  # isom, mp41, mp42, avc1, dash…: MP4 video
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if head[:2] in (b"\xff\xf1", b"\xff\xf9"):
        return "audio/aac"
    if head and b"\x00" not in head and _TEXT.fullmatch(head):
        return "text/plain"
    return "application/octet-stream"



def fits(kind: str, sniffed: str, filename: str, media_types: Iterable[str], extensions: Iterable[str]) -> bool:
    """Whether a file whose bytes sniff as ``sniffed`` answers a question of ``kind`` that takes
    ``media_types`` (patterns like ``image/*``) or files named with ``extensions``. A name alone never
    makes bytes acceptable: a ``.pdf`` must sniff as a PDF (a ``.jpg`` that is a ZIP is refused)."""
    patterns = list(media_types)
    if any(media_type_matches(sniffed, pattern) for pattern in patterns):
        return True
    if kind == "audio" and sniffed in _AUDIO_CONTAINERS and any(media_type_matches("audio/x", p) for p in patterns):
        return True
    lowered = filename.lower()
    for extension in extensions:
        if lowered.endswith(extension):
            expected = _EXTENSION_TYPES.get(extension)
            return expected is None or sniffed in expected
    return False
