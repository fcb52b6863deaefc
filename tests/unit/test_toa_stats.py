"""module_utils/toa_stats.py: which counters mean lost client addresses, and what to do."""

import toa_state
from toa_stats import LOST, summarise

# /proc/net/toa_stats of toa.ko 2.0 in the initial namespace, nothing lost
STATS_20 = """options_seen 1520
accepted 1502
rejected_untrusted 17
rejected_malformed 1
rejected_family 0
rejected_multiple 2
rejected_syn_mismatch 0
getname_rewrites 4410
getname_stale 0
entries_alloc 1502
entries_free 1490
entries_dropped_full 0
entries_nomem 0
entries_replaced 0
syn_stashed 0
syn_stash_used 0
syn_stash_expired 0
syn_stash_free 0
syn_stash_dropped_full 0
fastopen_without_toa 1
entries_live 12
syn_stash_live 0
entries_limit 0
missed_destroy 0
missed_getname_v4 0
missed_getname_v6 0
missed_syn_recv_v4 0
missed_syn_recv_v6 0
missed_conn_request 0
hook_destroy 1
hooks_ftrace 1
global_entries_live 12
global_entries_dropped_full 0
global_entries_nomem 0
global_syn_stash_dropped_full 0
global_missed 0
table_buckets 4096
"""

# toa.ko 1.0 (this tree before the rework): no global_*, no hooks_ftrace
STATS_10 = """accepted 80000
entries_dropped_full 0
entries_nomem 0
syn_stash_dropped_full 0
missed_destroy 20
missed_getname_v4 0
missed_getname_v6 0
missed_syn_recv_v4 0
missed_syn_recv_v6 0
missed_conn_request 0
"""


def stats(text, **over):
    parsed = toa_state.parse_toa_stats(text)
    parsed.update(over)
    return parsed


def test_nothing_lost_on_a_20_module():
    got = summarise(stats(STATS_20))
    assert got["lost"] is False and got["lost_nonzero"] == {} and got["lost_unknown"] == []
    assert set(got["lost_counters"]) == set(LOST)
    assert got["advice"] == ""
    assert got["hooks_ftrace"] is True
    assert got["refusals"]["rejected_multiple"] == 2
    assert got["refusals"]["rejected_syn_mismatch"] == 0
    assert got["refusals"]["fastopen_without_toa"] == 1  # shown, not a loss


def test_no_counters_at_all_is_unknown_not_zero():
    got = summarise({})
    assert got["lost"] is None and got["hooks_ftrace"] is None
    assert got["lost_unknown"] == list(LOST)
    assert all(value is None for value in got["lost_counters"].values())


def test_an_older_module_has_unknown_counters_and_its_misses_count():
    got = summarise(stats(STATS_10))
    assert got["lost"] is True
    assert got["lost_nonzero"] == {"missed_destroy": 20}
    assert got["lost_counters"]["global_missed"] is None
    assert "global_missed" in got["lost_unknown"] and "missed_destroy" not in got["lost_unknown"]
    assert got["refusals"]["rejected_multiple"] is None
    assert "Hooks did not run (missed_destroy)" in got["advice"]
    assert "TOA 2.0 with hook_mode auto or ftrace" in got["advice"]


def test_a_full_table_says_which_limit_to_raise():
    got = summarise(stats(STATS_20, entries_dropped_full=4464, global_entries_dropped_full=4464,
                          entries_limit=65536))
    assert got["lost"] is True
    assert got["lost_nonzero"] == {"entries_dropped_full": 4464, "global_entries_dropped_full": 4464}
    assert "initial network namespace was full (entries_dropped_full; limit 65536)" in got["advice"]
    assert "toa_params.max_entries" in got["advice"]
    assert "netns_max_entries" not in got["advice"]


def test_a_full_container_namespace_points_at_netns_max_entries():
    got = summarise(stats(STATS_20, global_syn_stash_dropped_full=7))
    assert "Other network namespaces (containers) hit their own limit" in got["advice"]
    assert "toa_params.netns_max_entries" in got["advice"]
    assert "initial network namespace was full" not in got["advice"]


def test_kprobe_misses_name_hooks_ftrace():
    got = summarise(stats(STATS_20, hooks_ftrace=0, missed_syn_recv_v4=3, global_missed=3))
    assert got["hooks_ftrace"] is False
    assert "Hooks did not run (global_missed, missed_syn_recv_v4)" in got["advice"]
    assert "hooks_ftrace 0" in got["advice"]
    assert got["advice"].endswith("reload it (toa_reload=true) or reboot.")


def test_memory_and_unlisted_missed_counters():
    got = summarise(stats(STATS_20, entries_nomem=5, global_entries_nomem=5, missed_new_hook=1))
    assert got["lost_counters"]["missed_new_hook"] == 1
    assert "short of memory" in got["advice"]


def test_refusals_alone_are_not_losses():
    got = summarise(stats(STATS_20, rejected_untrusted=900, rejected_syn_mismatch=4,
                          getname_stale=2, entries_replaced=1))
    assert got["lost"] is False and got["advice"] == ""
