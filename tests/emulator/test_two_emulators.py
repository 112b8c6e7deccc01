"""Two emulators in one process share moto's state: each cluster is still run exactly once."""

from __future__ import annotations

from pathlib import Path

from localdev.emr_emulator import EmrEmulator
from tests.emulator.helpers import command_step, create_cluster, wait_for_steps


def test_a_second_emulator_does_not_run_steps_twice(
    emulator, any_command, emr, bucket, tmp_path: Path
):
    trace = tmp_path / "trace.txt"
    # Both runners may claim the cluster, so both run bash steps (the test-only switch).
    with EmrEmulator(
        port=0, work_dir=tmp_path / "second", startup_seconds=0.3, allow_any_command=True
    ) as second:
        assert second.endpoint_url != emulator.endpoint_url
        step = command_step("once", "bash", "-c", f"sleep 0.5; echo ran >> {trace}")
        cluster_id = create_cluster(emr, bucket, steps=[step, step])
        steps = wait_for_steps(emr, cluster_id)
    assert [s["Status"]["State"] for s in steps] == ["COMPLETED", "COMPLETED"]
    assert trace.read_text() == "ran\nran\n"
