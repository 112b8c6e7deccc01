"""What the DAG and the Spark jobs must agree on, written once.

Standard library only at import: the jobs import it from the package (the zip on EMR), and the
DAG loads this file by path (`emr_pipeline.job_contract`), because importing the package there
would pull in numpy and PIL. (The weights check imports h5py when it is called.)
"""

from __future__ import annotations

import re
from typing import Any

# --weights: a builtin name, or a Keras weights file of the whole MobileNetV2.
BUILTIN_WEIGHTS = ("imagenet", "random")
WEIGHTS_SUFFIX = ".weights.h5"  # what Keras 3 writes
WEIGHTS_SUFFIXES = (WEIGHTS_SUFFIX, ".h5")  # what featurize accepts
# The whole MobileNetV2 (alpha 1.0, 224x224, classifier included): its weight arrays (kernels,
# biases, batch-norm gamma/beta/mean/variance) and their values.
MOBILENET_V2_WEIGHT_ARRAYS = 262
MOBILENET_V2_WEIGHT_VALUES = 3_538_984
# Its weights file is 14.6 MB in float32: a file four times that size is not one.
MAX_WEIGHTS_BYTES = 64 * 2**20
# --runtime and --precision choices, the default first (the form's enums too).
RUNTIMES = ("openvino", "tensorflow")
PRECISIONS = ("f32", "bf16")
DEFAULT_RUNTIME, DEFAULT_PRECISION = RUNTIMES[0], PRECISIONS[0]
# MobileNetV2's penultimate layer: the vectors' length, and the most components PCA can keep.
FEATURE_SIZE = 1280
# 32 images per model call: 64 grew each worker's memory (MobileNetV2's activations) by about
# 0.6 GiB without speeding the model up (BENCHMARKS.md).
DEFAULT_BATCH_SIZE = 32
DEFAULT_PCA_K = 2  # the notebook's

# The files that are images: by extension, in any letter case (images.IMAGE_GLOB is the same
# rule for Spark). \Z, not $: Hadoop's glob matches whole names, and `$` would also match
# before a trailing newline.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")
IMAGE_NAME_PATTERN = re.compile(r"(?i)\.(" + "|".join(IMAGE_EXTENSIONS) + r")\Z")
IMAGE_KINDS = ", ".join(f".{ext}" for ext in IMAGE_EXTENSIONS[:-1]) + f" or .{IMAGE_EXTENSIONS[-1]}"

# What a run writes under its output prefix.
# The run's input, fixed once by preflight (imagefeatures.manifest): every step reads it.
MANIFEST = "manifest.parquet"  # parquet: path, label, size, etag, last_modified
MANIFEST_SUMMARY = "manifest.json"  # its source (listing, inventory, folder), counts, region
FEATURES = "features"  # parquet: path, label, features, size, etag
REJECTS = "rejects"  # parquet: path, label, error
PCA = "pca"  # parquet: path, label, pca
PCA_MODEL = "pca_model"  # Spark ML's PCAModel
FEATURIZE_SUMMARY = "featurize_summary.json"
PCA_SUMMARY = "pca_summary.json"
REPORT = "report.json"  # written by validate, read by the DAG
PLOT = "pca.png"
# Each step's progress while it runs (<run>/_progress/<step>.json; `_` hides it from Spark).
PROGRESS = "_progress"
STEP_NAMES = ("featurize", "pca", "validate")


def precision_problem(runtime: str, precision: str) -> str:
    """Why the model cannot run in `precision` on `runtime` (each among RUNTIMES and PRECISIONS);
    "" when it can. Checked by the DAG, before a cluster is paid for, and by featurize."""
    if precision == "bf16" and runtime != "openvino":
        return (
            f"precision bf16 runs only on the openvino runtime, not on {runtime} (the "
            "TensorFlow runtime is f32 only); choose runtime openvino, or precision f32"
        )
    return ""


def weights_problem(source: Any) -> str | None:
    """Why the HDF5 file `source` (a path or a binary file object) does not hold the whole
    MobileNetV2's weights; None when it holds its arrays and values."""
    import h5py

    sizes: list[int] = []
    try:
        with h5py.File(source, "r") as weights:
            weights.visititems(
                lambda _, item: sizes.append(item.size) if isinstance(item, h5py.Dataset) else None
            )
    except OSError as exc:
        return f"it cannot be read as HDF5 ({exc})"
    if (len(sizes), sum(sizes)) != (MOBILENET_V2_WEIGHT_ARRAYS, MOBILENET_V2_WEIGHT_VALUES):
        return (
            f"it holds {len(sizes)} weight arrays of {sum(sizes):,} values; the whole MobileNetV2 "
            f"(classifier included) has {MOBILENET_V2_WEIGHT_ARRAYS} of "
            f"{MOBILENET_V2_WEIGHT_VALUES:,}"
        )
    return None


# Seals: what the Airflow connection, never a cluster, vouches for, under
# <artifacts>/<dag_id>/seals/ (the nodes' instance role may read there, not write). A passed
# run's seal lists the ETags of these objects of its folder, which a later run's base must
# still have; a model cache entry's seal, the digests of its files.
SEALED_RUN_OBJECTS = (f"{FEATURES}/", f"{REJECTS}/", FEATURIZE_SUMMARY, REPORT)


def is_sealed_run_object(relative_key: str) -> bool:
    """Whether a run's seal vouches for the object at `relative_key` under its folder."""
    return any(
        relative_key.startswith(name) if name.endswith("/") else relative_key == name
        for name in SEALED_RUN_OBJECTS
    )


def sealed_run_objects(s3: Any, bucket: str, prefix: str) -> dict[str, str]:
    """{key under the run's folder `prefix`: ETag} of the objects a seal vouches for, as S3
    lists them now (`s3`: a boto3 client)."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            relative = obj["Key"][len(prefix) :]
            if is_sealed_run_object(relative):
                found[relative] = obj["ETag"]
    return found


def seal_problem(sealed: dict[str, str], now: dict[str, str]) -> str | None:
    """What changed between the objects a seal lists and those listed now; None: nothing."""
    differ = sorted(name for name in set(sealed) | set(now) if sealed.get(name) != now.get(name))
    if not differ:
        return None
    return (
        f"{len(differ)} of its sealed objects changed after it was sealed, e.g. "
        f"{', '.join(differ[:3])}"
    )


def model_seal_name(key: str) -> str:
    """The seal of model cache entry `key`, under the model seals' folder."""
    return f"{key}.json"


def manifest_summary_uri(manifest_uri: str) -> str:
    """manifest.json beside a manifest's parquet file."""
    folder, slash, _ = manifest_uri.rpartition("/")
    return folder + slash + MANIFEST_SUMMARY


def progress_file(step: str) -> str:
    """Where, under a run's output prefix, step `step` publishes its progress."""
    return f"{PROGRESS}/{step}.json"


# The nodes the jobs' pinned wheels install on: x86_64 only (tensorflow-cpu 2.21.0 has no
# aarch64 wheel; OpenVINO's needs glibc 2.35, EMR 7's nodes have 2.34). Graviton (arm64)
# families have a "g" right after the generation (m6g, c7gn, r8gd, x2gd, im4gn), and a1; not
# g4dn and the like (GPU, x86_64), whose "g" comes first.
_ARM64_FAMILY = re.compile(r"^(a1|[a-z]+[0-9]+g[a-z]*)$")


def is_arm64(instance_type: str) -> bool:
    """Whether EC2 `instance_type` (m6g.xlarge) is a Graviton (arm64) type."""
    return bool(_ARM64_FAMILY.match(instance_type.split(".", 1)[0]))
