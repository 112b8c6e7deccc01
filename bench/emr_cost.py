"""Estimated EMR cost per 10,000 images, from a `make bench` run's steady-state rates.

    python -m bench.emr_cost --like m7i.xlarge [--results bench/results/bench_4000.json]

The bench machine stands in for one EC2 instance type with the same CPU (`--like`): its
images/s per vCPU, once running, times the instance's vCPUs, priced at EC2 on-demand plus EMR's
uplift. Only the core nodes' featurize time is counted: not the primary node, the cluster's
start-up (several minutes on EMR) or the job's fixed cost, so small runs cost more per image.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench.run_bench import steady_rate
from localdev.local_spark import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "dags"))
from emr_pipeline.cost import load_price_table  # noqa: E402 - dags/ is not a package root

# The instance types the bench machine can stand in for: (vCPUs, CPU). Their prices are the
# DAG's price table (dags/emr_pipeline/emr_prices.json: dated, sourced, Linux on-demand).
INSTANCES = {
    "m5.xlarge": (4, "Intel Xeon Skylake/Cascade Lake: AVX-512, no BF16"),
    "m7i.xlarge": (4, "Intel Xeon Sapphire Rapids: AVX-512 BF16, AMX"),
    "m7a.xlarge": (4, "AMD EPYC Genoa (Zen 4): AVX-512 BF16, no AMX"),
}
REGION = "us-east-1"


def price(instance: str) -> tuple[float, float]:
    """(EC2, EMR uplift) USD per hour of `instance` in REGION, from the price table."""
    entry = load_price_table()["regions"][REGION][instance]
    return entry["ec2"], entry["emr"]


STEADY_RATES = {  # bench summary key -> what ran
    "ours featurize f32 (steady state)": "openvino f32",
    "ours featurize bf16 (steady state)": "openvino bf16",
}


def cost_per_10k(images_per_s_per_vcpu: float, instance: str) -> float:
    vcpus, _ = INSTANCES[instance]
    ec2, emr = price(instance)
    hours = 10_000 / (images_per_s_per_vcpu * vcpus) / 3600
    return hours * (ec2 + emr)


def rows(summary: dict, instance: str, cores: int) -> list[tuple[str, float, float]]:
    """(what ran, images/s per vCPU, USD per 10,000 images) for each measured stage."""
    rates = dict(summary["rates_images_per_s"])
    rates["tensorflow"] = steady_rate(
        summary["stages"], "ours featurize tensorflow", summary["images"]
    )
    labels = {**STEADY_RATES, "tensorflow": "tensorflow f32"}
    if summary.get("bf16_ran_as") != "bf16":
        labels.pop("ours featurize bf16 (steady state)")  # it ran in f32: nothing to price
    out = []
    for key, label in labels.items():
        per_vcpu = rates[key] / cores
        out.append((label, per_vcpu, cost_per_10k(per_vcpu, instance)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--like", choices=sorted(INSTANCES), required=True)
    parser.add_argument(
        "--results", type=Path, default=REPO_ROOT / "bench" / "results" / "bench_4000.json"
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="the bench's vCPUs")
    args = parser.parse_args(argv)
    summary = json.loads(args.results.read_text())
    vcpus, cpu = INSTANCES[args.like]
    ec2, emr = price(args.like)
    as_of = f"{load_price_table()['date']}, {REGION}, on-demand"
    print(f"{args.like} ({cpu}; {vcpus} vCPUs, ${ec2} + ${emr} EMR per hour, {as_of})")
    print("| runtime | images/s per vCPU | USD per 10,000 images (core node time) |")
    print("|---|---:|---:|")
    for label, per_vcpu, cost in rows(summary, args.like, args.cores):
        print(f"| {label} | {per_vcpu:.1f} | {cost:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
