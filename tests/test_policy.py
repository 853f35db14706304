"""The pure decision, at every timing edge."""
import pytest

from qgrey import policy
from qgrey.policy import GREYLIST, PASS, Entry


class S:
    delay = 300
    retry_window = 2 * 86400
    lifetime = 36 * 86400


T = 1_800_000_000


def decide(entry, now):
    return policy.decide(entry, now, S)


def test_new_triplet_is_greylisted_and_recorded():
    assert decide(None, T) == (GREYLIST, "new", Entry(T, T, 0, 1), 0)


@pytest.mark.parametrize("elapsed", [0, 1, 299])
def test_retry_before_delay_is_early_and_keeps_the_clock(elapsed):
    action, reason, new, waited = decide(Entry(T, T), T + elapsed)
    assert (action, reason, waited) == (GREYLIST, "early", elapsed)
    assert new == Entry(T, T + elapsed, 0, 2)


@pytest.mark.parametrize("elapsed", [300, 301, 86400, 2 * 86400])
def test_retry_after_delay_within_window_passes(elapsed):
    assert decide(Entry(T, T + 10, 0, 3), T + elapsed) == (
        PASS, "delayed", Entry(T, T + elapsed, T + elapsed, 3), elapsed)


def test_retry_after_window_starts_over():
    assert decide(Entry(T, T), T + 2 * 86400 + 1) == (
        GREYLIST, "expired", Entry(T + 2 * 86400 + 1, T + 2 * 86400 + 1), 0)


def test_early_retries_do_not_move_the_window():
    entry = Entry(T, T)
    for step in range(1, 5):
        _, _, entry, _ = decide(entry, T + step * 60)
    assert entry.first == T
    assert decide(entry, T + 300)[0] == PASS


def test_known_triplet_passes_without_write_within_the_hour():
    entry = Entry(T, T + 400, T + 400, 2)
    action, reason, new, waited = decide(entry, T + 400 + policy.RENEW_AFTER - 1)
    assert (action, reason, waited) == (PASS, "known", 400)
    assert new is entry


def test_known_triplet_is_renewed_after_an_hour():
    entry = Entry(T, T + 400, T + 400, 2)
    now = T + 400 + policy.RENEW_AFTER
    assert decide(entry, now)[2] == Entry(T, now, T + 400, 2)


@pytest.mark.parametrize("age, action", [(36 * 86400, PASS), (36 * 86400 + 1, GREYLIST)])
def test_lifetime_edge(age, action):
    entry = Entry(T, T + 400, T + 400, 2)
    assert decide(entry, T + 400 + age)[0] == action


def test_clock_going_backwards_counts_as_early():
    assert decide(Entry(T, T), T - 100)[:2] == (GREYLIST, "early")


def test_expiry_predicates_match_the_decision():
    waiting, passed = Entry(T, T), Entry(T, T, T, 1)
    assert not policy.expired(waiting, T + 2 * 86400, S)
    assert policy.waiting_over(waiting, T + 2 * 86400 + 1, S)
    assert not policy.lifetime_over(waiting, T + 100 * 86400, S)
    assert not policy.expired(passed, T + 36 * 86400, S)
    assert policy.lifetime_over(passed, T + 36 * 86400 + 1, S)
