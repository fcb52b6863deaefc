#!/usr/bin/env bash
# Test the eBPF route inside a running test guest (testbed/toavm.py):
#   tests/bpf/vm_run.sh NAME [vm_bpf_test.py args...]
#   tests/bpf/vm_run.sh NAME --load [vm_load.py args...]   (the module's load
#        test, tests/kmod/vm_load.py, driving this route: 1,000,000 TOA
#        handshakes, 200,000 held, detach under load; docs/load-test.md)
# Nothing is compiled in the guest: the committed object is checked against
# its source here first (tools/build_toa_bpf.py --check: two rebuilds,
# byte-identical to roles/toa/files/toa-bpf/toa.bpf.o), then copied with the
# loader and the tests; the guest only gets the distribution's bpftool.
# Exit status is the test's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/env.sh
. "$root/scripts/env.sh"
name=$1
shift
vm() { python3 "$root/testbed/toavm.py" "$@"; }
files="$root/roles/toa/files/toa-bpf"

nice -n 10 python3 "$root/tools/build_toa_bpf.py" --check
sha=$(sha256sum "$files/toa.bpf.o" | cut -d' ' -f1)
vm copy-to "$name" "$files/toa.bpf.o" /root/toa.bpf.o
vm copy-to "$name" "$files/toa-bpf" /root/toa-bpf
vm copy-to "$name" "$root/tests/kmod/vm_toa_test.py" /root/vm_toa_test.py
vm copy-to "$name" "$root/module_utils/toa_packet.py" /root/toa_packet.py
vm copy-to "$name" "$here/vm_bpf_test.py" /root/vm_bpf_test.py
test=(python3 /root/vm_bpf_test.py --object /root/toa.bpf.o --loader /root/toa-bpf)
gcc=
if [ "${1:-}" = --load ]; then
	shift
	for f in vm_load.py vm_abuse.py toa_load_pump.c; do
		vm copy-to "$name" "$root/tests/kmod/$f" "/root/$f"
	done
	test=(python3 /root/vm_load.py --bpf-object /root/toa.bpf.o --bpf-loader /root/toa-bpf)
	gcc="gcc libc6-dev"   # the load pump is C, built in the guest (a test tool, not the route)
fi
vm ssh "$name" -- "set -e
export DEBIAN_FRONTEND=noninteractive
pkgs=
# Debian has a bpftool package; Ubuntu builds bpftool with each kernel
# (linux-tools-<release>, run by the wrapper in linux-tools-common), as the
# role's vars/ubuntu.yml says.
if ! bpftool version >/dev/null 2>&1; then
	. /etc/os-release
	if [ \"\$ID\" = ubuntu ]; then pkgs=\"linux-tools-common linux-tools-\$(uname -r)\"; else pkgs=bpftool; fi
fi
[ -z \"$gcc\" ] || command -v gcc >/dev/null || pkgs=\"\$pkgs $gcc\"
if [ -n \"\$pkgs\" ]; then
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends \$pkgs >/tmp/apt.log 2>&1 || { tail -20 /tmp/apt.log; exit 1; }
fi
echo \"$sha  /root/toa.bpf.o\" | sha256sum -c --quiet
echo \"$sha  toa.bpf.o\" >/root/toa.bpf.o.sha256   # as the role writes it
echo 'object in the guest: $sha (the committed one)'"
limit=${TOA_BPF_TIMEOUT:-1800}
rc=0
timeout --kill-after=30 $((limit + 120)) python3 "$root/testbed/toavm.py" ssh "$name" -- \
	timeout --kill-after=30 "$limit" "${test[@]}" "$@" || rc=$?
if [ "$rc" != 0 ]; then
	echo "vm_run.sh: ${test[1]} failed (rc $rc); last console lines:" >&2
	tail -40 "$TOA_CACHE/run/$name/console.log" >&2 || true
fi
exit "$rc"
