#!/usr/bin/env bash
# What a starved emulator looks like from inside the guest (issue 14, item 9).
#
#   tests/kmod/vm_stall.sh NAME [SECONDS [QUOTA_MS]]
#     QUOTA_MS 0 (default): the vCPU thread gets no CPU at all for SECONDS
#     (cgroup v1 freezer); QUOTA_MS > 0: it gets that much CPU per second
#     (cgroup v1 cpu controller, CFS quota)
#
# A full-size abuse run once stopped answering with a kernel stack trace from a
# task in getpeername() on the console, on a night when the machine was loaded
# by other workers, and the console was lost.  This reproduces the conditions
# without the TOA module: in guest NAME (started by toavm.py with >= 2 vCPUs,
# no toa module loaded) a C loop calls getpeername() on a loopback TCP socket
# pinned to guest CPU 1, and on the host the QEMU thread that runs that vCPU
# ("CPU 1/TCG", named by toavm's debug-threads) is starved for SECONDS
# (default 60): what a vCPU gets when the host's cores are taken by other
# guests and builds, pushed to the extreme.
# Then the guest's console since the start is searched for the kernel's stall
# and lockup reports and printed.  Exit 0 when a report with getpeername in its
# trace appeared (the emulator alone produces that trace), 1 when not, 2 when
# the experiment could not be set up.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/env.sh
. "$root/scripts/env.sh"
name=${1:?usage: vm_stall.sh NAME [SECONDS [QUOTA_MS]]}
seconds=${2:-60}
quota_ms=${3:-0}
vm() { python3 "$root/testbed/toavm.py" "$@"; }
say() { echo "vm_stall.sh: $*" >&2; }

state=$TOA_CACHE/run/$name/state.json
console=$TOA_CACHE/run/$name/console.log
pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$state")
tid=
for t in /proc/"$pid"/task/*; do
	if [ "$(cat "$t/comm")" = "CPU 1/TCG" ]; then tid=${t##*/}; fi
done
[ -n "$tid" ] || { say "no 'CPU 1/TCG' thread in QEMU $pid (guest needs --smp 2 and a toavm with debug-threads)"; exit 2; }
if [ "$quota_ms" = 0 ]; then cg=/sys/fs/cgroup/freezer; else cg=/sys/fs/cgroup/cpu; fi
[ -w "$cg/tasks" ] || { say "no cgroup v1 controller at $cg"; exit 2; }

vm ssh "$name" -- "set -e
if [ -e /sys/module/toa ]; then echo 'toa is loaded: unload it first, this experiment is about the kernel without it' >&2; exit 2; fi
command -v gcc >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null; }
cat >/root/gpn_loop.c <<'C'
/* getpeername() in a tight loop on one connected loopback TCP socket */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	int secs = argc > 1 ? atoi(argv[1]) : 60, l, c, a;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	unsigned long n = 0;
	time_t end = time(NULL) + secs;

	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (void *)&sa, sizeof(sa)) || listen(l, 1) || getsockname(l, (void *)&sa, &len))
		return perror(\"listen\"), 1;
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (void *)&sa, sizeof(sa)) || (a = accept(l, NULL, NULL)) < 0)
		return perror(\"connect\"), 1;
	while (time(NULL) < end) {
		for (int i = 0; i < 100000; i++) {
			struct sockaddr_in p;
			socklen_t pl = sizeof(p);
			getpeername(a, (void *)&p, &pl);
			n++;
		}
	}
	printf(\"%lu getpeername calls\\n\", n);
	return 0;
}
C
gcc -O2 -o /root/gpn_loop /root/gpn_loop.c
nohup taskset -c 1 /root/gpn_loop $((seconds + 90)) >/root/gpn_loop.out 2>&1 </dev/null &
sleep 2; pgrep -x gpn_loop >/dev/null"
start=$(stat -c %s "$console")
grp=$cg/toavm-stall-$name-$$
mkdir "$grp"
cleanup() {
	[ -e "$grp/freezer.state" ] && echo THAWED >"$grp/freezer.state" 2>/dev/null
	echo "$tid" >"$cg/tasks" 2>/dev/null || true
	rmdir "$grp" 2>/dev/null || true
}
trap cleanup EXIT
echo "$tid" >"$grp/tasks"
if [ "$quota_ms" = 0 ]; then
	say "guest $name: getpeername loop on CPU 1; QEMU thread $tid (CPU 1/TCG) frozen for ${seconds} s"
	echo FROZEN >"$grp/freezer.state"
else
	say "guest $name: getpeername loop on CPU 1; QEMU thread $tid (CPU 1/TCG) held to ${quota_ms} ms/s for ${seconds} s"
	echo 1000000 >"$grp/cpu.cfs_period_us"
	echo $((quota_ms * 1000)) >"$grp/cpu.cfs_quota_us"
fi
sleep "$seconds"
cleanup
trap - EXIT
say "released; waiting 40 s for the guest to report"
sleep 40
report=$(tail -c +"$((start + 1))" "$console" | tr -d '\r')
stalls=$(printf '%s\n' "$report" | grep -E "rcu: INFO|detected stall|soft lockup|hard LOCKUP|hung_task|blocked for more than" || true)
printf '%s\n' "$report" | grep -E -A40 "rcu: INFO|detected stall|soft lockup" | head -120 || true
vm ssh "$name" -- 'lsmod | grep -w toa || echo "no toa module loaded"'
if [ -n "$stalls" ] && printf '%s\n' "$report" | grep -q "getpeername"; then
	say "REPRODUCED without TOA: the kernel reported a stall with getpeername in the trace:"
	printf '%s\n' "$stalls" >&2
	exit 0
fi
say "no stall report with getpeername in its trace (reports: ${stalls:-none})"
exit 1
