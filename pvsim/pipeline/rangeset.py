"""Which readings are already in the CSV: the memory behind exactly-once.

Per meter (and local day, see pvservice), the instants written are kept as sorted, disjoint,
inclusive ranges. An in-order stream only ever extends the last range (O(1)), so months of
1-second readings cost one range per outage, not one entry per reading.

An out-of-order arrival is not inserted into the sorted lists one at a time: that shifts every
range after it, and 100,000 sparse readings in descending order took 14 s (quadratic). It waits
in a small hash set (`_late`, consulted by membership) until the set holds an eighth of the
ranges (at least 64), and then all of them are merged in at once: sorted, and the lists rebuilt
from slices in one pass. Each merge costs O(ranges + k log k) for k late arrivals with
k > ranges / 8, so any sequence of n additions costs O(n log n) in all, amortised.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

MERGE_MIN = 64     # late arrivals held before a merge, at least
MERGE_SHARE = 8    # ... and at least one per this many ranges held


class RangeSet:
    """A set of integers stored as sorted disjoint [start, end] ranges; touching ranges merge.

    The two lists are updated in place (never replaced), so a view of them stays valid."""

    __slots__ = ("_starts", "_ends", "_late")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._late: set[int] | None = None  # out-of-order members not merged yet (None: none)

    def __contains__(self, x: int) -> bool:
        ends = self._ends
        if not ends or x > ends[-1]:  # the in-order fast path: past everything held
            return False
        late = self._late
        if late and x in late:
            return True
        i = bisect.bisect_right(self._starts, x) - 1
        return i >= 0 and x <= ends[i]

    def __len__(self) -> int:
        """The number of ranges."""
        self.settle()
        return len(self._starts)

    def add(self, x: int) -> bool:
        """Add x; return False when it was already present."""
        ends = self._ends
        if ends and x > ends[-1]:  # the in-order fast path
            if x == ends[-1] + 1:
                ends[-1] = x
            else:
                self._starts.append(x)
                ends.append(x)
            return True
        if not ends:
            self._starts.append(x)
            ends.append(x)
            return True
        late = self._late
        if late is not None and x in late:
            return False
        i = bisect.bisect_right(self._starts, x) - 1
        if i >= 0 and x <= ends[i]:
            return False
        if late is None:
            late = self._late = set()  # an in-order stream never pays for one
        late.add(x)
        if len(late) >= MERGE_MIN and len(late) * MERGE_SHARE >= len(ends):
            self.settle()
        return True

    def update(self, xs: Iterable[int]) -> None:
        """Add every x of xs."""
        add = self.add
        for x in xs:
            add(x)

    def settle(self) -> None:
        """Merge the late arrivals into the ranges: one pass over the lists, whose unchanged
        stretches are copied as slices (C speed)."""
        late = self._late
        if not late:
            return
        runs = _runs(sorted(late))
        self._late = None
        starts, ends = self._starts, self._ends
        out_s: list[int] = []
        out_e: list[int] = []
        pos, n = 0, len(starts)
        for a, b in runs:
            j = bisect.bisect_left(starts, a, pos)  # ranges before this run: [pos, j)
            if j > pos:
                out_s.extend(starts[pos:j])
                out_e.extend(ends[pos:j])
                pos = j
            if out_e and out_e[-1] + 1 == a:  # touches the range before it
                out_e[-1] = b
            else:
                out_s.append(a)
                out_e.append(b)
            if pos < n and starts[pos] == b + 1:  # touches the range after it
                out_e[-1] = ends[pos]
                pos += 1
        if pos < n:
            out_s.extend(starts[pos:])
            out_e.extend(ends[pos:])
        starts[:] = out_s
        ends[:] = out_e

    def ranges(self) -> list[tuple[int, int]]:
        self.settle()
        return list(zip(self._starts, self._ends))


def _runs(xs: list[int]) -> list[tuple[int, int]]:
    """Sorted distinct integers as maximal runs of consecutive ones."""
    runs: list[tuple[int, int]] = []
    a = b = xs[0]
    for x in xs[1:]:
        if x != b + 1:
            runs.append((a, b))
            a = x
        b = x
    runs.append((a, b))
    return runs
