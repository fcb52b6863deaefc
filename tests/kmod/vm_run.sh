#!/usr/bin/env bash
# Build and test toa.ko inside a running test guest (testbed/toavm.py):
#   tests/kmod/vm_run.sh NAME [vm_toa_test.py args...]
#   tests/kmod/vm_run.sh NAME --abuse [vm_abuse.py args...]   (fuzz, spoofing,
#                                      unload under load; see vm_abuse.py)
#   tests/kmod/vm_run.sh NAME --load [vm_load.py args...]     (1,000,000 TOA
#                                      handshakes, 200,000 held, rmmod under
#                                      load; see vm_load.py and docs/load-test.md)
# Installs the guest kernel's headers and a compiler in the guest, copies the
# module source, the tests and the packet code they share with toa_probe
# (module_utils/toa_packet.py), builds with warnings shown, runs
# vm_toa_test.py.  Exit status is the test's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/env.sh
. "$root/scripts/env.sh"   # TOA_CACHE, where toavm.py keeps each guest's console
name=$1
shift
vm() { python3 "$root/testbed/toavm.py" "$@"; }

tar -C "$root/roles/toa/files" -czf /tmp/toa-src.$$.tgz toa-src
vm copy-to "$name" /tmp/toa-src.$$.tgz /root/toa-src.tgz
vm copy-to "$name" "$here/vm_toa_test.py" /root/vm_toa_test.py
vm copy-to "$name" "$root/module_utils/toa_packet.py" /root/toa_packet.py
vm copy-to "$name" "$here/vm_abuse.py" /root/vm_abuse.py
vm copy-to "$name" "$here/vm_load.py" /root/vm_load.py
vm copy-to "$name" "$here/toa_load_pump.c" /root/toa_load_pump.c
rm -f /tmp/toa-src.$$.tgz
vm ssh "$name" -- 'set -e
export DEBIAN_FRONTEND=noninteractive
# headers of the running kernel from the archive unless installed already (a
# kernel of our own, such as the one of vm_debug.sh, brings its own package)
pkgs=
[ -e /lib/modules/$(uname -r)/build/Makefile ] || pkgs="linux-headers-$(uname -r)"
command -v gcc >/dev/null || pkgs="$pkgs gcc make libc6-dev"
if [ -n "$pkgs" ]; then
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $pkgs >/tmp/apt.log 2>&1 ||
		{ tail -20 /tmp/apt.log; exit 1; }
fi
rm -rf /root/toa-src && tar -C /root -xzf /root/toa-src.tgz
cd /root/toa-src
make -C /lib/modules/$(uname -r)/build M=$PWD modules >/root/build.log 2>&1 || { cat /root/build.log; exit 1; }
echo "kernel $(uname -r): build log warnings: $(grep -ci warning /root/build.log || true)"
grep -i warning /root/build.log || true'
test=vm_toa_test.py
if [ "${1:-}" = --abuse ]; then
	test=vm_abuse.py
	shift
elif [ "${1:-}" = --load ]; then
	test=vm_load.py
	shift
	echo "vm_run.sh: module source of commit $(git -C "$root" log -1 --format=%h -- roles/toa/files/toa-src)" \
		"$(git -C "$root" status --porcelain -- roles/toa/files/toa-src | grep -q . && echo '(with uncommitted changes)')"
fi
# A kernel report (oops, lockup, RCU stall) may leave the guest unable to
# answer over SSH: the test gets a deadline, and a failure shows the end of
# the guest's serial console, where the kernel's own messages are
# (TOA_KMOD_TIMEOUT seconds, 1800 by default).
limit=${TOA_KMOD_TIMEOUT:-1800}
rc=0
timeout --kill-after=30 $((limit + 120)) python3 "$root/testbed/toavm.py" ssh "$name" -- \
	timeout --kill-after=30 "$limit" python3 "/root/$test" --ko /root/toa-src/toa.ko "$@" || rc=$?
if [ "$rc" != 0 ]; then
	console="$TOA_CACHE/run/$name/console.log"
	echo "vm_run.sh: $test failed (rc $rc); last kernel console lines of $name ($console):" >&2
	tail -n 80 "$console" >&2 || true
	# A guest stuck on a stale translation of code another vCPU rewrote is
	# the emulator's fault, not the kernel's (docs/testing.md): say which.
	timeout 120 python3 "$root/testbed/toavm.py" diagnose "$name" >&2 || true
fi
exit "$rc"
