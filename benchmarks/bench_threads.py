"""One vs two intra-op threads for a head trained on cached features (issue 12.5).

    python benchmarks/bench_threads.py

A linear head (512 -> 10: resnet18's linear probe; 2048 -> 1000: a large one) trained with AdamW
for 45 steps of batch 32 drawn from 1,438 cached feature rows, the work of one cached epoch on the
digits. One and two threads alternate, 7 repetitions each; prints the medians. Asserts nothing.
"""

from __future__ import annotations

import statistics
import time

import torch


def epoch(inputs: int, outputs: int, threads: int, steps: int = 45) -> float:
    torch.manual_seed(0)
    head = torch.nn.Linear(inputs, outputs)
    optimizer = torch.optim.AdamW(head.parameters(), 1e-3)
    x, y = torch.randn(1438, inputs), torch.randint(0, outputs, (1438,))
    torch.set_num_threads(threads)
    start = time.perf_counter()
    for _ in range(steps):
        index = torch.randint(0, 1438, (32,))
        loss = torch.nn.functional.cross_entropy(head(x.index_select(0, index)), y.index_select(0, index))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    import os

    print(f"# python benchmarks/bench_threads.py (load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores)")
    for inputs, outputs in ((512, 10), (2048, 1000)):
        times: dict[int, list[float]] = {1: [], 2: []}
        for rep in range(7):
            for threads in ((1, 2) if rep % 2 else (2, 1)):
                times[threads].append(epoch(inputs, outputs, threads))
        print(f"head {inputs} -> {outputs}, 45 steps: 1 thread {statistics.median(times[1]) * 1000:,.0f} ms, "
              f"2 threads {statistics.median(times[2]) * 1000:,.0f} ms (medians of 7)")


if __name__ == "__main__":
    main()
