import random

from pvsim.pipeline.rangeset import RangeSet


def test_in_order_stream_is_one_range():
    s = RangeSet()
    assert all(s.add(x) for x in range(1000, 1000 + 86400))
    assert s.ranges() == [(1000, 87399)] and s.high == 87399


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
