"""The statistics of a paired study: each run's final value
(:func:`final_values`), per arm the mean over seeds and the paired difference
to the baseline with its two-sided 95 % Student-t interval
(:func:`paired_difference`, :func:`summarize`), and the runs of an earlier
study added to this one's (:func:`reuse_runs`)."""
import statistics
from typing import Dict


def paired_difference(values: Dict[int, float], baseline: Dict[int,
                                                               float]) -> dict:
    """Mean of ``values[s] - baseline[s]`` over the seeds both have, with a
    two-sided 95 % t interval (NaN for one seed), wins / ties / losses."""
    seeds = sorted(set(values) & set(baseline))
    d = [values[s] - baseline[s] for s in seeds]
    n = len(d)
    mean = statistics.mean(d) if d else float('nan')
    sd = statistics.stdev(d) if n > 1 else 0.
    if n > 1:
        from scipy import stats
        half = float(stats.t.ppf(0.975, n - 1)) * sd / n**.5
    else:
        half = float('nan')
    return dict(
        mean=mean,
        std=sd,
        ci95=[mean - half, mean + half],
        wins=sum(x > 0 for x in d),
        ties=sum(x == 0 for x in d),
        losses=sum(x < 0 for x in d),
        seeds=seeds,
        diffs=d)


def final_values(curves: Dict[str, Dict[int, list]]) -> Dict[str, dict]:
    """``{arm: {seed: last value}}`` of ``{arm: {seed: curve}}``."""
    return {
        a: {
            s: c[-1][1]
            for s, c in by_seed.items()
        }
        for a, by_seed in curves.items()
    }


def reuse_runs(curves: Dict[str, Dict[int, list]],
               previous: Dict[str, Dict[int, list]]) -> tuple:
    """``curves`` with the runs of ``previous`` (the curves of an earlier
    study of the same arms) that it lacks, and ``{'<arm>_seed<s>': largest
    difference}`` of the runs both have (0 when training is bitwise
    reproducible)."""
    merged = {a: dict(by_seed) for a, by_seed in curves.items()}
    reproduced = {}
    for arm, by_seed in previous.items():
        for s, old in by_seed.items():
            mine = merged.setdefault(arm, {}).get(s)
            if mine is None:
                merged[arm][s] = old
            else:
                reproduced[f'{arm}_seed{s}'] = max(
                    abs(x[1] - y[1]) for x, y in zip(mine, old))
    return merged, reproduced


def summarize(finals: Dict[str, Dict[int, float]], baseline: str,
              metric: str) -> dict:
    """Per arm: its per-seed final values, mean / std, and the paired
    difference to ``baseline``."""
    if baseline not in finals:
        raise ValueError(f'paired study: baseline arm {baseline!r} has no '
                         f'results; arms with results: {sorted(finals)}')
    arms = {}
    for name, vals in finals.items():
        v = list(vals.values())
        arms[name] = dict(
            values={
                str(s): x
                for s, x in sorted(vals.items())
            },
            mean=statistics.mean(v),
            std=statistics.stdev(v) if len(v) > 1 else 0.,
            n=len(v),
            vs_baseline=None if name == baseline else paired_difference(
                vals, finals[baseline]))
    return dict(metric=metric, baseline=baseline, arms=arms)
