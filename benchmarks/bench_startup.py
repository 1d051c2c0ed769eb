"""Start-up cost of ``wrs_mm_config_hook.pth`` (the finder that lets mmengine
resolve ``wrs_mm::`` configs before anything imports wrs_mm), as ratios in
the same run.

    python benchmarks/bench_startup.py [--runs 30] [--out FILE]

Each probe runs in a fresh interpreter of this environment, alternating
between the hook on (as installed) and off (``WRS_MM_CONFIG_HOOK=0``: the
``.pth`` line then runs nothing but its environment test), so that machine
drift hits both alike: ``python -c pass`` (every interpreter pays this) and
``import mmengine.config`` (every import passes the finder until mmengine's
config module is loaded). Prints JSON and a table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PROBES = {
    'python -c pass': 'pass',
    'import mmengine.config': 'import mmengine.config',
}


def wall(code: str, hook: bool) -> float:
    env = dict(os.environ, WRS_MM_CONFIG_HOOK='1' if hook else '0')
    t0 = time.perf_counter()
    subprocess.run([sys.executable, '-c', code], env=env, check=True)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--runs', type=int, default=30)
    ap.add_argument('--out')
    args = ap.parse_args(argv)
    out = dict(runs=args.runs, probes={})
    for name, code in PROBES.items():
        on, off = [], []
        wall(code, True)  # warm the file cache
        for _ in range(args.runs):
            on.append(wall(code, True))
            off.append(wall(code, False))
        m_on, m_off = statistics.median(on), statistics.median(off)
        out['probes'][name] = dict(
            hook_on_s=m_on, hook_off_s=m_off, ratio=m_on / m_off)
    print(json.dumps(out, indent=1))
    print(f"\n{'probe':<24} {'hook on (ms)':>12} {'off (ms)':>9} {'ratio':>7}")
    for name, p in out['probes'].items():
        print(f"{name:<24} {1e3 * p['hook_on_s']:>12.1f} "
              f"{1e3 * p['hook_off_s']:>9.1f} {p['ratio']:>7.3f}")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
