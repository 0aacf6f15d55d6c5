"""Benchmark: the valuation engine's error against outside labels, and the cost of ``value()`` (#9).

What is measured:

1. **Error.** For every case in ``tests/data/valuation_cases.json`` (labels from published
   points-shop prices, flea-market and thrift prices, recyclers' prices per kg, buy-back prices
   and charities' donation value guides; provenance in ``tests/data/valuation_cases.md``), the
   default policy's proposal and a **category-median baseline** measured in the same run (the
   median label of the other cases of the category, leave-one-out): mean absolute error
   (points), median absolute percentage error, the share within ±20 %, abstentions, and the
   ratio engine / baseline on the cases both answer — overall, per category, per market and per
   kind of label.
2. **Sensitivity.** Most sources state neither age nor condition; the cases carry stated
   defaults (12 months, 9成新). The error is recomputed with other defaults for the *assumed*
   fields only, and with US prices converted at the market exchange rate instead of PPP.
3. **Cost.** ``value()`` per case, median and p99 in µs, against a trivial baseline call
   measured in the same run (the baseline's prediction: a dict lookup of a precomputed median).

Target (set here, the issue names none): none for the error — it is reported, not tuned (the
lead decides on the policy); ``value()`` under 50 µs median on one core.

Run: ``.venv/bin/python bench/valuation_error.py [--rounds 200]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_valuation_cases import (
    PPP_CNY_PER_USD,
    Case,
    Metrics,
    Predictions,
    baseline_predictions,
    default_policy,
    engine_predictions,
    groups,
    load_cases,
    metrics,
    paired,
)

from valuation_terminal.core.rules import Inputs, Policy, value

T = TypeVar("T")

FX_CNY_PER_USD = 7.06
"""Market rate for the sensitivity run (December 2019; source in valuation_cases.md)."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def pct(x: float) -> str:
    return f"{x * 100:5.1f} %"


def row(name: str, cases: Sequence[Case], engine: Predictions, baseline: Predictions) -> None:
    both = paired(cases, engine, baseline)
    e_all, b_all = metrics(cases, engine), metrics(cases, baseline)
    if both:
        e, b = metrics(both, engine), metrics(both, baseline)
        ratio = f"{e.mae / b.mae:5.2f}" if b.mae else "  inf"
        shown = f"{e.mae:6.1f} {b.mae:6.1f} {ratio}  {pct(e.mdape)} {pct(b.mdape)}  {pct(e.within)} {pct(b.within)}"
    else:
        shown = f"{'(baseline abstains on every case)':^66}"
    print(
        f"  {name:<26} {len(cases):>3} {e_all.abstained:>3} {b_all.abstained:>3}  {shown}"
        f"   engine alone: MAE {e_all.mae:6.1f}"
    )


def header(title: str) -> None:
    print()
    print(title)
    print(
        f"  {'':<26} {'n':>3} {'abE':>3} {'abB':>3}  {'MAE E':>6} {'MAE B':>6} {'E/B':>5}"
        f"  {'MdAPE E':>7} {'MdAPE B':>7}  {'±20% E':>7} {'±20% B':>7}"
    )


def with_assumptions(cases: Sequence[Case], age_months: int, condition: str) -> list[Case]:
    """The cases with other defaults for the fields each case marks as assumed."""
    changed = []
    for case in cases:
        given = case.inputs
        changed.append(
            replace(
                case,
                inputs=Inputs(
                    given.category,
                    condition if "condition" in case.assumed else given.condition,
                    age_months if "age_months" in case.assumed else given.age_months,
                    given.weight_g,
                    given.photo_count,
                    given.demand,
                    given.purchase_price_yuan,
                ),
            )
        )
    return changed


def at_exchange_rate(cases: Sequence[Case], cny_per_usd: float) -> list[Case]:
    """US labels and declared US prices converted at another rate (CN cases unchanged)."""
    factor = cny_per_usd / PPP_CNY_PER_USD
    changed = []
    for case in cases:
        if case.market != "US":
            changed.append(case)
            continue
        price = case.inputs.purchase_price_yuan
        inputs = replace(case.inputs, purchase_price_yuan=None if price is None else price * factor)
        changed.append(replace(case, label=case.label * factor, inputs=inputs))
    return changed


def summary(cases: Sequence[Case], policy: Policy) -> tuple[Metrics, Metrics]:
    engine = engine_predictions(policy, cases)
    baseline = baseline_predictions(cases)
    both = paired(cases, engine, baseline)
    return metrics(both, engine), metrics(both, baseline)


def timed(call: Callable[[T], object], items: Sequence[T], rounds: int) -> list[float]:
    """µs per call, one sample per round of one call per item."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for item in items:
            call(item)
        samples.append((time.perf_counter() - started) / len(items) * 1e6)
    return samples


def run(rounds: int) -> None:
    policy = default_policy()
    cases = load_cases()
    print(
        f"valuation error benchmark — {platform.node()}, {platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}, policy {policy.version}, {len(cases)} cases"
    )
    engine = engine_predictions(policy, cases)
    baseline = baseline_predictions(cases)
    print(
        "  E = engine (default policy), B = leave-one-out category median; abE/abB = abstentions;"
        " paired metrics over the cases both answer"
    )

    header("overall")
    row("all cases", cases, engine, baseline)
    e, b = summary(cases, policy)
    print(
        f"  ratio engine / baseline (paired, n={e.n}): MAE {e.mae / b.mae:.2f}, MdAPE {e.mdape / b.mdape:.2f}"
    )
    for key, title in (
        ("category", "per category"),
        ("market", "per market"),
        ("label_kind", "per kind of label"),
    ):
        header(title)
        for name, members in groups(cases, key).items():
            row(name, members, engine, baseline)

    print()
    print("sensitivity (paired engine vs baseline; defaults apply to assumed fields only)")
    print(
        f"  {'assumption':<40} {'MAE E':>6} {'MAE B':>6} {'E/B':>5}  {'MdAPE E':>7}  {'±20% E':>7}"
    )
    for age in (6, 12, 24):
        for condition in ("9成新以上", "9成新", "8成新"):
            e, b = summary(with_assumptions(cases, age, condition), policy)
            mark = "  ← stored" if (age, condition) == (12, "9成新") else ""
            print(
                f"  {f'age {age} months, {condition}':<40} {e.mae:6.1f} {b.mae:6.1f} {e.mae / b.mae:5.2f}"
                f"  {pct(e.mdape)}  {pct(e.within)}{mark}"
            )
    e, b = summary(at_exchange_rate(cases, FX_CNY_PER_USD), policy)
    print(
        f"  {f'US at market rate {FX_CNY_PER_USD} ¥/$ (not PPP {PPP_CNY_PER_USD})':<40} {e.mae:6.1f} {b.mae:6.1f}"
        f" {e.mae / b.mae:5.2f}  {pct(e.mdape)}  {pct(e.within)}"
    )

    inputs = [c.inputs for c in cases]
    ids = [c.id for c in cases]
    medians = {i: baseline[i] for i in ids}
    per_round = len(cases)
    engine_us = timed(lambda given: value(policy, given), inputs, rounds)
    base_us = timed(medians.__getitem__, ids, rounds)
    print()
    print(f"cost per call ({rounds} rounds of {per_round} calls)")
    m_engine, m_base = statistics.median(engine_us), statistics.median(base_us)
    print(
        f"  {'value(policy, inputs)':<44} median {m_engine:8.2f} µs  p99 {percentile(engine_us, 0.99):8.2f} µs"
    )
    print(
        f"  {'baseline: lookup of the category median':<44} median {m_base:8.2f} µs  p99 {percentile(base_us, 0.99):8.2f} µs"
    )
    print(
        f"  ratio value() / baseline (median)            {m_engine / m_base:6.1f}  (target: value() ≤ 50 µs)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    run(parser.parse_args().rounds)
