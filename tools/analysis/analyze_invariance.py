"""Which weights of a config's model are scale-invariant, and why.

    python tools/analysis/analyze_invariance.py CONFIG [--checkpoint CKPT]
        [--verify] [--out report.json] [--pretrained] [--synthetic-batch H W]
        [--cfg-options k=v ...]

Builds the model and one real batch from the config's train dataloader, runs
the invariance analysis (wrs_mm.core.analyze_invariance) on that training
forward and prints the table (parameter, shape, class, granularity, reason)
and the totals. ``--verify`` also runs the numerical check
(:func:`wrs_mm.core.verify_invariance`): per checked weight ``invariant``,
``not invariant`` or ``cannot tell`` (a warning: the loss barely depends on
the weight at this point); the exit code is 1 only when a measurement
contradicts the analysis. ``--out`` writes all of it as JSON.
"""
import argparse
import json
import os
import os.path as osp
import sys
from collections import Counter

from mmengine.config import DictAction

from wrs_mm.apis import (allow_full_checkpoint_load, build_from_config,
                         load_config)
from wrs_mm.core import analyze_invariance, verify_invariance


def verify(model, loss_fn, report) -> dict:
    """The numerical check of ``report``, printed; its JSON record."""
    result = verify_invariance(model, loss_fn, report)
    print(f'verify: loss {result.loss:.6g}; {result.invariant_count} '
          f'invariant weights rescaled -> relative change '
          f'{result.invariant_rel_change:.2e} (tolerance {result.rtol}); '
          f'{len(result.refused_rel_change)} refused weights perturbed, '
          'smallest change '
          f'{min(result.refused_rel_change.values(), default=0):.2e}')
    counts = result.counts()
    print('verify: ' + ', '.join(f'{k} {n}' for k, n in counts.items()) +
          f' (loss resolution {result.resolution:.1e})')
    for w in result.warnings:
        print('WARNING: ' + w)
    for f in result.failures:
        print('FAILED: ' + f)
    print('verify: ' + ('OK' if result.ok else 'FAILED (a measurement '
                        'contradicts the analysis)'))
    return dict(
        ok=result.ok,
        loss=result.loss,
        invariant_rel_change=result.invariant_rel_change,
        refused_rel_change=result.refused_rel_change,
        outcomes=result.outcomes,
        sensitivity=result.sensitivity,
        warnings=result.warnings,
        failures=result.failures)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('config')
    ap.add_argument('--checkpoint')
    ap.add_argument('--verify', action='store_true')
    ap.add_argument('--out', help='JSON file for the report')
    ap.add_argument(
        '--pretrained',
        action='store_true',
        help="load the config's Pretrained init (a download); by default the "
        'model starts from its random init, which works offline')
    ap.add_argument(
        '--synthetic-batch',
        nargs=2,
        type=int,
        metavar=('H', 'W'),
        help='random H x W images and targets instead of the train '
        'dataloader (mmdet / mmseg configs whose data is not on disk)')
    ap.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = ap.parse_args(argv)
    allow_full_checkpoint_load()
    cfg = load_config(args.config, args.cfg_options)
    model, batches, loss = build_from_config(
        cfg,
        args.checkpoint,
        pretrained=args.pretrained,
        synthetic=args.synthetic_batch)
    batch = next(batches)
    report = analyze_invariance(model, lambda: loss(batch))
    print(report.table())
    kinds = Counter(v.kind for v in report.candidates())
    print(f'\n{len(report)} parameters, {len(report.candidates())} trainable '
          'weights of >= 2 dims: ' +
          ', '.join(f'{k} {n}' for k, n in sorted(kinds.items())))
    out = dict(
        config=args.config,
        checkpoint=args.checkpoint,
        totals=dict(kinds),
        parameters=report.to_json())
    code = 0
    if args.verify:
        out['verify'] = verify(model, lambda: loss(batch), report)
        code = 0 if out['verify']['ok'] else 1
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(out, f, indent=1)
    return code


if __name__ == '__main__':
    sys.exit(main())
