"""The config tables of the model zoo page (``docs/en/model_zoo.md``), made
from the model index (``model-index.yml`` and each family's
``metafile.yml``), so that the two cannot disagree.

    python tools/misc/config_table.py            # print every table
    python tools/misc/config_table.py --update docs/en/model_zoo.md

``--update`` rewrites each block of the page that starts with
``<!-- config-table: FAMILY ... -->`` and ends with ``<!-- /config-table -->``
(FAMILY: a folder under ``configs/``); the tests check the page is up to
date.
"""
import argparse
import os.path as osp
import re
import sys

import yaml

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BLOCK = re.compile(
    r'(<!-- config-table: ([\w ]+) -->\n)(.*?)(<!-- /config-table -->)', re.S)


def models(root: str = ROOT) -> dict:
    """Family (folder under configs/) -> its metafile's models, in order."""
    with open(osp.join(root, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    out = {}
    for path in index['Import']:
        with open(osp.join(root, path)) as f:
            out[path.split('/')[1]] = yaml.safe_load(f)['Models']
    return out


def table(families, index: dict) -> str:
    rows = [
        '| config | setting | paper number it targets (a figure of the '
        'paper, not measured here) | measured here |', '|---|---|---|---|'
    ]
    for family in families:
        if family not in index:
            raise KeyError(f'config-table: no metafile for {family!r} in '
                           f'model-index.yml (has {sorted(index)})')
        for m in index[family]:
            if 'Measured Here' not in m:
                raise KeyError(f"config-table: {m['Config']} has no "
                               "'Measured Here' in its metafile (what this "
                               'project measured with it, or that it did not)')
            rows.append(f"| `{m['Config']}` | {m['Metadata']['Setting']} | "
                        f"{m['Paper Target']} | {m['Measured Here']} |")
    return '\n'.join(rows) + '\n'


def update(text: str, index: dict) -> str:
    """``text`` with every config-table block regenerated."""
    return BLOCK.sub(
        lambda m: m.group(1) + table(m.group(2).split(), index) + m.group(4),
        text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--update', metavar='PAGE', help='rewrite its blocks')
    args = ap.parse_args(argv)
    index = models()
    if args.update is None:
        print(table(list(index), index))
        return 0
    with open(args.update) as f:
        text = f.read()
    with open(args.update, 'w') as f:
        f.write(update(text, index))
    return 0


if __name__ == '__main__':
    sys.exit(main())
