"""Staging a step's s3:// arguments to a local folder and syncing what it wrote back to S3.

Local Spark here cannot read s3:// (no hadoop-aws jars offline), so the emulator does what EMRFS
would: before the step, every s3:// (or s3n://, s3a://) URI found in its arguments, including
comma-separated lists (`--py-files a.zip,b.zip`) and `key=s3://...` values, is copied to
`<stage>/<bucket>/<key>`, each object once per step, with its LastModified as the local file's
modification time (as EMRFS reports it). The input images are not among them: no step names
the input (each reads the run's manifest), and featurize's workers read the images from the
emulator's S3 by key, as on EMR.

The job still sees s3:// URIs: `hadoop_confs()` mounts each staged bucket's top-level folders
on the local copies with Hadoop's ViewFileSystemOverloadScheme (in Spark's own Hadoop jars), so
Spark reads and writes s3://bucket/key and every path it reports (the jobs' reports) is the S3
URI, as on EMR. Only what spark-submit itself fetches before Spark's Hadoop configuration exists
(the primary resource, --py-files, --files...) is given as the local path (`localize`).

The rule for what a URI is, decided from a listing of moto S3:
- objects under `<key>/` exist: a folder; the whole prefix is downloaded;
- otherwise an object `<key>` exists: a file; it is downloaded;
- otherwise nothing exists (an output still to be written): only the parent folder is created.

While the step runs, files it has written and not changed for one look are uploaded
(`publish_written`): EMRFS makes an object visible as soon as it is written, and the DAG reads a
step's progress file while the step runs. After the step, whatever happened, every staged URI is
treated as one the step may have written: its local tree is compared with what was downloaded
(MD5) and published, new or changed files are uploaded, files that disappeared are deleted.
Nested URIs are synced once, from the outermost. Hadoop's local checksum files (`.name.crc`)
and `_temporary/` folders are never uploaded: EMRFS writes neither to S3.

Nothing a caller sends becomes a path outside the stage folder: a bucket that is no valid
bucket name, or a key (named, or listed under a named folder) with an empty, `.` or `..`
segment, is refused with UnsafeKeyError before anything is downloaded (Hadoop's Path, and so
EMRFS, would not name such a key either: it folds those segments away).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

S3_URI = re.compile(r"^(?P<scheme>s3[an]?)://(?P<bucket>[^/]+)/?(?P<key>.*)$")
# What a bucket name must look like to be one folder of the stage (S3's rules are stricter).
BUCKET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class UnsafeKeyError(ValueError):
    """An S3 location that has no place in the stage folder (it would resolve outside it)."""


def check_staging_key(bucket: str, key: str) -> None:
    """Refuse what would not land inside `<stage>/<bucket>/`: see the module's docstring."""
    if not BUCKET_NAME.match(bucket) or ".." in bucket:
        raise UnsafeKeyError(f"s3://{bucket}/: not a valid bucket name")
    segments = key.rstrip("/").split("/") if key.rstrip("/") else []
    if any(segment in ("", ".", "..") for segment in segments) or "\0" in key:
        raise UnsafeKeyError(
            f"s3://{bucket}/{key}: a key with an empty, '.' or '..' segment cannot be staged "
            "(EMRFS's paths cannot name it either); nothing of this step was staged"
        )


# "--conf spark.x=s3://..." or "--output=s3://...": stage the value after the first "=".
KEY_VALUE_S3 = re.compile(r"^(?P<head>[^=]*=)(?P<uri>s3[an]?://.+)$")


def parse_s3_uri(uri: str) -> tuple[str, str] | None:
    """(bucket, key) of an s3://, s3n:// or s3a:// URI; None for anything else."""
    match = S3_URI.match(uri)
    return (match["bucket"], match["key"]) if match else None


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_uploadable(relative: Path) -> bool:
    if "_temporary" in relative.parts:
        return False
    name = relative.name
    return not (name.startswith(".") and name.endswith(".crc"))


def _local_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file())


@dataclass
class SyncReport:
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


# Hadoop classes that serve s3:// from the local copies; the schemes EMRFS answers to.
_VIEWFS = "org.apache.hadoop.fs.viewfs.ViewFileSystemOverloadScheme"
_RAW_LOCAL = "org.apache.hadoop.fs.RawLocalFileSystem"  # no .crc files beside the outputs
S3_SCHEMES = ("s3", "s3a", "s3n")


@dataclass
class StagedStep:
    """A step's arguments, their local copies, and what is needed to sync outputs back."""

    args: list[str]  # as the step gave them, s3:// URIs kept
    stage_dir: Path
    local_args: list[str] = field(default_factory=list)  # every s3:// URI as its local copy
    roots: dict[Path, tuple[str, str]] = field(default_factory=dict)  # local root -> (bucket, key)
    downloaded: dict[Path, str] = field(default_factory=dict)  # local file -> md5 after staging
    # Written while the step ran: (size, mtime_ns) at the last look, and as published to S3.
    seen: dict[Path, tuple[int, int]] = field(default_factory=dict)
    published: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def localize(self, value: str) -> str:
        """`value` (a comma-separated list too) with each staged s3:// URI as its local copy."""
        return ",".join(self._local_part(part) for part in value.split(","))

    def local_path(self, bucket: str, key: str) -> Path:
        """Where s3://<bucket>/<key> is copied (UnsafeKeyError if that is not inside)."""
        check_staging_key(bucket, key)
        key = key.rstrip("/")
        return self.stage_dir / bucket / key if key else self.stage_dir / bucket

    def _local_part(self, part: str) -> str:
        location = parse_s3_uri(part)
        if location is None:
            return part
        return str(self.local_path(*location)) + ("/" if part.endswith("/") else "")

    def hadoop_confs(self) -> dict[str, str]:
        """Spark confs under which s3://<bucket>/<top>/... is the local copy of each staged
        bucket's top-level entry (ViewFS mount tables are keyed by the URI's authority)."""
        buckets = sorted({bucket for bucket, _ in self.roots.values()})
        if not buckets:
            return {}
        confs = {f"spark.hadoop.fs.{scheme}.impl": _VIEWFS for scheme in S3_SCHEMES}
        # Spark lists a ViewFileSystem with listLocatedStatus, whose local target forks
        # `ls -ld` per file for its owner and permissions: 20,000 images took 70 s to list,
        # where EMRFS lists 1,000 keys a request. Without locality (S3 has none) Spark lists
        # with listStatus, as it lists EMRFS.
        confs["spark.sql.sources.ignoreDataLocality"] = "true"
        for scheme in (*S3_SCHEMES, "file"):
            confs[f"spark.hadoop.fs.viewfs.overload.scheme.target.{scheme}.impl"] = _RAW_LOCAL
        for bucket in buckets:
            for top in self._top_entries(bucket):
                link = f"spark.hadoop.fs.viewfs.mounttable.{bucket}.link./{top}"
                confs[link] = (self.stage_dir / bucket / top).as_uri()
        return confs

    def _top_entries(self, bucket: str) -> list[str]:
        """The first key segments the step names under `bucket`; for a bucket-root URI, every
        top-level entry of the local copy. (A link per entry: ViewFS's linkMergeSlash, which
        would mount the whole bucket, reports wrong paths in Hadoop 3.3.4.)"""
        tops: set[str] = set()
        for root_bucket, key in self.roots.values():
            if root_bucket != bucket:
                continue
            if key:
                tops.add(key.split("/", 1)[0])
            elif (self.stage_dir / bucket).is_dir():
                tops.update(entry.name for entry in (self.stage_dir / bucket).iterdir())
        for top in tops:  # a link's target must exist, even for an output not yet written
            target = self.stage_dir / bucket / top
            if not target.exists():
                target.mkdir(parents=True)
        return sorted(tops)


class S3Stager:
    """Stages step arguments from S3 and syncs outputs back, with a boto3 S3 client."""

    def __init__(self, s3_client: Any, encryption: dict[str, str] | None = None) -> None:
        self.s3 = s3_client
        self.encryption = encryption or {}  # ExtraArgs for every upload (server-side encryption)

    def stage(self, args: list[str], stage_dir: Path) -> StagedStep:
        """Download every s3:// URI in `args` under `stage_dir` (each object once).

        Everything is listed and checked first, then downloaded: a refused key (UnsafeKeyError)
        leaves nothing staged."""
        staged = StagedStep(args=list(args), stage_dir=stage_dir)
        downloads: list[tuple[str, dict[str, Any] | None, Path]] = []
        for arg in args:
            parts = [self._plan_part(part, staged, downloads) for part in arg.split(",")]
            staged.local_args.append(",".join(parts))
        for bucket, item, target in downloads:
            if item is None:  # an output the step may create
                target.parent.mkdir(parents=True, exist_ok=True)
            else:
                self._download_file(bucket, item, target, staged)
        return staged

    def _plan_part(
        self,
        part: str,
        staged: StagedStep,
        downloads: list[tuple[str, dict[str, Any] | None, Path]],
    ) -> str:
        head, uri = "", part
        if not S3_URI.match(part):
            match = KEY_VALUE_S3.match(part)
            if not match:
                return part
            head, uri = match["head"], match["uri"]
        bucket, key = parse_s3_uri(uri)  # type: ignore[misc]
        local = staged.local_path(bucket, key)
        if local not in staged.roots:
            staged.roots[local] = (bucket, key.rstrip("/"))
            downloads += self._listed(bucket, key.rstrip("/"), local)
        return head + staged._local_part(uri)

    def _list(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            objects.extend(page.get("Contents", []))
        return objects

    def _listed(
        self, bucket: str, key: str, local: Path
    ) -> list[tuple[str, dict[str, Any] | None, Path]]:
        """What staging s3://bucket/key downloads: (bucket, listed object, local file); the
        object is None for an output still to be written (only its parent is made)."""
        prefix = f"{key}/" if key else ""
        under = [o for o in self._list(bucket, prefix) if not _is_folder_marker(o["Key"])]
        if under:
            for item in under:
                check_staging_key(bucket, item["Key"])
            return [(bucket, item, local / item["Key"][len(prefix) :]) for item in under]
        found = [o for o in self._list(bucket, key) if o["Key"] == key] if key else []
        if found:
            return [(bucket, found[0], local)]
        return [(bucket, None, local)]

    def _download_file(
        self, bucket: str, item: dict[str, Any], target: Path, staged: StagedStep
    ) -> None:
        """Download one listed object; the local file's modification time is the object's
        LastModified, which is what EMRFS reports for it (an incremental run compares it)."""
        if target in staged.downloaded:
            return  # under two staged URIs (a folder and a file in it): one download
        target.parent.mkdir(parents=True, exist_ok=True)
        # One GetObject per object: boto3's download_file adds a HeadObject and a thread pool,
        # which doubled staging's cost for the many small files of an image folder.
        with target.open("wb") as handle:
            body = self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"]
            for chunk in iter(lambda: body.read(1 << 20), b""):
                handle.write(chunk)
        modified = item["LastModified"].timestamp()
        os.utime(target, (modified, modified))
        staged.downloaded[target] = _md5(target)

    def publish_written(self, staged: StagedStep) -> list[str]:
        """While the step runs: upload each new or changed file that has not changed since the
        last look (a file being written is left for the next), as EMRFS makes an object
        visible once written. Returns the URIs uploaded."""
        uploaded = []
        for root in _outermost(staged):
            bucket_dir = staged.stage_dir / staged.roots[root][0]
            for path in _local_files(root):
                relative = path.relative_to(bucket_dir)
                try:
                    stat = path.stat()
                except FileNotFoundError:  # renamed or deleted since the listing
                    continue
                signature = (stat.st_size, stat.st_mtime_ns)
                settled = staged.seen.get(path) == signature
                staged.seen[path] = signature
                if not settled or staged.published.get(path) == signature:
                    continue
                if not _is_uploadable(relative) or path in staged.downloaded:
                    continue  # inputs are in S3 already; a rewritten one waits for sync_back
                uploaded.append(self._upload(path, staged.roots[root][0], relative))
                staged.published[path] = signature
        return uploaded

    def _upload(self, path: Path, bucket: str, relative: Path) -> str:
        key = relative.as_posix()
        extra = {"ExtraArgs": self.encryption} if self.encryption else {}
        self.s3.upload_file(str(path), bucket, key, **extra)
        return f"s3://{bucket}/{key}"

    def sync_back(self, staged: StagedStep) -> SyncReport:
        """Upload new and changed files under every staged root (but those published while
        the step ran and unchanged since); delete vanished ones."""
        report = SyncReport()
        for root in _outermost(staged):
            bucket = staged.roots[root][0]
            bucket_dir = staged.stage_dir / bucket
            current = _local_files(root)
            for path in current:
                relative = path.relative_to(bucket_dir)
                if not _is_uploadable(relative):
                    continue
                if staged.downloaded.get(path) == _md5(path):
                    continue
                stat = path.stat()
                if staged.published.get(path) == (stat.st_size, stat.st_mtime_ns):
                    continue
                report.uploaded.append(self._upload(path, bucket, relative))
            present = set(current)
            for path in [*staged.downloaded, *staged.published]:  # in S3 before: gone now?
                inside = path == root or root in path.parents
                if inside and path not in present:
                    key = path.relative_to(bucket_dir).as_posix()
                    self.s3.delete_object(Bucket=bucket, Key=key)
                    report.deleted.append(f"s3://{bucket}/{key}")
        return report


def _outermost(staged: StagedStep) -> list[Path]:
    """The staged roots not inside another: nested URIs are synced once, from the outermost."""
    outermost: list[Path] = []
    for root in sorted(staged.roots, key=lambda p: len(p.parts)):
        if not any(root == o or o in root.parents for o in outermost):
            outermost.append(root)
    return outermost


def _is_folder_marker(key: str) -> bool:
    return key.endswith("/") or key.endswith("_$folder$")
