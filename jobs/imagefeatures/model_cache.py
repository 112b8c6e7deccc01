"""A cache of exported OpenVINO models, so that a run pays the export only once per model.

The export (TensorFlow's import, the Keras build and the conversion) costs 7-10 s of every run
before any image is featurized. Its result depends only on the weights, the code that builds and
exports the model, and the versions of the packages that build and convert it, so an entry is
keyed by a digest of exactly those. The cache lives wherever the job can write (a local folder,
or an S3 prefix beside the DAG's artifacts: a cluster's local disk dies with the cluster).

An entry is <cache>/<key>/: model.xml and model.bin, then manifest.json with their sizes and
SHA-256, written last, so an entry without a manifest is incomplete and ignored. A fetched entry is
checked against its manifest before use: a damaged one is exported again and rewritten. Whoever
writes the files writes the manifest too, so it catches damage, not tampering: with the model
seals (`seals_uri`, written by the Airflow connection once a run that stored the entry passed,
and which no cluster may write), an entry is used only if its files match its seal.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

from pyspark.sql import SparkSession

from imagefeatures import storage
from imagefeatures.code_identity import MODEL_CODE, code_digests
from imagefeatures.errors import first_line
from imagefeatures.model import INPUT_SHAPE, RANDOM_WEIGHTS_SEED
from imagefeatures.seals import model_seal

MANIFEST = "manifest.json"
# What builds and converts the model: a new version of any of them may export another graph.
_EXPORT_PACKAGES = (("tensorflow", "tensorflow-cpu"), ("keras",), ("openvino",), ("numpy",))
_CHUNK = 1 << 20


def _version(*names: str) -> str:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "absent"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_identity(weights: str) -> str:
    """What the weights are: the builtin name (with the random seed), or a local file's
    SHA-256 (a renamed copy of the same file is the same model)."""
    if weights == "random":
        return f"random:{RANDOM_WEIGHTS_SEED}"
    if weights == "imagenet":
        return "imagenet"  # Keras pins the file and its hash per version
    return f"sha256:{file_sha256(weights)}"


def cache_key(identity: str) -> str:
    """The entry's name: a digest of the weights' identity, the exporting code and packages."""
    parts = {
        "weights": identity,
        "input_shape": list(INPUT_SHAPE),
        "code": code_digests(MODEL_CODE),
        "packages": {names[0]: _version(*names) for names in _EXPORT_PACKAGES},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


ENTRY_FILES = ("model.xml", "model.bin")


def _warn(message: str) -> None:
    print(f"featurize: warning: {message}", file=sys.stderr, flush=True)


def is_local(cache_uri: str) -> bool:
    return urlsplit(cache_uri).scheme in ("", "file")


def has_local_entry(cache_uri: str, key: str) -> bool:
    """Whether a local cache holds a complete entry for `key`, without Spark (the job asks
    before Spark starts, to skip exporting ahead what it will find)."""
    if not is_local(cache_uri):
        return False
    folder = Path(urlsplit(cache_uri).path) / key
    return (folder / MANIFEST).is_file()


def _digest(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def fetch(
    spark: SparkSession, cache_uri: str, key: str, folder: str, seals_uri: str | None = None
) -> Path | None:
    """The entry for `key` copied into `folder` and checked against its manifest, and against
    its seal under `seals_uri` when given; None if the cache has none, or one that is damaged
    or not sealed as it is (said on stderr)."""
    entry = storage.join_uri(cache_uri, key)
    try:
        manifest = storage.read_json_if_exists(spark, storage.join_uri(entry, MANIFEST))
        if manifest is None:
            return None
        if sorted(manifest) != sorted(ENTRY_FILES):
            raise ValueError(f"{MANIFEST} lists {sorted(manifest)}")
        if seals_uri:
            sealed = model_seal(spark, seals_uri, key)
            if sealed is None:
                raise ValueError("no run that passed sealed it (a cluster may have written it)")
            if sealed != manifest:
                raise ValueError(f"its {MANIFEST} does not match its seal")
        # A name of its own per fetch, as per export: exports of the same weights differ in
        # their .xml's bytes, and Spark refuses a second addFile of one name with other bytes.
        xml = Path(folder) / f"feature_model-{uuid.uuid4().hex[:12]}.xml"
        for name, local in zip(ENTRY_FILES, (xml, xml.with_suffix(".bin")), strict=True):
            storage.copy_to_local(spark, storage.join_uri(entry, name), local)
            if _digest(local) != manifest[name]:
                raise ValueError(f"{name} does not match {MANIFEST}")
    except Exception as exc:  # a damaged entry costs an export, never the run
        _warn(f"model cache entry {entry} unusable, exporting again: {first_line(exc)}")
        return None
    return xml


def store(spark: SparkSession, cache_uri: str, key: str, xml: Path) -> dict | None:
    """Copy an exported model into the cache as the entry for `key`; returns the files'
    digests (what a seal of the entry records), None (said on stderr) if it cannot be written:
    the run goes on, and the next one exports again."""
    entry = storage.join_uri(cache_uri, key)
    xml_name, bin_name = ENTRY_FILES
    try:
        manifest = {
            name: _digest(path)
            for name, path in zip(ENTRY_FILES, (xml, xml.with_suffix(".bin")), strict=True)
        }
        storage.copy_from_local(spark, xml.with_suffix(".bin"), storage.join_uri(entry, bin_name))
        storage.copy_from_local(spark, xml, storage.join_uri(entry, xml_name))
        storage.write_json(spark, storage.join_uri(entry, MANIFEST), manifest)  # last: complete
    except Exception as exc:
        _warn(f"model cache entry {entry} not written: {first_line(exc)}")
        return None
    return manifest
