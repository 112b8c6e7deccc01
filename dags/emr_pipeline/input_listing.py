"""The input as featurize's Spark listing will see it, counted from an S3 listing before any
cluster exists: the images per label, what Hadoop hides, and what would fail the whole job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emr_pipeline.job_contract import contract
from emr_pipeline.s3_reads import EXAMPLES, PreflightError, examples, list_objects
from emr_pipeline.uris import as_prefix, split_s3_uri

IMAGE_NAME_PATTERN = contract.IMAGE_NAME_PATTERN  # the rule Spark's glob applies in featurize


@dataclass(frozen=True)
class InputListing:
    images: int
    labels: dict[str, int]  # images per label (= parent folder)
    # Image names Spark skips (a `_` or `.` name on the way), at most a few, and their count.
    hidden_examples: list[str] = field(default_factory=list)
    hidden: int = 0


def hidden_by_hadoop(name: str) -> bool:
    """Spark's rule for the files and folders its listing skips (HadoopFSUtils
    .shouldFilterOutPathName): a `_` or `.` start, except `_metadata`, `_common_metadata`
    and `_` names holding `=` (partition folders); and `._COPYING_` ends."""
    excluded = (name.startswith("_") and "=" not in name) or name.startswith(".")
    excluded = excluded or name.endswith("._COPYING_")
    kept = name.startswith("_common_metadata") or name.startswith("_metadata")
    return excluded and not kept


def list_images(s3: Any, input_uri: str, max_image_bytes: int | None = None) -> InputListing:
    """Count the images under `input_uri` exactly as featurize's Spark listing will see them.

    Skips what Hadoop hides (`_`/`.` names, at any depth below the input); refuses, with
    examples, what Spark cannot read at all: keys with `:` (Hadoop's Path breaks on them and
    the whole listing fails), keys with empty segments (`a//b.jpg`: Hadoop collapses them into
    another path), images over `max_image_bytes` (Spark's binaryFile limit fails the job).
    """
    bucket, key = split_s3_uri(input_uri)
    prefix = as_prefix(key) if key.strip("/") else ""
    input_uri = as_prefix(input_uri)  # shown as the folder it is
    labels: dict[str, int] = {}
    hidden: list[str] = []
    unreadable: dict[str, list[str]] = {"colon": [], "empty segment": [], "too large": []}
    for obj in list_objects(s3, bucket, prefix, "input_uri", input_uri):
        name = obj["Key"]
        if name.endswith("/"):
            continue  # a console "folder": no file for Spark
        # Walk down the key as Hadoop's listing does: a name it must turn into a Path breaks
        # on ':' or an empty segment, even a hidden name (its parent's listing makes that
        # Path); below a hidden folder it never looks.
        problem = None
        for segment in name[len(prefix) :].split("/"):
            if ":" in segment:
                problem = "colon"
            elif not segment:
                problem = "empty segment"
            elif hidden_by_hadoop(segment):
                problem = "hidden"
            if problem:
                break
        if problem == "hidden":
            if IMAGE_NAME_PATTERN.search(name):
                hidden.append(name)
            continue
        if problem:
            unreadable[problem].append(name)
            continue
        if not IMAGE_NAME_PATTERN.search(name):
            continue
        if max_image_bytes is not None and obj.get("Size", 0) > max_image_bytes:
            unreadable["too large"].append(name)
            continue
        parts = name.split("/")
        label = parts[-2] if len(parts) > 1 else ""
        labels[label] = labels.get(label, 0) + 1
    if unreadable["colon"]:
        keys = unreadable["colon"]
        raise PreflightError(
            f"input_uri: {len(keys)} objects under {input_uri} have ':' in their key, which "
            f"breaks Hadoop's paths (Spark's listing of the whole input fails): "
            f"{examples(keys, bucket)}. Rename them or move them out of the input"
        )
    if unreadable["empty segment"]:
        keys = unreadable["empty segment"]
        raise PreflightError(
            f"input_uri: {len(keys)} objects under {input_uri} have an empty folder name "
            f"('//') in their key, which Hadoop reads as another path: {examples(keys, bucket)}"
            ". Rename them or move them out of the input"
        )
    if unreadable["too large"]:
        keys = unreadable["too large"]
        raise PreflightError(
            f"input_uri: {len(keys)} images under {input_uri} are larger than "
            f"{max_image_bytes} bytes (deployment setting max_image_bytes; Spark's binaryFile "
            f"reader fails the whole job on one): {examples(keys, bucket)}"
        )
    if not labels:
        raise PreflightError(
            f"input {input_uri} holds no {contract.IMAGE_KINDS} image"
            + (f" that Spark reads ({len(hidden)} hidden by a '_' or '.' name)" if hidden else "")
        )
    return InputListing(
        images=sum(labels.values()),
        labels=dict(sorted(labels.items())),
        hidden_examples=hidden[:EXAMPLES],
        hidden=len(hidden),
    )
