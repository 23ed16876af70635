import math
import random

from hypothesis import given, settings, strategies as st

from pvsim.pipeline.rangeset import RangeSet


def test_in_order_stream_is_one_range():
    s = RangeSet()
    assert all(s.add(x) for x in range(1000, 1000 + 86400))
    assert s.ranges() == [(1000, 87399)]


def test_duplicates_are_reported_and_gaps_kept():
    s = RangeSet()
    for x in (1, 2, 3, 10, 11):
        assert s.add(x)
    assert not s.add(2) and not s.add(11)
    assert 5 not in s and 10 in s
    assert s.ranges() == [(1, 3), (10, 11)]


def test_out_of_order_arrivals_merge_ranges():
    s = RangeSet()
    for x in (5, 1, 3, 2, 4):
        assert s.add(x)
    assert s.ranges() == [(1, 5)]


def test_matches_a_plain_set_on_random_input():
    rng = random.Random(1)
    s, ref = RangeSet(), set()
    for _ in range(5000):
        x = rng.randrange(300)
        assert s.add(x) == (x not in ref)
        ref.add(x)
    assert all((x in s) == (x in ref) for x in range(-5, 310))
    flat = [x for a, b in s.ranges() for x in range(a, b + 1)]
    assert flat == sorted(ref)


def test_update_holds_what_add_would_and_membership_agrees():
    rng = random.Random(5)
    for _ in range(200):
        xs = [rng.randrange(0, 60) for _ in range(rng.randrange(0, 40))]
        if rng.random() < 0.5:
            xs.sort()
        one, many = RangeSet(), RangeSet()
        for x in xs:
            one.add(x)
        many.update(xs)
        assert many.ranges() == one.ranges()
        assert [x in many for x in range(-1, 62)] == [x in one for x in range(-1, 62)]


class CountingList(list):
    """A list that counts the elements each operation moves or copies: what `list.insert` at
    the front costs (a shift of every element after it) is invisible to a profiler of Python
    calls, so it is counted here, whatever code drives the list."""

    def __init__(self, *args):
        super().__init__(*args)
        self.moved = 0

    def insert(self, i, x):
        self.moved += max(0, len(self) - max(0, i if i >= 0 else len(self) + i)) + 1
        super().insert(i, x)

    def append(self, x):
        self.moved += 1
        super().append(x)

    def extend(self, xs):
        xs = list(xs)
        self.moved += len(xs)
        super().extend(xs)

    def __getitem__(self, key):
        if isinstance(key, slice):
            self.moved += len(range(*key.indices(len(self))))
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        if isinstance(key, slice):
            value = list(value)
            self.moved += len(value) + len(self) - (key.indices(len(self))[0])
        super().__setitem__(key, value)

    def __delitem__(self, key):
        start = key.indices(len(self))[0] if isinstance(key, slice) else key
        self.moved += len(self) - start
        super().__delitem__(key)


def counted() -> tuple[RangeSet, CountingList, CountingList]:
    s = RangeSet()
    s._starts, s._ends = CountingList(), CountingList()
    return s, s._starts, s._ends


def test_descending_sparse_adds_move_n_log_n_elements_not_n_squared():
    """Issue 18, 6: 100,000 sparse readings in descending order cost 14 s (each insert at the
    front shifted every range). The elements the lists move for n such adds stay within
    8 n log2 n (quadratic would be n^2/2 per list: 100 million here)."""
    n = 20_000
    s, starts, ends = counted()
    for x in range(2 * n, 0, -2):
        assert s.add(x)
    assert len(s) == n and s.ranges()[:2] == [(2, 2), (4, 4)]
    moved = starts.moved + ends.moved
    assert moved <= 8 * n * math.log2(n), moved
    assert all(x in s for x in range(2, 2 * n + 1, 2)) and not any(x in s for x in range(1, 2 * n, 2))


def test_any_order_of_adds_moves_n_log_n_elements():
    rng = random.Random(18)
    for order in ("shuffled", "descending pairs", "interleaved"):
        n = 10_000
        xs = list(range(0, 3 * n, 3))
        if order == "shuffled":
            rng.shuffle(xs)
        elif order == "descending pairs":
            xs = [x for i in range(n - 1, -1, -2) for x in (3 * i, 3 * i + 1)]
        else:
            xs = xs[::2] + xs[1::2][::-1]
        s, starts, ends = counted()
        ref = set()
        for x in xs:
            assert s.add(x) == (x not in ref)
            ref.add(x)
        assert starts.moved + ends.moved <= 8 * n * math.log2(n), order
        flat = [x for a, b in s.ranges() for x in range(a, b + 1)]
        assert flat == sorted(ref), order


def test_late_arrivals_merge_with_the_ranges_they_touch():
    s = RangeSet()
    for x in (100, 200, 300):
        s.add(x)
    late = list(range(299, 200, -1)) + list(range(199, 100, -1)) + [99, 98]  # fills both gaps
    for x in late:
        assert s.add(x) and x in s
        assert not s.add(x)
    assert s.ranges() == [(98, 300)]
    assert 97 not in s and 301 not in s


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-50, 400)), max_size=600))
def test_any_sequence_of_adds_and_lookups_agrees_with_a_set(ops):
    """300 sequences of up to 600 adds and lookups, in any order (late arrivals waiting for a
    merge included): the same answers as a Python set, and the ranges are its runs."""
    s, ref = RangeSet(), set()
    for is_add, x in ops:
        if is_add:
            assert s.add(x) == (x not in ref)
            ref.add(x)
        else:
            assert (x in s) == (x in ref)
    assert [x for a, b in s.ranges() for x in range(a, b + 1)] == sorted(ref)
