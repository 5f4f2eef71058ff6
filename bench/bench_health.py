"""Fairness over time (issue 17): what `health` costs over a year of monthly rounds, solved every time
against the service's kept solves (`ops.health.KEPT`: each round's solved steps by a digest of its world,
published GPUs and pins).

GET /health, the health page, every team page, publish's confirmation and the /metrics scrape read the
same past rounds again and again; a published round does not change unless it is solved again.

    .venv/bin/python bench/bench_health.py [--requests 1000] [--rounds 12]

Prints, side by side: every round solved (the reference: before the kept solves), the first read with an
empty cache, a read with every round kept, and the cost of the digests alone.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fairshare.engine.health import KeptSolves, RoundInput, health, round_key, rounds_from
from fairshare.scenario import Scenario
from fairshare.scenario.files import load_scenario
from fairshare.scenario.synthetic import synthetic_scenario

ROOT = Path(__file__).resolve().parents[1]


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def keyed(rounds: list[RoundInput]) -> list[RoundInput]:
    return [
        RoundInput(r.name, r.scenario, r.allocation, r.pins, key=round_key(r.scenario, r.allocation, r.pins))
        for r in rounds
    ]


def month(scenario: Scenario, i: int) -> Scenario:
    """Round i: the lab with its first pool grown by i GPUs, so that no two rounds are the same."""
    first = scenario.pools[0].model_copy(update={"gpus": scenario.pools[0].gpus + i})
    return scenario.model_copy(update={"name": f"r{i}", "pools": [first, *scenario.pools[1:]]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="the synthetic lab's requests")
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    labs = {
        "meta-ai-2023 (11 requests)": load_scenario(ROOT / "examples" / "meta-ai-2023.yaml"),
        f"synthetic ({args.requests} requests)": synthetic_scenario(args.requests),
    }
    print(f"{'lab':<28} {'rounds':>6} {'every time':>11} {'first read':>11} {'kept':>8} {'digests':>8}  (seconds)")
    for label, scenario in labs.items():
        rounds = rounds_from([(f"r{i}", month(scenario, i)) for i in range(args.rounds)])
        plain = timed(lambda: health(rounds))  # noqa: B023
        kept = KeptSolves()
        cold = timed(lambda: health(keyed(rounds), kept=kept))  # noqa: B023
        warm = timed(lambda: health(keyed(rounds), kept=kept))  # noqa: B023
        digests = timed(lambda: keyed(rounds))  # noqa: B023
        print(f"{label:<28} {args.rounds:>6} {plain:>11.2f} {cold:>11.2f} {warm:>8.2f} {digests:>8.2f}")


if __name__ == "__main__":
    main()
