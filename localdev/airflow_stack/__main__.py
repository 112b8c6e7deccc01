"""`python -m localdev.airflow_stack`: the local Airflow stack in the foreground (make airflow).

Places come from FRUIT_LOCAL_* variables (state folder, ports): see config.py beside this.
"""

from __future__ import annotations

import argparse

from localdev.airflow_stack.config import StackConfig
from localdev.airflow_stack.stack import run_stack
from localdev.seed_images import DEFAULT_IMAGES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="PostgreSQL, the EMR emulator and Airflow 3 (api-server, scheduler, "
        "dag-processor, triggerer), natively; Ctrl-C stops them all."
    )
    parser.add_argument(
        "--images", type=int, default=DEFAULT_IMAGES, help="sample images to generate once"
    )
    args = parser.parse_args(argv)
    try:
        config = StackConfig.from_env(images=args.images)
    except ValueError as error:  # a FRUIT_LOCAL_*_PORT that is not a number
        parser.error(str(error))
    return run_stack(config)


if __name__ == "__main__":
    raise SystemExit(main())
