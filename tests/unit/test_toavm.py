"""toavm.py: the QEMU command line per accelerator (command building only)."""

import argparse
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("toavm", os.path.join(ROOT, "testbed", "toavm.py"))
toavm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(toavm)


def accel_args(cmd):
    i = cmd.index("-accel")
    return cmd[i:cmd.index("-m")]


def test_tcg_runs_multithreaded_without_icount():
    cmd = toavm.qemu_cmd("/run/g", "/run/g/o.qcow2", 2222, "tcg", 1024, 2)
    assert accel_args(cmd) == ["-accel", "tcg,thread=multi", "-cpu", "max"]
    assert cmd[cmd.index("-smp") + 1] == "2"


def test_icount_uses_one_thread_and_a_fixed_shift():
    cmd = toavm.qemu_cmd("/run/g", "/run/g/o.qcow2", 2222, "tcg", 1024, 1, icount=2)
    assert accel_args(cmd) == ["-accel", "tcg,thread=single", "-cpu", "max",
                               "-icount", "shift=2,sleep=on"]


def test_kvm_uses_the_host_cpu():
    cmd = toavm.qemu_cmd("/run/g", "/run/g/o.qcow2", 2222, "kvm", 1024, 2)
    assert accel_args(cmd) == ["-accel", "kvm", "-cpu", "host"]


def test_icount_with_kvm_is_refused_before_anything_starts(monkeypatch):
    monkeypatch.setattr(toavm, "start", lambda *a, **k: pytest.fail("must not start a guest"))
    args = argparse.Namespace(name="g", guest="debian12", accel="kvm", mem=1024, smp=1,
                              boot_timeout=60, icount=2)
    with pytest.raises(SystemExit, match="--icount needs TCG"):
        toavm.cmd_up(args)


def test_every_interpreter_override_names_a_known_guest():
    assert set(toavm.INTERPRETERS) <= set(toavm.GUESTS)
    assert toavm.INTERPRETERS["ubuntu1604"] == "/usr/bin/python2.7"   # xenial's 3.5 is too old


def test_vcpu_threads_are_named_after_the_guest():
    # the starvation experiment (tests/kmod/vm_stall.sh) finds a vCPU thread by its name
    cmd = toavm.qemu_cmd("/run/g", "/run/g/o.qcow2", 2222, "tcg", 1024, 2)
    assert cmd[cmd.index("-name") + 1] == "g,debug-threads=on"


# QEMU `log int` lines as a guest stuck in a stale int3 printed them (2026-12-01)
INT_LOG = """\
     2: v=03 e=0000 i=1 cpl=0 IP=0010:ffffffff9b719bd0 pc=ffffffff9b719bd0 SP=0018:ff599f7d007bfd28
RAX=ffffffff9b719bd0 RBX=ff599f7d007bfd40 RCX=ff1803f5411be290 RDX=0000000000000001
     3: v=03 e=0000 i=1 cpl=0 IP=0010:ffffffff9b719bd0 pc=ffffffff9b719bd0 SP=0018:ff599f7d007bfd28
     4: v=ec e=0000 i=0 cpl=0 IP=0010:ffffffff9b719bd0 pc=ffffffff9b719bd0 SP=0018:ff599f7d007bfd28
     5: v=03 e=0000 i=1 cpl=3 IP=0033:00007fd1ba01f857 pc=00007fd1ba01f857 SP=002b:00007ffd00000000
"""


def test_breakpoint_storm_counts_kernel_int3_per_address():
    # the timer interrupt (v=ec) and a user-mode int3 (cpl=3) are not counted
    assert toavm.breakpoint_storm(INT_LOG) == {0xffffffff9b719bd0: 2}
    assert toavm.breakpoint_storm("") == {}


def test_memory_bytes_reads_an_x_reply_not_the_echoed_address():
    reply = " 0xffffffff9b719bd0\x1b[K\r\nffffffff9b719bd0: 0x0f 0x1f 0x44\r\n(qemu) "
    assert toavm.memory_bytes(reply) == [0x0f, 0x1f, 0x44]
    assert toavm.memory_bytes("ffffffff9b719bd0: 0xcc\r\n") == [0xcc]
