"""The DAG's Params: types, defaults (from the deployment's environment) and descriptions.

They render as the form in the UI's Trigger dialog; `airflow dags trigger --conf` takes the
same names. JSON schema checks types and ranges when a run is triggered; what it cannot
express (exclusive options, URI shapes) RunOptions.validate checks in preflight.
"""

from __future__ import annotations

from airflow.sdk import Param

from emr_pipeline.options import PRECISIONS, RUNTIMES
from emr_pipeline.settings import ParseTimeSettings

_S3_URI = r"^s3[an]?://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$"


def build_params(s: ParseTimeSettings) -> dict[str, Param]:
    data, model, cluster, waiting = "Data", "Model and PCA", "EMR cluster", "Waiting"
    return {
        "input_uri": Param(
            s.input_uri,
            type="string",
            pattern=_S3_URI,
            section=data,
            title="Input images",
            description="s3:// prefix of the images, one folder per label: "
            "<prefix>/<Label>/x.jpg. Must not overlap output_uri.",
        ),
        "output_uri": Param(
            s.output_uri,
            type="string",
            pattern=_S3_URI,
            section=data,
            title="Output root",
            description="s3:// root for results; each run writes under <output_uri>/<run_id>/.",
        ),
        "overwrite": Param(
            False,
            type="boolean",
            section=data,
            title="Overwrite a finished run",
            description="Redo a run id that already finished: its own output (the prefix "
            "holding its marker) is deleted first. Never deletes another run's output or "
            "anything this DAG did not write; a new run id always gets a fresh prefix.",
        ),
        "incremental": Param(
            True,
            type="boolean",
            section=data,
            title="Reuse unchanged images' features",
            description="Reuse the vectors of the latest earlier run of this DAG that passed, "
            "for the same input and model, for every image unchanged since (same key, size and "
            "modification time); featurize only new, changed and rejected images. The output "
            "still holds every image's vector, and PCA is fitted on all of them.",
        ),
        "full_refresh": Param(
            False,
            type="boolean",
            section=data,
            title="Full refresh",
            description="Featurize every image again, whatever incremental says: when an "
            "earlier run's features are in doubt, or to start a new line of runs.",
        ),
        "weights": Param(
            s.weights,
            type="string",
            minLength=1,
            section=model,
            title="Model weights",
            description="imagenet (downloaded on the nodes), random (fixed seed, for tests) or "
            "the s3:// URI of a Keras .weights.h5 file of the whole MobileNetV2.",
        ),
        "pca_k": Param(
            2,
            type=["null", "integer"],
            minimum=1,
            maximum=1280,
            section=model,
            title="PCA components",
            description="Number of components (ignored if pca_variance).",
        ),
        "pca_variance": Param(
            None,
            type=["null", "number"],
            exclusiveMinimum=0,
            maximum=1,
            section=model,
            title="PCA variance target",
            description="Smallest k reaching this share of variance, e.g. 0.95; wins over pca_k.",
        ),
        "batch_size": Param(
            32,
            type="integer",
            minimum=1,
            maximum=4096,
            section=model,
            title="Batch size",
            description="Images per model call (and per Arrow batch).",
        ),
        "runtime": Param(
            "openvino",
            type="string",
            enum=list(RUNTIMES),
            section=model,
            title="Model runtime",
            description="What runs the model in the Spark workers. openvino: about 2x faster, "
            "features equal to TensorFlow's within 1e-4. tensorflow: the reference.",
        ),
        "precision": Param(
            "f32",
            type="string",
            enum=list(PRECISIONS),
            section=model,
            title="Inference precision",
            description="bf16: about 1.5x faster again on CPUs with BF16 (Intel AMX, AMD "
            "Zen 4: m7i, m7a..., not the default m5), features within cosine 0.999 of f32. "
            "Needs runtime openvino. Where the CPU lacks BF16 the run falls back to f32, and "
            "the report says which ran.",
        ),
        "partitions": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            section=model,
            title="Partitions",
            description="Spark partitions for featurize; empty = about 128 small images per task.",
        ),
        "release_label": Param(
            s.release_label,
            type="string",
            pattern=r"^emr-",
            section=cluster,
            title="EMR release",
            description="emr-7.13.0 (Spark 3.5) by default; emr-spark-8.0.0 runs Spark 4.",
        ),
        "master_instance_type": Param(
            s.master_instance_type,
            type="string",
            minLength=1,
            section=cluster,
            title="Primary node type",
            description="EC2 instance type of the primary node (runs the Spark driver).",
        ),
        "core_instance_type": Param(
            s.core_instance_type,
            type="string",
            minLength=1,
            section=cluster,
            title="Core node type",
            description="EC2 instance type of the core nodes (run the featurize tasks).",
        ),
        "core_instance_count": Param(
            s.core_instance_count,
            type="integer",
            minimum=0,
            maximum=100,
            section=cluster,
            title="Core nodes",
            description="0 runs everything on the primary node.",
        ),
        "core_spot": Param(
            s.core_spot,
            type="boolean",
            section=cluster,
            title="Spot core nodes",
            description="Core nodes on the spot market (capped at the on-demand price).",
        ),
        "task_cpus": Param(
            2,
            type="integer",
            minimum=1,
            maximum=16,
            section=cluster,
            title="CPUs per task",
            description="spark.task.cpus and the model's threads per Python worker.",
        ),
        "idle_timeout_seconds": Param(
            s.idle_timeout_seconds,
            type="integer",
            minimum=60,
            maximum=604800,
            section=cluster,
            title="Idle timeout (s)",
            description="EMR terminates the cluster after this long without work, even if "
            "Airflow never gets to terminate it.",
        ),
        "poke_interval_seconds": Param(
            s.poke_interval_seconds,
            type="number",
            minimum=1,
            section=waiting,
            title="Poke interval (s)",
            description="How often sensors check steps and outputs (at least 1 s).",
        ),
        "sensor_timeout_seconds": Param(
            s.sensor_timeout_seconds,
            type="integer",
            minimum=1,
            maximum=604800,
            section=waiting,
            title="Sensor timeout (s)",
            description="How long each sensor waits before failing.",
        ),
        "deferrable": Param(
            s.deferrable,
            type="boolean",
            section=waiting,
            title="Deferrable sensors",
            description="Wait in the triggerer instead of holding a worker slot.",
        ),
    }
