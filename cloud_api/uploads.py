"""Photos stored by content hash: residents' problem photos and the valuation terminal's shots.

A file is written once under ``<data_dir>/uploads/<sha256>`` (through a ``.part`` file and a
rename, so a crash never leaves half a photo under its final name) and recorded in ``uploads``
with its media type, size and uploader. The same bytes uploaded twice are stored once.

Example:
    >>> digest = store_upload(store, data_dir, "per_1", jpeg_bytes, now_ms=0)
    >>> photo_path(store, data_dir, digest)  # (path, media type), or None
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cloud_api.store import StorePort

MAX_PHOTO_BYTES = 4 * 1024 * 1024
PHOTO_TYPES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}


def media_type_of(data: bytes) -> str | None:
    """``image/jpeg`` or ``image/png`` by the file's first bytes, or ``None``."""
    return next((t for magic, t in PHOTO_TYPES.items() if data.startswith(magic)), None)


def store_upload(store: StorePort, data_dir: Path, person_id: str, data: bytes, now_ms: int) -> str:
    """Store a photo (its type already checked with :func:`media_type_of`); return its hash."""
    media_type = media_type_of(data)
    if media_type is None:
        raise ValueError("not a JPEG or PNG photo")
    digest = hashlib.sha256(data).hexdigest()
    folder = data_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / digest
    if not path.exists():
        partial = path.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(path)
    with store.write() as db:
        db.execute(
            "INSERT INTO uploads (hash, media_type, size, uploaded_by, uploaded_ms)"
            " VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
            (digest, media_type, len(data), person_id, now_ms),
        )
    return digest


def community_photo(
    store: StorePort, data_dir: Path, digest: str, community_id: str
) -> tuple[Path, str] | None:
    """A stored photo's file and media type if someone of the community uploaded it (a
    terminal's photos are uploaded under the donor, a problem report's under the resident), for
    the community's staff; ``None`` otherwise (another community's photo is not revealed)."""
    ours = store.read_one(
        "SELECT 1 FROM uploads u JOIN people p ON p.id = u.uploaded_by"
        " WHERE u.hash = ? AND p.community_id = ?",
        (digest, community_id),
    )
    return None if ours is None else photo_path(store, data_dir, digest)


def photo_path(store: StorePort, data_dir: Path, digest: str) -> tuple[Path, str] | None:
    """The stored file of a photo and its media type, or ``None``."""
    row = store.read_one("SELECT media_type FROM uploads WHERE hash = ?", (digest,))
    path = data_dir / "uploads" / digest
    if row is None or not path.exists():
        return None
    return path, str(row["media_type"])
