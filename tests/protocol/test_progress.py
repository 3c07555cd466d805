"""A leader's view of its followers: Inflights, the Progress transitions, the Tracker's
quorum."""

from __future__ import annotations

import pytest

from graphrep.protocol.progress import Inflights, Progress, Refusal, Tracker
from graphrep.sansio import MS

# ---------------------------------------------------------------------- Inflights

def test_inflights_without_a_limit_track_nothing_and_are_never_full():
    w = Inflights(0)
    for end in (3, 5, 9):
        w.add(end)
    assert len(w) == 0 and not w.full()


def test_inflights_fill_up_free_in_order_and_reset():
    w = Inflights(2)
    w.add(3)
    assert not w.full()
    w.add(5)
    assert w.full() and list(w) == [3, 5]
    w.free_le(4)  # acknowledged up to 4: the Append ending at 3 is done
    assert list(w) == [5] and not w.full()
    w.free_le(5)
    assert list(w) == []
    w.add(7)
    w.reset()
    assert len(w) == 0


# ---------------------------------------------------------------------- Progress

def fresh(next_: int = 10, now: int = 0, cap: int = 2) -> Progress:
    return Progress(next_, now, cap)


def test_elected_a_follower_starts_at_the_leaders_end_with_nothing_acknowledged():
    pr = fresh(10, now=5)
    assert (pr.next, pr.match, pr.progress_at, pr.snap_offset, pr.below_match) == \
        (10, 0, 5, 0, 0)
    assert list(pr.inflight) == [] and not pr.paused()


def test_sent_moves_next_and_fills_the_window_until_paused():
    pr = fresh(10, cap=2)
    pr.sent(12)
    pr.sent(15)
    assert pr.next == 15 and list(pr.inflight) == [12, 15] and pr.paused()


def test_acknowledged_moves_match_forward_only_and_frees_the_window():
    pr = fresh(10)
    pr.sent(12)
    pr.sent(15)
    pr.acknowledged(12, now=7)
    assert (pr.match, pr.next, pr.progress_at, list(pr.inflight)) == (12, 15, 7, [15])
    pr.acknowledged(11, now=9)  # an older acknowledgement, delivered late
    assert (pr.match, pr.progress_at) == (12, 7)
    pr.acknowledged(20, now=9)  # beyond next (a snapshot, say): next follows match
    assert (pr.match, pr.next) == (20, 20)


def test_a_report_between_match_and_next_rewinds_and_resends():
    pr = fresh(10)
    pr.acknowledged(4, 0)
    pr.sent(12)
    assert pr.refused(6) is Refusal.RESEND
    assert (pr.next, pr.match, list(pr.inflight)) == (6, 4, [])


def test_a_report_at_or_beyond_what_was_sent_is_stale():
    pr = fresh(10)
    pr.acknowledged(4, 0)
    assert pr.refused(10) is Refusal.STALE and pr.refused(15) is Refusal.STALE
    assert (pr.next, pr.match) == (10, 4)


def test_two_reports_below_match_in_a_row_are_believed_one_is_not():
    pr = fresh(10)
    pr.acknowledged(8, 0)
    assert pr.refused(3) is Refusal.STALE and pr.below_match == 1
    pr.acknowledged(8, 1)  # an acknowledgement between two reports: start counting again
    assert pr.below_match == 0
    assert pr.refused(3) is Refusal.STALE
    pr.sent(12)
    assert pr.refused(3) is Refusal.REGRESSED
    assert (pr.match, pr.next, pr.below_match, list(pr.inflight)) == (3, 3, 0, [])


def test_a_report_that_is_not_below_match_resets_the_count():
    pr = fresh(10)
    pr.acknowledged(8, 0)
    pr.refused(3)
    pr.refused(12)  # stale, but not below match
    assert pr.below_match == 0 and pr.refused(3) is Refusal.STALE


def test_retransmit_resends_from_match_after_a_stall():
    pr = fresh(10, now=0)
    pr.refused(2)  # the follower's log ends at 2
    pr.acknowledged(4, 0)
    pr.sent(12)
    assert not pr.stalled(49 * MS, 50 * MS) and pr.stalled(50 * MS, 50 * MS)
    pr.retransmit(50 * MS)
    assert (pr.next, pr.progress_at, list(pr.inflight)) == (4, 50 * MS, [])
    assert not pr.stalled(60 * MS, 50 * MS)


def test_until_the_follower_answers_a_heartbeat_asks_at_next_where_its_log_ends():
    """A new leader knows nothing of a follower's log (match 0 is no answer): a heartbeat
    at 0 would be answered "ok at 0"; at next it is answered by an acknowledgement or a
    gap at the follower's end."""
    pr = fresh(10)
    assert pr.heartbeat_at(log_start=0) == 10
    assert pr.refused(6) is Refusal.RESEND and pr.next == 6  # the gap: send from there
    assert pr.heartbeat_at(log_start=0) == 6  # answered: where its log reaches
    other = fresh(10)
    other.acknowledged(10, 0)
    assert (other.match, other.heartbeat_at(log_start=0)) == (10, 10)


def test_a_heartbeat_is_anchored_at_match_unless_it_was_compacted():
    pr = fresh(10)
    pr.acknowledged(4, 0)
    pr.sent(12)
    assert pr.heartbeat_at(log_start=0) == 4
    assert pr.heartbeat_at(log_start=5) == 12


def test_snapshot_transitions():
    pr = fresh(10)
    pr.sent(12)
    pr.snapshot_sent()
    assert list(pr.inflight) == []
    pr.snapshot_progress(4096, now=3)
    assert (pr.snap_offset, pr.progress_at) == (4096, 3)
    pr.retry_snapshot(now=8)
    assert (pr.snap_offset, pr.progress_at) == (4096, 8)
    pr.snapshot_restart()
    assert pr.snap_offset == 0
    pr.snapshot_progress(100, now=9)
    pr.snapshot_installed(30, now=11)
    assert (pr.snap_offset, pr.match, pr.next, pr.progress_at) == (0, 30, 30, 11)
    pr.snapshot_installed(20, now=12)  # an older snapshot: match does not go back
    assert (pr.match, pr.next) == (30, 30)


class _NeverBack(Progress):
    __slots__ = ()

    def rewind(self, to: int) -> None:
        pass


def test_rewind_is_the_only_place_next_goes_back():
    pr = _NeverBack(10, 0, 2)
    pr.acknowledged(8, 0)
    pr.sent(12)
    pr.refused(9)  # would rewind
    pr.retransmit(MS)
    pr.refused(2)
    pr.refused(2)  # would regress
    assert pr.next == 12 and pr.match == 2


# ---------------------------------------------------------------------- Tracker

def test_the_quorum_counts_the_leader_and_a_majority_of_three():
    t = Tracker(["b", "c"], majority=2)
    t.reset(end=5, now=0, max_inflight=0)
    assert "b" in t and "x" not in t and t["b"].next == 5
    assert t.quorum_end(own=7) == 0  # nobody acknowledged yet
    t["b"].acknowledged(6, 0)
    assert t.durable_ends(7) == [7, 6, 0] and t.quorum_end(own=7) == 6
    assert t.quorum_end(own=3) == 3  # the leader's own durable end counts as one copy
    assert not t.all_hold(5)
    t["c"].acknowledged(6, 0)
    assert t.all_hold(5) and not t.all_hold(6)


@pytest.mark.parametrize(("n", "majority"), [(1, 1), (3, 2), (5, 3)])
def test_the_quorum_end_is_the_majority_th_highest(n, majority):
    peers = [f"p{i}" for i in range(n - 1)]
    t = Tracker(peers, majority)
    t.reset(end=0, now=0, max_inflight=0)
    for i, p in enumerate(peers):
        t[p].acknowledged(10 * (i + 1), 0)
    ends = sorted([100] + [10 * (i + 1) for i in range(n - 1)], reverse=True)
    assert t.quorum_end(own=100) == ends[majority - 1]


def test_reset_gives_every_follower_a_fresh_progress_of_the_tracker_class():
    t = Tracker(["b"], 1, progress=_NeverBack)
    t.reset(end=3, now=0, max_inflight=1)
    old = t["b"]
    old.acknowledged(3, 0)
    t.reset(end=9, now=5, max_inflight=1)
    assert type(t["b"]) is _NeverBack and t["b"] is not old
    assert (t["b"].next, t["b"].match, t["b"].inflight.size) == (9, 0, 1)


def test_each_retransmission_doubles_the_wait_until_the_follower_makes_progress():
    pr = fresh(10, now=0)
    pr.sent(12)
    waits = []
    t = 0
    for _ in range(7):
        wait = next(w for w in range(0, 5000 * MS, MS) if pr.stalled(t + w, 50 * MS))
        waits.append(wait // MS)
        t += wait
        pr.retransmit(t)
        assert pr.probing() and pr.next == 10  # unheard: from the end at election
        pr.sent(12)
    assert waits == [50, 100, 200, 400, 800, 1600, 1600]  # doubled, up to 32 x
    pr.acknowledged(11, t + MS)  # progress: back to the plain timeout, no probing
    assert not pr.probing() and pr.stalled(t + 51 * MS, 50 * MS)


def test_a_retransmission_resends_from_match_or_where_the_follower_said_its_log_ends():
    """match counts acknowledgements only; a follower that never acknowledged in this
    term is resent from the leader's end at election, or from the end it reported."""
    pr = fresh(10)
    pr.sent(14)
    pr.retransmit(50 * MS)
    assert (pr.told, pr.match, pr.next) == (10, 0, 10)  # not from 0
    gap = fresh(10)
    assert gap.refused(6) is Refusal.RESEND  # "my log ends at 6"
    gap.sent(14)
    gap.retransmit(50 * MS)
    assert (gap.told, gap.match, gap.next) == (6, 0, 6)  # on the old code: from 0
    acked = fresh(10)
    acked.refused(6)
    acked.acknowledged(8, 0)
    acked.sent(14)
    acked.retransmit(50 * MS)
    assert (acked.match, acked.next) == (8, 8)


def test_a_probed_follower_that_reports_a_gap_is_sent_from_there_at_once():
    """One batch out while probed; a gap report answers it (etcd-raft unpauses a probe
    on a rejection too): the next batch leaves now, not at the next timeout."""
    pr = fresh(10)
    pr.acknowledged(4, 0)
    pr.sent(12)
    pr.retransmit(50 * MS)
    pr.sent(8)
    assert pr.probe_out()
    assert pr.refused(6) is Refusal.RESEND and (pr.next, pr.probe_out()) == (6, False)
    pr.sent(10)
    assert pr.probe_out()


def test_a_probed_follower_that_answers_is_sent_again_from_match():
    pr = fresh(10, now=0)
    pr.refused(2)
    pr.acknowledged(4, 0)
    pr.sent(12)
    pr.retransmit(50 * MS)
    pr.sent(8)  # the probe batch
    assert not pr.quiet(99 * MS, 50 * MS) and pr.quiet(100 * MS, 50 * MS)
    pr.answered_probe(100 * MS)
    assert (pr.next, pr.progress_at, list(pr.inflight), pr.retries) == (4, 100 * MS, [], 1)
