"""Zip this package for Spark's --py-files (standard library only, so the DAG can use it)."""

from __future__ import annotations

import zipfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def build_package_zip(archive: Path, package_dir: Path = PACKAGE_DIR) -> Path:
    """Write `package_dir`'s Python sources to `archive`, importable as the package.

    Entries carry a fixed timestamp, so the same sources give the same bytes (and S3 ETag).
    """
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for source in sorted(package_dir.rglob("*.py")):
            entry = zipfile.ZipInfo(source.relative_to(package_dir.parent).as_posix())
            entry.date_time = (2020, 1, 1, 0, 0, 0)
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, source.read_bytes())
    return archive
