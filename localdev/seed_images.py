"""Put the sample images in the emulator's S3, where the DAG's trigger form expects them.

`python -m localdev.seed_images` with the stack's environment (localdev/airflow.env): the
`seed-images` service of docker-compose.yaml and `make airflow` both run it. Images are generated
once into a cache folder and uploaded from there, so a restarted emulator (its S3 lives in
memory) gets the same images again.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from localdev.dag_run import ensure_bucket, split_s3_uri, upload_tree
from localdev.emr_emulator.credentials import read_key_file
from localdev.local_demo import prepare_images

DEFAULT_IMAGES = 240


def cached_images(cache_dir: Path, count: int) -> Path:
    """`cache_dir`/images: `count` sample images plus the bad files, generated unless there.

    The count file is written last, so an interrupted generation is redone.
    """
    images, count_file = cache_dir / "images", cache_dir / "images.count"
    if count_file.exists() and count_file.read_text() == str(count):
        return images
    count_file.unlink(missing_ok=True)
    prepare_images(images, count)
    count_file.write_text(str(count))
    return images


def seed(environ: Mapping[str, str], images: Path) -> int:
    """Upload `images` to FRUIT_EMR_INPUT_URI and create the output bucket; returns the count.

    The emulator is where the Airflow connection says; the key is in the emulator's key file,
    AWS_CONFIG_FILE (as for the connection, which names no key)."""
    connection = json.loads(environ["AIRFLOW_CONN_AWS_DEFAULT"])
    key_file = read_key_file(Path(environ["AWS_CONFIG_FILE"]))
    s3 = key_file.client("s3", endpoint_url=connection["extra"]["endpoint_url"])
    count = upload_tree(s3, images, environ["FRUIT_EMR_INPUT_URI"])
    ensure_bucket(s3, split_s3_uri(environ["FRUIT_EMR_OUTPUT_URI"])[0])
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES, help="how many to generate")
    parser.add_argument("--cache-dir", type=Path, help="keep the generated images here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = cached_images(args.cache_dir or Path(scratch), args.images)
        count = seed(os.environ, folder)
    print(f"seed-images: {count} files in {os.environ['FRUIT_EMR_INPUT_URI']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
