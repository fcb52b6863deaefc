#!/usr/bin/env bash
# Prove toa.ko on every guest kernel of the test bed, one guest at a time:
#   tests/kmod/vm_matrix.sh [GUEST...]     (default: all eight guests)
# Each guest: boot (image built and cached on first use), tests/kmod/vm_run.sh
# (headers, warning-free build, the functional checks), stop.  Prints one
# line per guest and exits non-zero if any failed.  About 8-10 min a guest
# under TCG.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
guests=("$@")
[ ${#guests[@]} -gt 0 ] || guests=(ubuntu1604 ubuntu1804 ubuntu2004 ubuntu2204 ubuntu2404 debian11 debian12 debian13)
logdir=${TOA_CACHE:-$HOME/.cache/toa-fleet}/kmod-logs
mkdir -p "$logdir"
failed=0
for g in "${guests[@]}"; do
	name=kmatrix-$g
	trap 'python3 "$root/testbed/toavm.py" down "$name" >/dev/null 2>&1' EXIT INT TERM
	if ! python3 "$root/testbed/toavm.py" up "$name" --guest "$g" >/dev/null; then
		echo "FAIL $g: guest did not boot"; failed=1; continue
	fi
	if bash "$root/tests/kmod/vm_run.sh" "$name" >"$logdir/$g.log" 2>&1; then
		echo "PASS $g: $(grep -m1 'build log warnings' "$logdir/$g.log"); $(grep -m1 RESULT "$logdir/$g.log")"
	else
		echo "FAIL $g: see $logdir/$g.log"; failed=1
	fi
	python3 "$root/testbed/toavm.py" down "$name" >/dev/null 2>&1
done
exit $failed
