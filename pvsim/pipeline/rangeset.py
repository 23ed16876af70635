"""Which readings are already in the CSV: the memory behind exactly-once.

Per meter, the instants written are kept as sorted, disjoint, inclusive ranges. An in-order
stream only ever extends the last range (O(1)), so months of 1-second readings cost one range per
outage, not one entry per reading; an out-of-order arrival inserts or merges a range by bisection.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable


class RangeSet:
    """A set of integers stored as sorted disjoint [start, end] ranges; touching ranges merge."""

    __slots__ = ("_starts", "_ends")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def __contains__(self, x: int) -> bool:
        ends = self._ends
        if not ends or x > ends[-1]:  # the in-order fast path: past everything held
            return False
        i = bisect.bisect_right(self._starts, x) - 1
        return i >= 0 and x <= self._ends[i]

    def __len__(self) -> int:
        return len(self._starts)

    @property
    def high(self) -> int | None:
        """The highest member: the high-water mark of an in-order stream."""
        return self._ends[-1] if self._ends else None

    def add(self, x: int) -> bool:
        """Add x; return False when it was already present."""
        ends, starts = self._ends, self._starts
        if ends and x > ends[-1]:  # the in-order fast path
            if x == ends[-1] + 1:
                ends[-1] = x
            else:
                starts.append(x)
                ends.append(x)
            return True
        i = bisect.bisect_right(starts, x) - 1
        if i >= 0 and x <= ends[i]:
            return False
        joins_left = i >= 0 and x == ends[i] + 1
        joins_right = i + 1 < len(starts) and starts[i + 1] == x + 1
        if joins_left and joins_right:
            ends[i] = ends[i + 1]
            del starts[i + 1], ends[i + 1]
        elif joins_left:
            ends[i] = x
        elif joins_right:
            starts[i + 1] = x
        else:
            starts.insert(i + 1, x)
            ends.insert(i + 1, x)
        return True

    def update(self, xs: Iterable[int]) -> None:
        """Add every x of xs."""
        add = self.add
        for x in xs:
            add(x)

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends))
