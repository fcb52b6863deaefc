# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What /proc/net/toa_stats says about lost client addresses: pure logic, no I/O.

toa_facts hands the parsed counters to summarise(); verification and the
fleet report read its result (ansible_facts.toa.counters), so the list of
counters that mean a connection showed the proxy instead of its client lives
here only.  A counter the loaded module does not print (an older module, the
vendor's, or no module) is unknown, never 0.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Counters that mean some connection did not get its client address (the
# toa.ko 2.0 interface): the table or the SYN stash was full, memory ran out,
# or a hook did not run (missed_*).  global_* exist only in the initial
# network namespace and count every namespace; global_missed sums missed_*.
LOST = (
    "entries_dropped_full",
    "entries_nomem",
    "syn_stash_dropped_full",
    "missed_destroy",
    "missed_getname_v4",
    "missed_getname_v6",
    "missed_syn_recv_v4",
    "missed_syn_recv_v6",
    "missed_conn_request",
    "global_entries_dropped_full",
    "global_entries_nomem",
    "global_syn_stash_dropped_full",
    "global_missed",
)

# Refusals by design and defence in depth: shown, not a failure by themselves.
REFUSALS = (
    "rejected_untrusted",
    "rejected_malformed",
    "rejected_family",
    "rejected_multiple",
    "rejected_syn_mismatch",
    "getname_stale",
    "entries_replaced",
    "fastopen_without_toa",
)

_FULL = ("entries_dropped_full", "syn_stash_dropped_full")
_GLOBAL_FULL = ("global_entries_dropped_full", "global_syn_stash_dropped_full")
_NOMEM = ("entries_nomem", "global_entries_nomem")


def _flag(value):
    if value is None:
        return None
    return bool(value)


def _names(stats, known, prefix):
    """The known names, then any other counter of the same family the module prints."""
    extra = sorted(name for name in stats if name.startswith(prefix) and name not in known)
    return list(known) + extra


def advice(nonzero, stats):
    """What the non-zero lost-address counters mean and what to do, in sentences."""
    if not nonzero:
        return ""
    said = []
    full = [name for name in _FULL if nonzero.get(name)]
    others_full = [name for name in _GLOBAL_FULL
                   if nonzero.get(name, 0) > (stats.get(name[len("global_"):]) or 0)]
    if full:
        limit = stats.get("entries_limit")
        said.append("The TOA table of the initial network namespace was full (%s%s): raise "
                    "toa_params.max_entries (0 = no limit)."
                    % (", ".join(full), "" if limit is None else "; limit %d" % limit))
    if others_full:
        said.append("Other network namespaces (containers) hit their own limit (%s above the "
                    "initial namespace's count): raise toa_params.netns_max_entries (0 = no "
                    "limit)." % ", ".join(others_full))
    if any(nonzero.get(name) for name in _NOMEM):
        said.append("The kernel could not allocate TOA entries (entries_nomem): the host ran "
                    "short of memory.")
    missed = sorted(name for name in nonzero
                    if name.startswith("missed_") or name == "global_missed")
    if missed:
        ftrace = stats.get("hooks_ftrace")
        if ftrace == 0:
            how = ("this module hooks with kprobes (hooks_ftrace 0), which skip a handler when "
                   "another runs on the same CPU under load; hook_mode=ftrace (x86_64) cannot miss")
        elif ftrace is None:
            how = ("this module hooks with kprobes, which skip a handler when another runs on "
                   "the same CPU under load; TOA 2.0 with hook_mode auto or ftrace (x86_64) "
                   "cannot miss")
        else:
            how = "although hooks_ftrace is 1: report it with the counters"
        said.append("Hooks did not run (%s): %s." % (", ".join(missed), how))
    said.append("The counters count since the module was loaded: after the fix, reload it "
                "(toa_reload=true) or reboot.")
    return " ".join(said)


def summarise(stats):
    """The lost-address and refusal counters of parsed /proc/net/toa_stats.

    Returns {lost, lost_counters, lost_nonzero, lost_unknown, advice,
    refusals, hooks_ftrace}: lost is True when a lost-address counter is above
    0, False when those the module prints are all 0, None when it prints none
    (no module, the vendor's, no /proc/net/toa_stats); counters it does not
    print are null and listed in lost_unknown.
    """
    stats = stats or {}
    names = _names(stats, LOST, "missed_")
    counters = dict((name, stats.get(name)) for name in names)
    nonzero = dict((name, value) for name, value in counters.items() if value)
    unknown = [name for name in names if counters[name] is None]
    lost = None
    if len(unknown) < len(names):
        lost = bool(nonzero)
    refusal_names = _names(stats, REFUSALS, "rejected_")
    return {
        "lost": lost,
        "lost_counters": counters,
        "lost_nonzero": nonzero,
        "lost_unknown": unknown,
        "advice": advice(nonzero, stats),
        "refusals": dict((name, stats.get(name)) for name in refusal_names),
        "hooks_ftrace": _flag(stats.get("hooks_ftrace")),
    }
