"""Plot the weight-norm dynamics recorded by ``NormDynamicsHook``.

    python tools/analysis/plot_norm_dynamics.py WORK_DIR [WORK_DIR ...]
        [--labels WD WRS] [--layers REGEX] [--out norm_dynamics.png]

One column per work dir (e.g. WD vs WRS vs none side by side), three rows:
per-layer mean channel norm over iterations (Liu et al. 2021 Fig. 2/3),
effective learning rate lr/||w||^2 (Li et al. Fig. 2) and mean |cos(w, grad)|
(Liu et al. 2021 Thm 3.1).
"""
import argparse

from wrs_mm.apis import plot_norm_dynamics


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('work_dirs', nargs='+')
    ap.add_argument('--labels', nargs='+')
    ap.add_argument('--layers', help='regex selecting the layers to draw')
    ap.add_argument('--out', default='norm_dynamics.png')
    args = ap.parse_args()
    if args.labels and len(args.labels) != len(args.work_dirs):
        ap.error('--labels needs one label per work dir')
    n = plot_norm_dynamics(args.work_dirs, args.labels, args.layers, args.out)
    print(f'{args.out}: {n} layers x {len(args.work_dirs)} runs')


if __name__ == '__main__':
    main()
