"""Ahead-of-time compilation of every specialisation of the fused kernels
(:mod:`.kernels`) for an NVIDIA architecture, without a GPU: Triton's own
compiler and the ``ptxas`` its wheel ships build the cubins, and ``ptxas -v``
reports each one's registers and spills.

    >>> from wrs_mm.core.kernel_build import compile_all
    >>> for r in compile_all(90): print(r)

:func:`specializations` lists what the code can launch: every dtype of
:data:`.kernels.DTYPES`, every flag (``APPLY`` for the rescale: False in
``check_finite='eager'``; ``STANDARDIZED`` x ``COUPLED`` for the shifted
step), each with the generic and the 16-byte-aligned pointer variant that
Triton's launcher picks for torch's allocations.
"""
import itertools
import os
import re
import subprocess
import tempfile
from typing import Dict, Iterator, List

from . import kernels

#: argument types of each kernel (pointers, scalars); constexprs are added
#: per specialisation
SIGNATURES = {
    '_rescale_rows':
    dict(
        addr_ptr='*i64',
        pidx_ptr='*i32',
        start_ptr='*i64',
        len_ptr='*i32',
        target_ptr='*fp32',
        norm_ptr='*fp32'),
    '_shifted_l2_rows':
    dict(
        addr_ptr='*i64',
        gaddr_ptr='*i64',
        coef_ptr='*fp32',
        pidx_ptr='*i32',
        start_ptr='*i64',
        len_ptr='*i32',
        eps='fp32'),
}
FLAGS = {
    '_rescale_rows': ('APPLY', ),
    '_shifted_l2_rows': ('STANDARDIZED', 'COUPLED')
}


def specializations() -> Iterator[dict]:
    """``dict(kernel, dtype, flags, aligned)`` for every variant."""
    for name, flags in FLAGS.items():
        for dtype in kernels.DTYPES:
            for values in itertools.product((False, True), repeat=len(flags)):
                for aligned in (False, True):
                    yield dict(
                        kernel=name,
                        dtype=dtype,
                        flags=dict(zip(flags, values)),
                        aligned=aligned)


def compile_one(spec: dict, capability: int):
    """The compiled kernel of ``spec`` for ``sm_<capability>``."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    fn = getattr(kernels, spec['kernel'])
    args = SIGNATURES[spec['kernel']]
    constexprs = dict(
        DTYPE=kernels._tl_dtype(spec['dtype']),
        BLOCK=kernels.BLOCK,
        **spec['flags'])
    types = dict(args, **{k: 'constexpr' for k in constexprs})
    if set(types) != set(fn.arg_names):
        raise RuntimeError(f"kernel_build.SIGNATURES['{spec['kernel']}'] "
                           f'{sorted(types)} does not match the kernel '
                           f'arguments {fn.arg_names}')
    signature = {a: types[a] for a in fn.arg_names}
    attrs = {
        (i, ): [['tt.divisibility', 16]]
        for i, t in enumerate(signature.values()) if t.startswith('*')
    } if spec['aligned'] else None
    return triton.compile(
        ASTSource(fn, signature, constexprs, attrs),
        target=GPUTarget('cuda', capability, 32))


def resources(ptx: str, capability: int) -> Dict[str, int]:
    """Registers, spill stores / loads and stack of a PTX module, from
    ``ptxas -v`` (Triton's bundled ptxas)."""
    from triton.backends.nvidia.compiler import get_ptxas
    arch = f'sm_{capability}' + ('a' if capability >= 90 else '')
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, 'k.ptx')
        with open(path, 'w') as f:
            f.write(ptx)
        out = subprocess.run([
            get_ptxas(capability).path, '-v', f'-arch={arch}', path, '-o',
            os.path.join(d, 'k.cubin')
        ],
                             capture_output=True,
                             text=True,
                             check=True).stderr

    def number(pattern: str) -> int:
        m = re.search(pattern, out)
        return int(m.group(1)) if m else 0

    return dict(
        registers=number(r'Used (\d+) registers'),
        spill_stores=number(r'(\d+) bytes spill stores'),
        spill_loads=number(r'(\d+) bytes spill loads'),
        stack=number(r'(\d+) bytes stack frame'))


def compile_all(capability: int) -> List[dict]:
    """Compile every specialisation; one row per variant with its cubin
    size and :func:`resources`. A compile error raises, naming the
    variant."""
    rows = []
    for spec in specializations():
        name = (f"{spec['kernel']}[{str(spec['dtype']).split('.')[1]}, " +
                ', '.join(f'{k}={v}' for k, v in spec['flags'].items()) +
                (', aligned' if spec['aligned'] else '') + ']')
        try:
            k = compile_one(spec, capability)
        except Exception as e:
            raise RuntimeError(f'{name} failed to compile for sm_{capability}:'
                               f' {e}') from e
        rows.append(
            dict(
                name=name,
                sm=capability,
                cubin_bytes=len(k.asm['cubin']),
                **resources(k.asm['ptx'], capability)))
    return rows
