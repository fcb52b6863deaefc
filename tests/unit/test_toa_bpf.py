"""The eBPF route's object, its record and its loader's logic.

The object in roles/toa/files/toa-bpf/ is built on the controller, never on
a target (tools/build_toa_bpf.py): a rebuild must give the same bytes, so
that the object a host runs is provably the one its source in the tree makes.
The loader (toa-bpf) turns the configuration into map bytes that the C side
reads: the layouts are checked here against the C source.
"""

import importlib.machinery
import importlib.util
import os
import re
import shutil
import struct
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import build_toa_bpf as btb  # noqa: E402

LOADER = os.path.join(btb.DIR, "toa-bpf")


def _load_loader():
    loader = importlib.machinery.SourceFileLoader("toa_bpf_loader", LOADER)
    spec = importlib.util.spec_from_loader("toa_bpf_loader", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


tb = _load_loader()


def _c_source():
    with open(btb.SOURCE, encoding="utf-8") as f:
        return f.read()


# -- the object and its record ------------------------------------------------------------

def test_record_describes_the_committed_source_and_object():
    rec = btb.read_record()
    assert btb.record_problems(rec, btb.sha256_file(btb.SOURCE), btb.sha256_file(btb.OBJECT)) == []
    assert rec.get("toolchain"), "the record names the toolchain the bytes depend on"


def test_record_problems_name_a_changed_source():
    rec = {"source": "a" * 64, "object": "b" * 64}
    problems = btb.record_problems(rec, "c" * 64, "b" * 64)
    assert len(problems) == 1 and "toa.bpf.c" in problems[0] and "--update" in problems[0]
    assert btb.record_problems(rec, "a" * 64, "b" * 64) == []


def _have_toolchain():
    return all(shutil.which(t) for t in (btb.CLANG, btb.STRIP)) and \
        os.path.exists("/usr/include/bpf/bpf_helpers.h")


def test_rebuild_gives_the_committed_object_byte_for_byte(tmp_path):
    if not _have_toolchain():
        if os.environ.get("CI"):
            pytest.fail("clang-14, llvm-14 and libbpf-dev are missing (scripts/setup.sh installs them)")
        pytest.skip("no clang-14/libbpf-dev here")
    first = btb.build(str(tmp_path / "a.o"))
    second = btb.build(str(tmp_path / "b.o"))
    assert first == second, "two builds of one source differ: the build is not reproducible"
    assert first == btb.sha256_file(btb.OBJECT), (
        "toa.bpf.c no longer builds to the committed toa.bpf.o: "
        "python3 tools/build_toa_bpf.py --update")


def test_a_changed_source_changes_the_object(tmp_path):
    if not _have_toolchain():
        pytest.skip("no clang-14/libbpf-dev here")
    changed = tmp_path / "toa.bpf.c"
    changed.write_text(_c_source().replace("#define TOA_V4_LEN\t8", "#define TOA_V4_LEN\t9"))
    assert btb.build(str(tmp_path / "x.o"), source=str(changed)) != btb.sha256_file(btb.OBJECT)


# -- the loader's view of the C side ------------------------------------------------------

def test_counter_names_follow_the_c_enum_in_order():
    body = re.search(r"enum toa_counter \{(.*?)\};", _c_source(), re.S).group(1)
    names = [n.lower() for n in re.findall(r"C_([A-Z_]+),", body) if n != "MAX"]
    assert tuple(names) == tb.COUNTERS


def test_counter_names_shared_with_the_module_mean_the_same():
    # names the module's /proc/net/toa_stats also has (toa-src/README.md)
    with open(os.path.join(ROOT, "roles", "toa", "files", "toa-src", "README.md")) as f:
        module_doc = f.read()
    shared = [n for n in tb.COUNTERS if "`%s`" % n in module_doc]
    assert {"options_seen", "accepted", "rejected_untrusted", "rejected_malformed",
            "rejected_family", "rejected_multiple", "rejected_syn_mismatch",
            "getname_rewrites", "fastopen_without_toa"} <= set(shared)


def test_programs_and_maps_are_the_c_functions_and_maps():
    src = _c_source()
    for _, name in tb.PROGRAMS:
        assert re.search(r"\bint %s\(" % name, src), name
    for m in tb.MAPS:
        assert re.search(r"\} %s SEC\(\"\.maps\"\);" % m, src), m


def test_config_value_matches_struct_toa_config():
    # 3 u32 flags, then two 8-word kind bitmaps
    body = re.search(r"struct toa_config \{(.*?)\};", _c_source(), re.S).group(1)
    assert re.findall(r"__u32 (\w+)", body) == ["enabled", "syn_toa", "trust_all", "k4", "k6"]
    cfg = tb.normalise({"ipv4_kinds": [200, 254], "ipv6_kinds": [253], "syn_toa": True})
    raw = tb.config_value(cfg)
    assert len(raw) == 76
    words = struct.unpack("=19I", raw)
    assert words[:3] == (1, 1, 1)               # enabled, syn_toa, trust all (empty list)
    k4, k6 = words[3:11], words[11:19]
    assert k4[6] == 1 << 8 and k4[7] == 1 << 30          # 200 = 6 * 32 + 8, 254 = 7 * 32 + 30
    assert sum(bin(w).count("1") for w in k4) == 2
    assert k6[253 // 32] == 1 << (253 % 32) and sum(bin(w).count("1") for w in k6) == 1


def test_trust_all_follows_the_list_unless_forced():
    with_list = tb.normalise({"trusted_cidrs": ["10.0.0.0/8"]})
    assert struct.unpack("=3I", tb.config_value(with_list)[:12])[2] == 0
    empty = tb.normalise({})
    assert struct.unpack("=3I", tb.config_value(empty)[:12])[2] == 1
    assert struct.unpack("=3I", tb.config_value(empty, trust_all=False)[:12])[2] == 0


def test_trust_key_layout_families_apart():
    k4 = tb.trust_key("10.1.2.3/8")
    assert len(k4) == 24                          # struct toa_trust_key: u32 + 20 bytes
    assert struct.unpack("=I", k4[:4])[0] == 8 + 8
    assert k4[4:9] == bytes([4, 10, 0, 0, 0])     # family 4, host bits cleared
    assert k4[9:] == b"\0" * 15
    k6 = tb.trust_key("2001:db8::1/32")
    assert struct.unpack("=I", k6[:4])[0] == 8 + 32
    assert k6[4] == 6 and k6[5:21] == bytes.fromhex("20010db8" + "00" * 12)
    # ::/0 is family 6 with 8 significant bits: it can never cover a family-4 key
    assert tb.trust_key("::/0")[:5] == struct.pack("=I", 8) + bytes([6])
    assert tb.trust_key("192.0.2.2") == tb.trust_key("192.0.2.2/32")


def test_normalise_defaults_and_strings():
    cfg = tb.normalise({})
    assert cfg == {"enabled": True, "syn_toa": False, "ipv4_kinds": [200],
                   "ipv6_kinds": [253, 254], "trusted_cidrs": []}
    cfg = tb.normalise({"ipv4_kinds": "254, 200,200", "ipv6_kinds": "",
                        "trusted_cidrs": "10.1.2.3/8,2001:DB8::1/32"})
    assert cfg["ipv4_kinds"] == [200, 254] and cfg["ipv6_kinds"] == []
    assert cfg["trusted_cidrs"] == ["10.0.0.0/8", "2001:db8::/32"]


@pytest.mark.parametrize("bad", [
    {"ipv4_kinds": [1]}, {"ipv4_kinds": [256]}, {"ipv4_kinds": "x"}, {"ipv4_kinds": []},
    {"ipv6_kinds": [0]}, {"trusted_cidrs": ["10.0.0.0/33"]}, {"trusted_cidrs": "bogus"},
    {"trusted_cidrs": ["10.0.%d.0/24" % i for i in range(257)]},
    {"enabled": "yes"}, {"max_entries": 5},
])
def test_normalise_refuses(bad):
    with pytest.raises(tb.ToaBpfError):
        tb.normalise(bad)


def test_counters_from_dump_sums_cpus_and_ignores_unknown_slots():
    def entry(key, per_cpu):
        return {"key": ["0x%02x" % b for b in struct.pack("=I", key)],
                "values": [{"cpu": i, "value": ["0x%02x" % b for b in struct.pack("=Q", v)]}
                           for i, v in enumerate(per_cpu)]}
    dump = [entry(0, [3, 4]), entry(tb.COUNTERS.index("accepted"), [1, 2 ** 40]),
            entry(99, [5, 5])]
    got = tb.counters_from_dump(dump)
    assert got["options_seen"] == 7 and got["accepted"] == 1 + 2 ** 40
    assert set(got) == set(tb.COUNTERS) and got["rejected_multiple"] == 0


def test_attached_ids_by_id_whatever_bpftool_calls_the_type():
    old = [{"id": 7, "attach_type": "sock_ops", "name": "toa_sockops"}]
    new = [{"id": 7, "attach_type": "cgroup_sock_ops", "name": "toa_sockops"},
           {"id": 9, "attach_type": "cgroup_inet6_getpeername", "name": "toa_getpeername6"}]
    assert tb.attached_ids(old) == {7}
    assert tb.attached_ids(new) == {7, 9}


def test_detach_finds_ours_by_pin_id_or_name_in_both_bpftool_dialects():
    show = [
        {"id": 16, "attach_type": "sock_ops", "name": "toa_sockops"},
        {"id": 17, "attach_type": "getpeername4", "name": "toa_getpeername"},    # 5.10, truncated
        {"id": 18, "attach_type": "cgroup_inet6_getpeername", "name": "x"},     # by pin id
        {"id": 30, "attach_type": "cgroup_inet4_connect", "name": "toa_sockops"},  # not a type of ours
        {"id": 31, "attach_type": "cgroup_sock_ops", "name": "systemd_thing"},
    ]
    assert tb.ours_to_detach(show, {18}) == [("sock_ops", 16), ("getpeername4", 17),
                                             ("getpeername6", 18)]


def test_pin_aliases_cover_every_program():
    assert set(tb.PIN_ALIASES) == set(name for _, name in tb.PROGRAMS)


def test_hexwords():
    assert tb.hexwords(b"\x00\x0a\xff") == ["00", "0a", "ff"]


def test_loader_has_no_shebang_and_is_run_by_python3():
    # ansible-test's shebang rule allows no python3 shebang in a role's files:
    # the unit and the tasks name the interpreter instead
    assert not os.access(LOADER, os.X_OK)
    with open(LOADER) as f:
        assert not f.readline().startswith("#!")
    with open(os.path.join(btb.DIR, "toa-bpf.service")) as f:
        unit = f.read()
    for verb in ("load", "config", "unload"):
        assert "/usr/bin/python3 /usr/local/lib/toa/toa-bpf %s" % verb in unit


def _tools(tmp_path, *releases, executable=True):
    paths = []
    for release in releases:
        d = tmp_path / ("linux-tools-%s" % release)
        d.mkdir()
        f = d / "bpftool"
        f.write_text("#!/bin/sh\n")
        f.chmod(0o755 if executable else 0o644)
        paths.append(str(f))
    return paths


def test_bpftool_on_path_wins_when_it_runs(tmp_path):
    assert tb.pick_bpftool(True, _tools(tmp_path, "5.15.0-204")) == "bpftool"


def test_bpftool_of_the_newest_other_kernel_when_the_wrapper_fails(tmp_path):
    # Ubuntu after a kernel update: the wrapper finds no linux-tools for the running kernel
    paths = _tools(tmp_path, "5.15.0-91", "5.15.0-204", "5.15.0-1000", "5.4.0-300")
    assert tb.pick_bpftool(False, paths) == paths[2]
    assert tb.pick_bpftool(False, paths[:2] + paths[3:]) == paths[1]


def test_no_bpftool_anywhere_leaves_the_name_for_the_error(tmp_path):
    assert tb.pick_bpftool(False, []) == "bpftool"
    assert tb.pick_bpftool(False, _tools(tmp_path, "6.8.0-1", executable=False)) == "bpftool"


def test_release_key_reads_both_ubuntu_layouts():
    assert tb._release_key("/usr/lib/linux-tools/5.15.0-204-generic/bpftool") == [5, 15, 0, 204]
    assert tb._release_key("/usr/lib/linux-tools-5.15.0-204/bpftool") == [5, 15, 0, 204]
