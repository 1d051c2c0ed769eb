"""Input-space-projection sparsity of conv kernels (Liu et al. 2021, Sec. 4.2,
Fig. 5-6).

    python tools/analysis/isp_sparsity.py CONFIG CHECKPOINT --layers NAME ...
        [--batches 8] [--out-dir isp/] [--cfg-options k=v ...]

For each chosen conv (module names, e.g. ``backbone.layer3.0.conv2``), collects
its input patches over ``--batches`` training batches of the config's train
dataloader into a streaming d x d covariance (d = in_channels x kh x kw),
eigendecomposes it, projects every output channel's kernel onto the
eigenvectors, and fits a generalized Gaussian to the projected coordinates and
to the raw parameters. A smaller shape beta is a sparser, more peaked
distribution (beta 2: Gaussian, 1: Laplacian). Writes ``isp_sparsity.json``
and ``isp_sparsity.png`` (histograms, log scale) to ``--out-dir`` and prints a
table.
"""
import argparse
import json
import os
import os.path as osp
import sys

import matplotlib
import torch
from mmengine.config import DictAction

from wrs_mm.apis import (allow_full_checkpoint_load, build_from_config,
                         load_config)
from wrs_mm.core.isp import PatchCovariance, fit_ggd_beta, project_kernels

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def covariances(model, batches, loss, layers, n: int) -> dict:
    """``{name: PatchCovariance}`` of the convs ``layers`` over ``n``
    training batches."""
    modules = dict(model.named_modules())
    covs, handles = {}, []
    for name in layers:
        conv = modules.get(name)
        if not isinstance(conv, torch.nn.Conv2d):
            raise SystemExit(f'--layers: {name!r} is not a Conv2d of the '
                             'model (see tools/analysis/analyze_invariance.py '
                             'for the names)')
        covs[name] = PatchCovariance(conv)
        handles.append(
            conv.register_forward_hook(
                lambda m, inp, out, c=covs[name]: c.update(inp[0])))
    with torch.no_grad():
        for _ in range(n):
            loss(next(batches))
    for h in handles:
        h.remove()
    return covs


def sparsity(name: str, cov, ax) -> dict:
    """One conv's record (input span, beta of the projected and of the raw
    kernels), its histograms drawn on ``ax``."""
    vals, vecs = cov.eig()
    proj = project_kernels(cov.conv.weight, vecs)
    raw = cov.conv.weight.detach().double().flatten()
    record = dict(
        layer=name,
        dim=cov.dim,
        patches=cov.count,
        input_span_dim=int((vals > vals[0] * 1e-6).sum()),
        beta_projected=fit_ggd_beta(proj),
        beta_raw=fit_ggd_beta(raw))
    for data, label in ((raw, 'raw'), (proj.flatten(), 'projected')):
        x = (data / data.std()).cpu().numpy()
        ax.hist(
            x,
            bins=200,
            range=(-6, 6),
            density=True,
            histtype='step',
            log=True,
            label=label)
    ax.set_title(
        f"{name}\nbeta proj {record['beta_projected']:.2f}, "
        f"raw {record['beta_raw']:.2f}",
        fontsize=8)
    ax.legend(fontsize=7)
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('config')
    ap.add_argument('checkpoint')
    ap.add_argument(
        '--layers', nargs='+', required=True, help='conv module names')
    ap.add_argument('--batches', type=int, default=8)
    ap.add_argument('--out-dir', default='isp')
    ap.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = ap.parse_args(argv)
    allow_full_checkpoint_load()
    cfg = load_config(args.config, args.cfg_options)
    model, batches, loss = build_from_config(
        cfg, args.checkpoint, pretrained=False)  # the checkpoint's weights
    covs = covariances(model, batches, loss, args.layers, args.batches)
    os.makedirs(args.out_dir, exist_ok=True)
    fig, axes = plt.subplots(
        1, len(covs), figsize=(4 * len(covs), 3.2), squeeze=False)
    layers = [
        sparsity(name, cov, ax)
        for ax, (name, cov) in zip(axes[0], covs.items())
    ]
    fig.tight_layout()
    fig.savefig(osp.join(args.out_dir, 'isp_sparsity.png'), dpi=110)
    with open(osp.join(args.out_dir, 'isp_sparsity.json'), 'w') as f:
        json.dump(
            dict(
                config=args.config,
                checkpoint=args.checkpoint,
                batches=args.batches,
                layers=layers),
            f,
            indent=1)
    print(f"{'layer':<40} {'d':>6} {'span':>6} {'patches':>9} "
          f"{'beta proj':>9} {'beta raw':>9}")
    for r in layers:
        print(f"{r['layer']:<40} {r['dim']:>6} {r['input_span_dim']:>6} "
              f"{r['patches']:>9} {r['beta_projected']:>9.3f} "
              f"{r['beta_raw']:>9.3f}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
