"""Benchmark: what the config loader costs at its caps, and what it refuses how fast.

    PYTHONPATH=. python3 bench/bench_config.py

Times config.parse on files at and beyond the loader's caps (pvsim/config/safeyaml.py, MAX_*): 100,000
meter ids (the issue's case: 143 s before, the uniqueness check was quadratic), the same with an
account each, with ids of the longest kind (the 16 MiB cap is sized for it), and the hostile
shapes: the 442-byte alias bomb (33 s and 3 GB before), 5,000 levels of nesting, a million
values in one list, 16 MiB of one string. Prints one line per case: its size, the time, and what
the loader said. Figures, not assertions: the tests assert the outcomes, this shows the costs.
"""

from __future__ import annotations

import time

from pvsim import config


def ids(n: int, width: int = 12) -> list[str]:
    return [f"m{'x' * (width - 7)}{i:06d}" for i in range(n)]


def fleet(n: int, width: int = 12, accounts: bool = False) -> str:
    text = "meter:\n  id:\n" + "".join(f"    - {m}\n" for m in ids(n, width))
    if accounts:
        text += "pricing:\n  accounts:\n" + "".join(f"    {m}: price-plan-1\n"
                                                    for m in ids(n, width))
    return text


def bomb() -> str:
    items = ["&x0 lol"] + [f"&x{i} [" + ",".join([f"*x{i - 1}"] * 9) + "]" for i in range(1, 11)]
    return f"log_level: [{', '.join(items)}]\n"


CASES = {
    "100,000 meter ids": lambda: fleet(100_000),
    "100,000 meter ids, an account each": lambda: fleet(100_000, accounts=True),
    "100,000 64-character ids, an account each": lambda: fleet(100_000, 64, accounts=True),
    "alias bomb (9^10 values)": bomb,
    "5,000 levels of nesting": lambda: "log_level: " + "[" * 5000 + "]" * 5000,
    "1,000,001 values in one list": lambda: "meter:\n  id: [" + "a," * 1_000_000 + "a]\n",
    "16 MiB of one string": lambda: "timezone: " + "x" * (config.MAX_FILE_BYTES - 20) + "\n",
}


def main() -> None:
    for name, make in CASES.items():
        text = make()
        began = time.perf_counter()
        try:
            cfg = config.parse(text, "bench.yaml")
            outcome = f"loaded: {len(cfg.meter.id):,} meters"
        except config.ConfigError as exc:
            outcome = f"refused: {str(exc)[:110]}"
        took = time.perf_counter() - began
        print(f"{name:<44} {len(text.encode()) / 2**20:7.2f} MiB {took:7.2f} s  {outcome}")


if __name__ == "__main__":
    main()
