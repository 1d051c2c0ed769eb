"""Small-scale study: WRS versus weight decay on a BN CNN (Liu et al. 2021
Table 1, Fig. 7).

    python benchmarks/study_wrs_vs_wd.py [--seeds 5] [--epochs 60]
        [--out docs/study_wrs_vs_wd.json] [--plot docs/study_norms.png]

Data: scikit-learn's bundled digits (1797 real 8x8 handwritten digits,
offline): 1000 train / 200 validation / 597 test, fixed stratified split.
Model: a VGG-style CNN where every conv is followed by BatchNorm (as Liu et al.
2021 does), global average pool, linear classifier. Batch 100, lr x0.1 at 50 %
and 75 % of training. Optimizers: SGD-momentum (lr 0.05, m 0.9) and AdamW (lr
1e-3). Regimes: none; WD (lambda 5e-4 on all weights and BN gammas, Liu et al.
2021's value, L2 in SGD, decoupled in AdamW); WRS (every conv rescaled to unit
norm per channel every tau steps, tau in {10, 20, 40} chosen on validation,
lambda 5e-4 on BN gammas and the classifier); and the time windows of Liu et
al. 2021 Fig. 7: WD / WRS only after the first lr decay. Every regime uses the
same seeds (same init and data order), so WRS - WD is a paired comparison
(:func:`wrs_mm.apis.paired_study.paired_difference`, as every study here).
Prints JSON and a table, and draws per-layer conv norms over training (seed 0).
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from wrs_mm.apis.paired_study import paired_difference
from wrs_mm.core import RowEntry, WeightRescaler, analyze_invariance

TAUS = (10, 20, 40)


def data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16.
    x = (x - x.mean()) / x.std()
    y = torch.tensor(y)
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=597, stratify=y, random_state=0)
    tr, va = train_test_split(
        tr, test_size=200, stratify=y[tr], random_state=0)
    return {
        k: (x[i], y[i])
        for k, i in (('train', tr), ('val', va), ('test', te))
    }


def make_net():

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(*block(1, 32), *block(32, 32), nn.MaxPool2d(2),
                         *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
                         *block(64, 128), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(128, 10))


def accuracy(net, x, y):
    net.eval()
    with torch.no_grad():
        acc = (net(x).argmax(1) == y).float().mean().item()
    net.train()
    return acc


def train(d, opt_name, regime, tau, seed, epochs, record=False):
    """One run; regime in none / wd / wrs / wd_late / wrs_late."""
    torch.manual_seed(seed)
    net = make_net().train()
    xtr, ytr = d['train']
    report = analyze_invariance(
        net, lambda: F.cross_entropy(net(xtr[:100]), ytr[:100]))
    inv = report.invariant()
    params = dict(net.named_parameters())
    inv_ids = {id(params[v.name]) for v in inv}
    rest = [p for p in net.parameters() if id(p) not in inv_ids]
    wrs = regime.startswith('wrs')
    steps_per_epoch = -(-len(ytr) // 100)
    total = epochs * steps_per_epoch
    decay_at = (total // 2, total * 3 // 4)
    lam = 5e-4
    groups = [
        dict(params=[params[v.name] for v in inv], weight_decay=0.),
        dict(params=rest, weight_decay=0.)
    ]
    if opt_name == 'sgdm':
        opt = torch.optim.SGD(groups, lr=0.05, momentum=0.9)
    else:
        opt = torch.optim.AdamW(groups, lr=1e-3)
    rescale = WeightRescaler(
        [RowEntry(v.name, params[v.name], v.rows)
         for v in inv]) if wrs else None
    gen = torch.Generator().manual_seed(seed)
    norms, step = [], 0
    for _ in range(epochs):
        perm = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(ytr), 100):
            active = regime != 'none' and (not regime.endswith('late')
                                           or step >= decay_at[0])
            groups_wd = (0. if wrs else lam, lam) if active else (0., 0.)
            for g, wd in zip(opt.param_groups, groups_wd):
                g['weight_decay'] = wd
            if step in decay_at:
                for g in opt.param_groups:
                    g['lr'] *= 0.1
            b = perm[i:i + 100]
            opt.zero_grad()
            F.cross_entropy(net(xtr[b]), ytr[b]).backward()
            opt.step()
            step += 1
            if rescale is not None and active and step % tau == 0:
                rescale()
        if record:
            norms.append([
                params[v.name].detach().flatten(1).norm(dim=1).mean().item()
                for v in inv
            ])
    return dict(
        val=accuracy(net, *d['val']),
        test=accuracy(net, *d['test']),
        norms=norms,
        layers=[v.name for v in inv])


def summarize(results, opt_name, regime):
    accs = [r['test'] for r in results[opt_name][regime]]
    return statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 \
        else 0.


def plot(curves, path, epochs):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(
        1,
        len(curves),
        figsize=(4 * len(curves), 3.2),
        sharey=True,
        squeeze=False)
    for ax, (title, c) in zip(axes[0], curves.items()):
        arr = np.array(c['norms'])
        for j in range(arr.shape[1]):
            ax.plot(range(1, epochs + 1), arr[:, j], label=f'conv {j + 1}')
        ax.set_yscale('log')
        ax.set_title(title, fontsize=9)
        ax.set_xlabel('epoch')
    axes[0][0].set_ylabel('mean channel norm')
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seeds', type=int, default=5)
    ap.add_argument('--epochs', type=int, default=60)
    ap.add_argument('--out', default='docs/study_wrs_vs_wd.json')
    ap.add_argument('--plot', default='docs/study_norms.png')
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.time()
    d = data()
    seeds = range(args.seeds)
    results = {}
    for opt_name in ('sgdm', 'adamw'):
        r = results[opt_name] = {}
        for regime in ('none', 'wd', 'wd_late'):
            r[regime] = [
                train(
                    d,
                    opt_name,
                    regime,
                    1,
                    s,
                    args.epochs,
                    record=(s == 0 and opt_name == 'sgdm')) for s in seeds
            ]
        for tau in TAUS:
            r[f'wrs_tau{tau}'] = [
                train(
                    d,
                    opt_name,
                    'wrs',
                    tau,
                    s,
                    args.epochs,
                    record=(s == 0 and opt_name == 'sgdm')) for s in seeds
            ]
        best = max(
            TAUS,
            key=lambda t: statistics.mean(x['val'] for x in r[f'wrs_tau{t}']))
        r['best_tau'] = best
        r['wrs'] = r[f'wrs_tau{best}']
        r['wrs_late'] = [
            train(d, opt_name, 'wrs_late', best, s, args.epochs) for s in seeds
        ]
    rows = []
    print(f"\n{'optimizer':<8} {'regime':<14} {'test acc mean':>13} "
          f"{'std':>6}")
    for opt_name, r in results.items():
        for regime in ['none', 'wd', 'wd_late'
                       ] + [f'wrs_tau{t}' for t in TAUS] + ['wrs_late']:
            m, s = summarize(results, opt_name, regime)
            rows.append(
                dict(
                    optimizer=opt_name,
                    regime=regime,
                    mean=m,
                    std=s,
                    test=[x['test'] for x in r[regime]],
                    val=[x['val'] for x in r[regime]]))
            print(f'{opt_name:<8} {regime:<14} {m:>13.4f} {s:>6.4f}')
    paired = {}
    for opt_name, r in results.items():
        p = paired[opt_name] = dict(
            best_tau=r['best_tau'],
            **paired_difference(
                dict(enumerate(x['test'] for x in r['wrs'])),
                dict(enumerate(x['test'] for x in r['wd']))))
        print(f"{opt_name}: WRS (tau={p['best_tau']}, chosen on validation) - "
              f"WD = {p['mean']:+.4f}, 95 % CI [{p['ci95'][0]:+.4f}, "
              f"{p['ci95'][1]:+.4f}] over {len(p['seeds'])} paired seeds "
              f"(WRS better in {p['wins']}, ties {p['ties']})")
    sg = results['sgdm']
    plot(
        {
            'SGDM, no regularization': sg['none'][0],
            'SGDM + WD': sg['wd'][0],
            f"SGDM + WRS (tau={sg['best_tau']})":
            sg[f"wrs_tau{sg['best_tau']}"][0]
        }, args.plot, args.epochs)
    out = dict(
        seconds=time.time() - t0,
        epochs=args.epochs,
        seeds=args.seeds,
        rows=rows,
        paired=paired)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(out, f, indent=1)
    print(f"{out['seconds']:.0f} s; {args.out}, {args.plot}")


if __name__ == '__main__':
    main()
