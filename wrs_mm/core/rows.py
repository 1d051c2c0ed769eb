"""Weight tensors viewed as rows, packed into flat buffers for batched per-row
math.

A parameter of shape ``(C, ...)`` split into ``rows`` weight vectors is the
matrix ``p.reshape(rows, -1)``: ``rows = C`` is one vector per output channel,
``rows = G`` one per group of ``C / G`` consecutive channels (GroupNorm),
``rows = 1`` the whole tensor (LayerNorm). ``RowPack`` concatenates many such
parameters into one flat buffer per (device, dtype, tag), ordered by row
length, so that every run of rows with the same length is a single ``(R, L)``
matrix: per-row reductions cost one kernel per distinct row length instead of
one per parameter.
"""
from dataclasses import dataclass, field
from typing import Any, Hashable, List, Optional, Sequence, Tuple

import torch


@dataclass
class RowEntry:
    """One parameter to pack: its name, the tensor and its number of rows."""
    name: str
    param: torch.Tensor
    rows: int
    tag: Hashable = None

    def __post_init__(self):
        if self.rows < 1 or self.param.numel() % self.rows:
            raise ValueError(
                f'parameter {self.name!r} of shape {tuple(self.param.shape)} '
                f'cannot be split into {self.rows} rows')

    @property
    def row_len(self) -> int:
        return self.param.numel() // self.rows


@dataclass
class Bucket:
    """Parameters of one (device, dtype, tag), sorted by row length."""
    entries: List[RowEntry]
    # (first element, end element, row length) of each run of equal row lengths
    segments: List[Tuple[int, int, int]] = field(default_factory=list)
    numels: List[int] = field(default_factory=list)
    row_offsets: List[int] = field(default_factory=list)
    _scratch: dict = field(default_factory=dict)

    def __post_init__(self):
        start = rows = 0
        for e in self.entries:
            n = e.param.numel()
            if self.segments and self.segments[-1][2] == e.row_len:
                a, _, L = self.segments[-1]
                self.segments[-1] = (a, start + n, L)
            else:
                self.segments.append((start, start + n, e.row_len))
            self.numels.append(n)
            self.row_offsets.append(rows)
            start += n
            rows += e.rows
        self.segment_rows = [(b - a) // L for a, b, L in self.segments]
        self._entry_rows = torch.tensor([e.rows for e in self.entries])

    @property
    def params(self) -> List[torch.Tensor]:
        return [e.param for e in self.entries]

    def scratch(self, key: str, dtype: torch.dtype) -> torch.Tensor:
        """A flat buffer of the bucket's size. On CPU it is kept between calls:
        a fresh large allocation there costs page faults on every call (the
        CUDA caching allocator already reuses its blocks)."""
        device = self.entries[0].param.device
        buf = self._scratch.get(key)
        if buf is None or buf.dtype != dtype:
            buf = torch.empty(sum(self.numels), dtype=dtype, device=device)
            if device.type == 'cpu':
                self._scratch[key] = buf
        return buf

    def gather(self) -> torch.Tensor:
        """One flat copy of the parameters (in a scratch buffer)."""
        out = self.scratch('gather', self.entries[0].param.dtype)
        return torch.cat([e.param.detach().reshape(-1) for e in self.entries],
                         out=out)

    def per_row(self, per_entry: Sequence[float]) -> torch.Tensor:
        """One value per entry, repeated over the entry's rows (fp32, CPU)."""
        return torch.tensor(
            per_entry, dtype=torch.float32).repeat_interleave(self._entry_rows)

    def row_views(
            self,
            per_row: torch.Tensor,
            entries: Optional[Sequence[RowEntry]] = None
    ) -> List[torch.Tensor]:
        """``per_row`` (one value per row of ``entries``, default all, in
        entry order) as one tensor per parameter that broadcasts against it
        (a group's value repeated over its channels)."""
        entries = self.entries if entries is None else entries
        out = []
        for v, e in zip(per_row.split([e.rows for e in entries]), entries):
            channels = e.param.shape[0]
            if e.rows not in (1, channels):
                v = v.repeat_interleave(channels // e.rows)
            out.append(v.view((-1, ) + (1, ) * (e.param.dim() - 1)))
        return out

    def matrices(self, flat: torch.Tensor):
        """``(R, L)`` views of ``flat``, one per run of equal row length."""
        return [flat[a:b].view(-1, L) for a, b, L in self.segments]

    def chunks(self, flat: torch.Tensor) -> List[torch.Tensor]:
        """``flat`` split back into tensors shaped like the parameters."""
        return [
            c.view(e.param.shape)
            for c, e in zip(flat.split(self.numels), self.entries)
        ]

    def owner_of_row(self, row: int) -> RowEntry:
        for e, off in zip(reversed(self.entries), reversed(self.row_offsets)):
            if row >= off:
                return e
        raise IndexError(row)


class RowPack:
    """Groups :class:`RowEntry` objects into :class:`Bucket` s."""

    def __init__(self, entries: Sequence[RowEntry]):
        groups: dict = {}
        for e in entries:
            key: Any = (e.param.device, e.param.dtype, e.tag)
            groups.setdefault(key, []).append(e)
        self.buckets = [
            Bucket(sorted(es, key=lambda e: e.row_len))
            for es in groups.values()
        ]
        self.entries = [e for b in self.buckets for e in b.entries]

    def __len__(self) -> int:
        return len(self.entries)
