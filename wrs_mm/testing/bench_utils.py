"""Measurement helpers shared by ``benchmarks/`` and the tests: alternating
timings (ratios within one run, never absolute numbers) and counts of the
multi-tensor ops and kernel launches of a call."""
import statistics
import time

import torch


def sync(device=None) -> None:
    """Wait for ``device``'s queued work (CUDA; nothing on the CPU)."""
    if torch.device(device or 'cpu').type == 'cuda':
        torch.cuda.synchronize(device)


def alternate(fns: dict, rounds: int, device=None, warmup: int = 2) -> dict:
    """Median and interquartile spread (seconds) of each callable over
    ``rounds`` rounds after ``warmup``; every round calls each once, the
    first callable moving one place on each round, so that machine drift
    hits all alike."""
    times = {k: [] for k in fns}
    names = list(fns)
    for i in range(rounds + warmup):
        shift = i % len(names)
        for k in names[shift:] + names[:shift]:
            sync(device)
            t = time.perf_counter()
            fns[k]()
            sync(device)
            if i >= warmup:
                times[k].append(time.perf_counter() - t)
    out = {}
    for k, ts in times.items():
        q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
        out[k] = dict(median=statistics.median(ts), q1=q[0], q3=q[2])
    return out


def count_ops(fn, cuda: bool = False) -> dict:
    """``aten::_foreach_*`` ops of one call of ``fn``, and with ``cuda`` its
    CUDA kernel launches (``kernel_launches``)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        fn()
        sync('cuda' if cuda else None)
    events = prof.key_averages()
    out = dict(
        foreach_ops=sum(
            e.count for e in events if e.key.startswith('aten::_foreach_')))
    if cuda:
        out['kernel_launches'] = sum(
            e.count for e in events if e.key.startswith('cudaLaunchKernel'))
    return out
