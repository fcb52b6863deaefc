"""bench/bench.py: the statistics, parsers, alias inventory and table (no guest, no timing)."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("toa_bench", os.path.join(ROOT, "bench", "bench.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

RECAP = """
PLAY RECAP *********************************************************************
bench7-host1               : ok=31   changed=0    unreachable=0    failed=0    skipped=24   rescued=0    ignored=0
other                      : ok=2    changed=3    unreachable=1    failed=0    skipped=0    rescued=0    ignored=0
"""

MEASURES = """\
PASS something
MEASURE bench conn/s without                 median 1510  (runs: 1490, 1510, 1533)
MEASURE bench conn/s with                    median 1480  (runs: 1401, 1480, 1502)
MEASURE bench conn/s without again           median 1500  (runs: 1500, 1505, 1460)
MEASURE bench TUN conn/s TOA with            median 301  (runs: 299, 301, 305)
MEASURE overhead with      module: 1 conn/s (connect+accept+getpeername), 2 getpeername/s
"""


def test_summarize_gives_min_median_max():
    assert bench.summarize([3, 1, 2]) == {"min": 1.0, "median": 2.0, "max": 3.0, "n": 3}
    assert bench.summarize([4, 1]) == {"min": 1.0, "median": 2.5, "max": 4.0, "n": 2}
    assert bench.summarize([]) is None
    assert bench.summarize([None, 5]) == {"min": 5.0, "median": 5.0, "max": 5.0, "n": 1}


def test_ratio_uses_medians_and_tolerates_missing_figures():
    value, base = bench.summarize([10, 20, 90]), bench.summarize([5, 10, 11])
    assert bench.ratio(value, base) == 2.0
    assert bench.ratio(value, None) is None
    assert bench.ratio(None, base) is None


@pytest.mark.parametrize("value,target,want", [
    (1.2, (1.3, "max"), "yes"), (1.31, (1.3, "max"), "no"),
    (0.98, (0.97, "min"), "yes"), (0.9, (0.97, "min"), "no"),
    (None, (1.3, "max"), "-"), (1.0, None, "-"),
])
def test_verdict(value, target, want):
    assert bench.verdict(value, target) == want


def test_parse_recap_reads_every_host():
    recap = bench.parse_recap(RECAP)
    assert recap["bench7-host1"]["changed"] == 0 and recap["bench7-host1"]["ok"] == 31
    assert recap["other"] == {"ok": 2, "changed": 3, "unreachable": 1, "failed": 0,
                              "skipped": 0, "rescued": 0, "ignored": 0}
    assert bench.parse_recap("no recap here\nhost : ok=1 changed=1\n") == {}


def test_parse_measures_reads_the_runs_of_each_label():
    got = bench.parse_measures(MEASURES)
    assert got == {"conn/s without": [1490.0, 1510.0, 1533.0],
                   "conn/s with": [1401.0, 1480.0, 1502.0],
                   "conn/s without again": [1500.0, 1505.0, 1460.0],
                   "TUN conn/s TOA with": [299.0, 301.0, 305.0]}


def test_alias_inventory_names_one_guest_many_times():
    state = {"port": 40000, "key": "/k", "python": "/usr/bin/python3", "known_hosts": "/r/known_hosts"}
    inv = bench.alias_inventory(state, 100, "b-")
    hosts = inv["all"]["hosts"]
    assert len(hosts) == 100 and "b-001" in hosts and "b-100" in hosts
    assert {h["ansible_port"] for h in hosts.values()} == {40000}
    assert {h["ansible_ssh_private_key_file"] for h in hosts.values()} == {"/k"}
    with pytest.raises(ValueError, match="at least 1"):
        bench.alias_inventory(state, 0, "b-")


def test_alias_inventory_gives_each_alias_its_own_ssh_connection():
    state = {"port": 40000, "key": "/k", "known_hosts": "/r/known_hosts"}
    hosts = bench.alias_inventory(state, 3, "a", "/tmp/cp")["all"]["hosts"]
    paths = [h["ansible_ssh_common_args"].split("ControlPath=")[1] for h in hosts.values()]
    assert paths == ["/tmp/cp/1", "/tmp/cp/2", "/tmp/cp/3"]
    shared = bench.alias_inventory(state, 3, "a")["all"]["hosts"]
    assert not any("ControlPath" in h["ansible_ssh_common_args"] for h in shared.values())


def test_cpu_busy_seconds_counts_all_but_idle_and_iowait():
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat = "cpu  1000 50 400 9000 300 10 40 0 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    assert bench.cpu_busy_seconds(stat) == pytest.approx((1000 + 50 + 400 + 10 + 40) / 100.0)
    with pytest.raises(ValueError, match="no \"cpu\" line"):
        bench.cpu_busy_seconds("intr 1 2 3\n")


def test_rows_compare_each_figure_with_its_baseline_and_target():
    res = {"config": {"forks_for": {"1": 1, "100": 10}},
           "first": {"baseline_s": [100, 110, 120], "role_s": [150, 140, 160],
                     "rerun_s": [20, 21, 22], "rerun_changed": [0, 0, 0], "reboots": [0, 0, 0],
                     # repetition 2's role run failed: no pair for it
                     "by_rep": {"1": {"baseline": 100, "role": 150}, "2": {"baseline": 110},
                                "3": {"baseline": 120, "role": 132}}},
           "hook": bench.parse_measures(MEASURES),
           "scale": {"1": [10, 11, 12], "100": [40, 41, 42]}}
    rows = {r["figure"]: r for r in bench.build_rows(res)}
    role = rows["first converge: role (module route)"]
    assert role["ratio"] == pytest.approx(150 / 110) and role["met"] == "no"
    pairs = rows["first converge: role / baseline.sh of each repetition"]["value"]
    assert pairs["n"] == 2 and pairs["min"] == pytest.approx(1.1) and pairs["max"] == 1.5
    rerun = rows["rerun: role"]
    assert rerun["ratio"] == pytest.approx(21 / 150) and rerun["met"] == "yes"
    assert rerun["note"] == "changed=0,0,0"
    hook = rows["hook, wall clock: same, TOA loaded"]
    assert hook["ratio"] == pytest.approx(1480 / 1510) and hook["met"] == "yes"
    # runs by repetition: pairs 1401/1490, 1480/1510, 1502/1533
    pairs = rows["hook, wall clock: loopback, loaded / unloaded of each repetition"]
    assert pairs["value"]["n"] == 3 and pairs["ratio"] == pytest.approx(1502 / 1533)
    assert pairs["value"]["min"] == pytest.approx(1401 / 1490) and pairs["met"] == "yes"
    noise = rows["hook, wall clock: loopback, unloaded again / unloaded (noise)"]
    assert noise["ratio"] == pytest.approx(1505 / 1510) and noise["met"] == "-"
    assert noise["value"]["min"] == pytest.approx(1460 / 1533)
    # no TUN run without the module: no ratio for the option on every handshake
    assert "hook, wall clock: TOA option on every handshake / unloaded, each repetition" not in rows
    # the instruction clock gets rows of its own, judged on their own
    res["hook_icount"] = {"conn/s without": [1963.0, 1962.0], "conn/s with": [1927.0, 1925.0]}
    rows = {r["figure"]: r for r in bench.build_rows(res)}
    icount = rows["hook, instruction clock: loopback, loaded / unloaded of each repetition"]
    assert icount["ratio"] == pytest.approx((1927 / 1963 + 1925 / 1962) / 2) and icount["met"] == "yes"
    assert rows["hook, wall clock: same, TOA loaded"]["ratio"] == pytest.approx(1480 / 1510)
    scale = rows["verify.yml over 100 aliases"]
    assert scale["ratio"] == pytest.approx(41 / 11) and scale["met"] == "no"
    assert scale["note"] == "forks 10"
    table = bench.render_markdown(bench.build_rows(res))
    assert table.splitlines()[0].startswith("| figure |")
    assert "| rerun: role | s | 3 | 20.0 | 21.0 | 22.0 | 0.140 | <= 0.15 | yes | changed=0,0,0 |" in table


def test_bad_arguments_say_what_to_change(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--aliases", "1,x"])
    assert "comma-separated whole numbers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "first,nope"])
    assert "unknown part(s) nope" in capsys.readouterr().err
    a = bench.parse_args(["--reps", "2", "--aliases", "1,5"])
    assert a.reps == 2 and a.aliases == [1, 5] and a.only == ["first", "scale", "hook"]
    assert a.hook_clock == "both"
    with pytest.raises(SystemExit):
        bench.parse_args(["--use-running", "g", "--only", "hook"])
    assert "add --hook-clock wall" in capsys.readouterr().err
    a = bench.parse_args(["--use-running", "g", "--only", "hook", "--hook-clock", "wall"])
    assert a.use_running == "g" and a.hook_clock == "wall"
    with pytest.raises(SystemExit):
        bench.parse_args(["--icount-n", "5"])
    assert "--icount-n must be at least 100" in capsys.readouterr().err


def test_controller_cpu_rows_compare_with_one_alias():
    res = {"scale": {"1": [6.6], "100": [500.0]},
           "scale_controller_cpu": {"1": [3.0, 3.2, 3.1], "100": [95.0, 90.0, 93.0]}}
    rows = {r["figure"]: r for r in bench.build_rows(res)}
    ctl = rows["controller CPU, verify.yml over 100 aliases"]
    assert ctl["value"]["median"] == 93.0 and ctl["ratio"] == pytest.approx(93.0 / 3.1)
    assert ctl["met"] == "-"      # a figure to explain the scale row, no target of its own
    assert rows["controller CPU, verify.yml over 1 alias"]["ratio"] is None


def test_kprobe_block_and_live_entries_get_rows_of_their_own():
    res = {"config": {}, "hook_icount": {
        "conn/s without": [2000.0], "conn/s with": [1960.0], "conn/s with kprobe": [1900.0],
        "TUN conn/s without": [1000.0], "TUN conn/s TOA with kprobe": [950.0],
        "getpeername/s plain without": [60000.0],
        "getpeername/s TOA socket with kprobe": [50000.0],
        "entries live with": [10001.0]}}
    rows = {r["figure"]: r for r in bench.build_rows(res)}
    h = "hook, instruction clock: "
    assert rows[h + "loopback accept+getpeername, TOA loaded with kprobes"]["ratio"] == \
        pytest.approx(0.95)
    assert rows[h + "proxied handshake, TOA option on every one, kprobes"]["ratio"] == \
        pytest.approx(0.95)
    assert rows[h + "TOA entries live while loaded (--hook-live)"]["value"]["median"] == 10001
    # without a kprobe block there is no kprobe row
    del res["hook_icount"]["conn/s with kprobe"]
    rows = {r["figure"]: r for r in bench.build_rows(res)}
    assert h + "loopback accept+getpeername, TOA loaded with kprobes" not in rows


def test_ebpf_route_rows_compare_with_unloaded_and_with_the_module():
    res = {"config": {},
           "first": {"role_s": [200.0, 220.0], "ebpf_s": [30.0, 50.0],
                     "ebpf_rerun_s": [8.0, 9.0], "ebpf_rerun_changed": [0, 0],
                     "by_rep": {"1": {"role": 200.0, "ebpf": 30.0},
                                "2": {"role": 220.0, "ebpf": 50.0}}},
           "hook_icount": {
               "conn/s without": [2000.0, 2010.0], "conn/s with": [1960.0, 1970.0],
               "conn/s with ebpf": [1990.0, 1980.0],
               "TUN conn/s without": [1000.0, 1000.0], "TUN conn/s TOA with": [980.0, 985.0],
               "TUN conn/s TOA with ebpf": [990.0, 970.0],
               "getpeername/s plain without": [60000.0, 60000.0],
               "getpeername/s TOA socket with ebpf": [59000.0, 59500.0]}}
    rows = {r["figure"]: r for r in bench.build_rows(res)}
    first = rows["first converge: role (eBPF route)"]
    assert first["ratio"] == pytest.approx(40.0 / 210.0) and first["met"] == "yes"
    pairs = rows["first converge: eBPF route / module route of each repetition"]
    assert pairs["ratio"] == pytest.approx((30 / 200 + 50 / 220) / 2) and pairs["met"] == "yes"
    assert rows["rerun: role (eBPF route)"]["note"] == "changed=0,0"
    h = "hook, instruction clock: "
    attached = rows[h + "same, eBPF route attached (no module)"]
    assert attached["ratio"] == pytest.approx(1985.0 / 2005.0) and attached["met"] == "yes"
    per_rep = rows[h + "loopback, eBPF route / unloaded of each repetition"]
    assert per_rep["ratio"] == pytest.approx((1990 / 2000 + 1980 / 2010) / 2)
    against = rows[h + "loopback, eBPF route / module of each repetition"]
    assert against["ratio"] == pytest.approx((1990 / 1960 + 1980 / 1970) / 2)
    assert against["met"] == "-"
    toa = rows[h + "TOA option on every handshake, eBPF route / unloaded, each repetition"]
    assert toa["ratio"] == pytest.approx((0.99 + 0.97) / 2) and toa["met"] == "yes"  # 0.98 is met
    # without the eBPF block, none of its rows
    del res["hook_icount"]["conn/s with ebpf"]
    rows = {r["figure"]: r for r in bench.build_rows(res)}
    assert h + "same, eBPF route attached (no module)" not in rows


def test_prebuilt_rows_compare_with_the_baseline_of_the_same_repetition():
    res = {"config": {},
           "first": {"baseline_s": [100.0, 120.0], "role_s": [130.0, 150.0],
                     "prebuilt_s": [20.0, 40.0], "prebuilt_rerun_s": [3.0, 5.0],
                     "prebuilt_rerun_changed": [0, 1],
                     # repetition 2's baseline failed: no pair for its prebuilt run
                     "by_rep": {"1": {"baseline": 100.0, "role": 130.0, "prebuilt": 20.0},
                                "2": {"role": 150.0, "prebuilt": 40.0},
                                "3": {"baseline": 120.0, "prebuilt": 36.0}}}}
    rows = {r["figure"]: r for r in bench.build_rows(res)}
    pre = rows["first converge: role (module route, prebuilt package)"]
    assert pre["ratio"] == pytest.approx(30.0 / 110.0) and pre["met"] == "no"   # target <= 0.25
    pairs = rows["first converge: prebuilt / baseline.sh of each repetition"]
    assert pairs["value"]["n"] == 2 and pairs["ratio"] == pytest.approx((0.2 + 0.3) / 2)
    assert pairs["met"] == "yes"
    rerun = rows["rerun: role (prebuilt package)"]
    assert rerun["ratio"] == pytest.approx(4.0 / 30.0) and rerun["note"] == "changed=0,1"
    # a run whose first arm so far is the prebuilt one (rows are saved after each arm)
    only = {"first": {"prebuilt_s": [20.0], "by_rep": {"1": {"prebuilt": 20.0}}}}
    rows_only = {r["figure"]: r for r in bench.build_rows(only)}
    assert rows_only["first converge: role (module route, prebuilt package)"]["ratio"] is None
    only["first"]["ebpf_s"] = [10.0]
    assert bench.build_rows(only)
    # without a prebuilt arm, no prebuilt rows
    del res["first"]["prebuilt_s"]
    assert not [f for f in (r["figure"] for r in bench.build_rows(res)) if "prebuilt" in f]


def test_every_arm_runs_once_per_repetition_and_the_role_ends_the_run():
    assert bench.parse_args(["--prebuilt", "--only", "first"]).prebuilt
    for arms in ((), ("prebuilt",), ("ebpf",), ("prebuilt", "ebpf")):
        orders = [bench.arm_order(rep, 3, arms) for rep in (1, 2, 3)]
        for order in orders:
            assert sorted(order) == sorted(("baseline", "role") + arms)
        assert orders[-1][-1] == "role"
        # neither the baseline nor an extra arm always runs right after a fresh start
        assert len({o[0] for o in orders}) > 1
    assert bench.arm_order(1, 2, ("prebuilt",)) == ("prebuilt", "role", "baseline")
    assert bench.arm_order(2, 2, ("prebuilt",)) == ("baseline", "prebuilt", "role")


# -- controller CPU per host, and --scale-compare ---------------------------------------------

@pytest.mark.parametrize("at100, met", [(70.0, "yes"), (133.0, "no")])
def test_controller_cpu_per_host_at_100_is_judged_against_10(at100, met):
    res = {"scale_controller_cpu": {"1": [1.4], "10": [5.0], "100": [at100]}}
    rows = {r["figure"]: r for r in bench.build_rows(res)}
    per_host = rows["controller CPU per host, verify.yml over 100 aliases"]
    assert per_host["value"]["median"] == pytest.approx(at100 / 100)
    assert per_host["ratio"] == pytest.approx((at100 / 100) / 0.5)
    assert (per_host["target"], per_host["met"]) == ((1.5, "max"), met)
    assert rows["controller CPU per host, verify.yml over 10 aliases"]["ratio"] is None
    assert rows["controller CPU per host, verify.yml over 1 alias"]["value"]["median"] == 1.4


def test_a_compared_ref_gets_rows_of_its_own_without_targets():
    res = {"config": {"scale_compare": "main", "forks_for": {"10": 10, "100": 20}},
           "scale": {"10": [40.0], "100": [300.0]},
           "scale_controller_cpu": {"10": [4.0], "100": [50.0]},
           "scale_ref": {"10": [41.0], "100": [556.0]},
           "scale_ref_controller_cpu": {"10": [5.0], "100": [133.0]}}
    rows = {r["figure"]: r for r in bench.build_rows(res)}
    ours = rows["controller CPU per host, verify.yml over 100 aliases"]
    theirs = rows["controller CPU per host, verify.yml of main over 100 aliases"]
    assert ours["ratio"] == pytest.approx(0.5 / 0.4) and ours["met"] == "yes"
    assert theirs["ratio"] == pytest.approx(1.33 / 0.5) and theirs["met"] == "no"
    assert rows["verify.yml of main over 100 aliases"]["target"] is None
    assert rows["verify.yml over 100 aliases"]["target"] == (3.0, "max")


def test_scale_runs_both_trees_taking_turns(tmp_path):
    args = bench.parse_args(["--only", "scale", "--aliases", "1,2", "--reps", "2",
                             "--scale-compare", "main"])
    b = bench.Bench(args, str(tmp_path))
    b.state = {"port": 2222, "key": "/k", "known_hosts": "/kh"}
    ran = []

    def playbook(pb, inv, tag, extra=(), forks=None, root=bench.ROOT):
        count = int(tag.split("-")[-2])
        ran.append((tag, root))
        b.last_cpu = 1.0 * count + (0.5 if root != bench.ROOT else 0)
        return 0, "PLAY RECAP ***\n" + "".join(
            "a%d : ok=2 changed=0 unreachable=0 failed=0\n" % n for n in range(count)), 2.0
    b.playbook = playbook
    b.ssh = lambda cmd, tag, timeout=600: (0, "", 0.1)
    b.guest_busy = lambda: 10.0
    b.ref_tree = lambda: "/ref"
    b.save = lambda: ""
    b.part_scale()
    assert ran == [("verify-1-1", bench.ROOT), ("verify_ref-1-1", "/ref"),
                   ("verify-2-1", bench.ROOT), ("verify_ref-2-1", "/ref"),
                   ("verify_ref-1-2", "/ref"), ("verify-1-2", bench.ROOT),
                   ("verify_ref-2-2", "/ref"), ("verify-2-2", bench.ROOT)]
    assert b.res["scale_controller_cpu"] == {"1": [1.0, 1.0], "2": [2.0, 2.0]}
    assert b.res["scale_ref_controller_cpu"] == {"1": [1.5, 1.5], "2": [2.5, 2.5]}
    assert b.res["errors"] == []


def test_the_compared_ref_is_a_detached_worktree_of_it(tmp_path):
    args = bench.parse_args(["--only", "scale", "--scale-compare", "v1.0"])
    b = bench.Bench(args, str(tmp_path))
    commands = []

    def run(argv, tag, timeout=3600, env=None, stdin=None):
        commands.append(argv)
        if argv[3:5] == ["worktree", "add"]:
            os.makedirs(argv[6])
            return 0, "Preparing worktree (detached HEAD 0123abc)\n", 0.5
        return 0, "0123abcd" * 5 + "\n", 0.1
    b.run = run
    path = str(tmp_path / "ref-tree")
    assert b.ref_tree() == path
    assert commands == [["git", "-C", bench.ROOT, "worktree", "add", "--detach", path, "v1.0^{commit}"],
                        ["git", "-C", path, "rev-parse", "HEAD"]]
    assert b.res["config"]["scale_compare_commit"] == "0123abcd" * 5
    assert b.ref_tree() == path and len(commands) == 2  # made once


def test_a_ref_git_cannot_check_out_is_an_error(tmp_path):
    args = bench.parse_args(["--only", "scale", "--scale-compare", "nope"])
    b = bench.Bench(args, str(tmp_path))
    b.run = lambda argv, tag, timeout=3600, env=None, stdin=None: (
        128, "fatal: invalid reference: nope^{commit}\n", 0.1)
    assert b.ref_tree() is None
    assert b.res["errors"] == ["git worktree of nope for --scale-compare: "
                               "fatal: invalid reference: nope^{commit}"]
