#!/usr/bin/env bash
# Prebuilt TOA module packages on the module route (issue 16), proven in a
# fresh Debian 12 guest (opt-in; docs/testing.md):
#
#   tests/kmod/vm_prebuilt.sh [GUEST_NAME]     (default pb-1; started and stopped here)
#
# 1. build: playbooks/build.yml builds the toa-kmod package for the kernel
#    it collects from the guest (toa_build_kmod_fleet) and is also given
#    twice (one build), publishes it to the mirror the guests reach and
#    writes the fleet's variables;
# 2. converge with toa_module_source=prebuilt: the only packages the guest
#    gains are toa-kmod ones (no compiler, headers, make or DKMS), TOA is
#    loaded from /lib/modules/<release>/updates/toa.ko, the probe passes;
# 3. rerun: changed=0; check mode: changed=0;
# 4. kernel update: install another Debian 12 kernel from the archive;
#    build.yml collects both kernels from the guest and builds the new one's
#    package; rerun the role: that package is installed and indexed by depmod
#    before any reboot;
# 5. reboot into the other kernel: TOA is autoloaded there and verify.yml's
#    probe passes;
# 6. remove.yml purges the packages; the probe sees the real peer again;
# 7. converge with DKMS, then with prebuilt: DKMS's registration and build of
#    TOA are removed, the package's module is loaded, a rerun changes nothing.
# Every step's wall time goes to the summary at the end (TCG guest).
# Exit status 0 only when every step behaved as described.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/env.sh
. "$root/scripts/env.sh"
name=${1:-pb-1}
export PATH="$TOA_VENV/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0
inv="$root/inventories/local/toavm_guests.py"
work=$(mktemp -d)
vars=$work/kmod.yml
times=$work/times
started=false
cleanup() {
	if $started; then python3 "$root/testbed/toavm.py" down "$name" >/dev/null 2>&1 || true; fi
	if [ -n "${TOA_KEEP_LOGS:-}" ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
fail() { echo "FAIL $*"; echo "last log: $work/last.log"; tail -30 "$work/last.log" 2>/dev/null; TOA_KEEP_LOGS=1; exit 1; }
pass() { echo "PASS $*"; }
now() { date +%s.%N; }
timed() {	# timed LABEL CMD...: run, record the wall time
	local label=$1 t0 rc=0
	shift
	t0=$(now)
	"$@" || rc=$?
	printf '%s\t%.1f\n' "$label" "$(echo "$(now) - $t0" | bc)" >>"$times"
	return $rc
}
play() {	# play PLAYBOOK [args...]
	local pb=$1
	shift
	(cd "$root" && ansible-playbook -i "$inv" "playbooks/$pb" --limit "$name" -e "@$vars" "$@") \
		>"$work/last.log" 2>&1
}
said() { tr -s "[:space:]" " " <"$work/last.log" | grep -F "$1" >/dev/null; }	# long lines may be folded
recap() { grep -E "^$name +:" "$work/last.log" | tail -1; }
changed() { recap | sed -n 's/.*changed=\([0-9]*\).*/\1/p'; }
g() { python3 "$root/testbed/toavm.py" ssh "$name" -- "$@"; }
packages() { g "dpkg-query -W -f '\${Package} \${db:Status-Abbrev}\n' | awk '\$2 == \"ii\" {print \$1}' | sort"; }

# -- the guest -----------------------------------------------------------------
timed "guest boot" python3 "$root/testbed/toavm.py" up "$name" --guest debian12 >/dev/null ||
	fail "guest $name did not start"
started=true
running=$(g uname -r)
# The other kernel: the newest linux-image-6.1.0-N-amd64 the archive offers
# that is not the running one (a kernel update), else an older one.
g "apt-get -q update" >/dev/null 2>&1 || fail "apt-get update in the guest"
other=$(g "apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64\$'" |
	awk '{print $1}' | sed 's/^linux-image-//' | grep -vx "$running" | sort -V | tail -1)
[ -n "$other" ] || fail "the archive offers no other Debian 12 kernel than $running"
echo "guest runs $running; the other kernel: $other"

# -- 1. build -----------------------------------------------------------------------
build() {	# build LABEL [build.yml args...]: the fleet is the guest
	local label=$1
	shift
	(cd "$root" && timed "$label" ansible-playbook -i "$inv" playbooks/build.yml \
		-e "toa_build_kmod_fleet=$name" -e "toa_build_vars_file=$vars" "$@") >"$work/last.log" 2>&1
}
build "build.yml ($running from the guest, and given twice)" \
	-e "{\"toa_build_kmod_releases\": [\"$running\", \"$running\"]}" || fail "build.yml"
said "3 releases asked for, 1 distinct" || fail "build.yml did not build the release once"
grep -q "$running" "$vars" || fail "the fleet's variables lack $running"
pass "build.yml: 3 releases asked for (2 given, 1 from the guest), 1 package published with SHA256SUMS"

# -- 2. converge ---------------------------------------------------------------------
before=$(packages)
timed "first converge (prebuilt)" play site.yml -e toa_module_source=prebuilt || fail "converge"
said "Module route, prebuilt: installing the prebuilt TOA module package" ||
	fail "the converge did not take the prebuilt path"
after=$(packages)
added=$(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')
[ "$added" = "toa-kmod-$running " ] ||
	fail "the converge installed more than the toa-kmod package: $added"
for p in gcc gcc-12 make dkms "linux-headers-$running" linux-kbuild-6.1; do
	if grep -qx "$p" <<<"$after"; then fail "$p is installed on the host"; fi
done
file=$(g "modinfo -n toa")
[ "$file" = "/lib/modules/$running/updates/toa.ko" ] || fail "toa comes from $file"
g "grep -q '^toa ' /proc/modules" || fail "toa is not loaded"
said "getpeername() returned 203.0.113.7:4242" || fail "the probe did not pass"
pass "converge: only $added installed; no compiler, headers or DKMS; toa loaded from $file; probe passed"

# -- 3. rerun and check mode -------------------------------------------------------------
timed "rerun" play site.yml -e toa_module_source=prebuilt || fail "rerun"
[ "$(changed)" = 0 ] || fail "rerun: $(recap)"
timed "check mode" play site.yml -e toa_module_source=prebuilt --check || fail "check mode"
[ "$(changed)" = 0 ] || fail "check mode: $(recap)"
pass "rerun and check mode: changed=0"

# -- 4. kernel update ------------------------------------------------------------------------
timed "install kernel $other" g "DEBIAN_FRONTEND=noninteractive apt-get -q -y install linux-image-$other" \
	>"$work/last.log" 2>&1 || fail "installing linux-image-$other"
build "build.yml after the kernel update (both kernels from the guest)" || fail "build.yml after the kernel update"
said "2 releases asked for, 2 distinct" || fail "build.yml did not collect both kernels from the guest"
grep -q "$other" "$vars" || fail "the fleet's variables lack $other"
timed "converge after the kernel update" play site.yml -e toa_module_source=prebuilt ||
	fail "converge after the kernel update"
g "dpkg-query -W -f '\${Status}' toa-kmod-$other" | grep "install ok installed" >/dev/null ||
	fail "toa-kmod-$other was not installed before the reboot"
g "grep -q '^updates/toa.ko:' /lib/modules/$other/modules.dep" || fail "depmod did not index toa for $other"
[ "$(g uname -r)" = "$running" ] || fail "the role rebooted the guest"
pass "kernel update: toa-kmod-$other installed and indexed before the reboot ($(recap | tr -s ' '))"

# -- 5. reboot into the other kernel ------------------------------------------------------------
boot_into() {	# GRUB's one-time entry for $other, then reboot and wait for it
	g "sub=\$(grep -o \"gnulinux-advanced-[0-9a-f-]*\" /boot/grub/grub.cfg | head -1);
	   ent=\$(grep -o \"gnulinux-$other-advanced-[0-9a-f-]*\" /boot/grub/grub.cfg | head -1);
	   [ -n \"\$sub\" ] && [ -n \"\$ent\" ] && grub-reboot \"\$sub>\$ent\"" || return 1
	g "systemctl reboot" >/dev/null 2>&1 || true
	sleep 20
	local deadline=$(($(date +%s) + 900))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		if [ "$(TOA_SSH_TIMEOUT=20 g uname -r 2>/dev/null)" = "$other" ]; then return 0; fi
		sleep 10
	done
	return 1
}
timed "reboot into $other" boot_into || fail "the guest did not come back on $other"
g "grep -q '^toa ' /proc/modules" || fail "toa is not loaded after booting $other"
timed "verify.yml on $other" play verify.yml || fail "verify.yml on $other"
said "getpeername() returned 203.0.113.7:4242" || fail "the probe did not pass on $other"
pass "rebooted into $other: toa autoloaded from $(g "modinfo -n toa"), verify.yml's probe passed"

# -- 6. removal --------------------------------------------------------------------------
timed "remove.yml" play remove.yml || fail "remove.yml"
left=$(g "dpkg-query -W -f '\${Package}\n' 'toa-kmod-*' 2>/dev/null" || true)
[ -z "$left" ] || fail "toa-kmod packages left: $left"
g "test ! -e /lib/modules/$other/updates/toa.ko && test ! -e /lib/modules/$running/updates/toa.ko" ||
	fail "a toa.ko is left"
g "! grep -q '^toa ' /proc/modules" || fail "toa is still loaded"
pass "remove.yml: toa-kmod packages purged, module unloaded, the probe sees the real peer"

# -- 7. from DKMS to prebuilt ------------------------------------------------------------
# A host that built TOA under DKMS (the module route before this fleet had
# packages) moves to the prebuilt package: DKMS's registration goes, so no DKMS
# build sits beside the package's module or is rebuilt for the next kernel.
timed "converge with DKMS" play site.yml -e toa_module_source=dkms || fail "converge with DKMS"
g "test -d /var/lib/dkms/toa" || fail "the DKMS converge registered nothing under /var/lib/dkms/toa"
timed "converge, DKMS -> prebuilt" play site.yml -e toa_module_source=prebuilt || fail "converge, DKMS -> prebuilt"
# the task's header is printed when it is skipped too: it must have changed something
grep -A2 -F "TASK [toa : Remove TOA from DKMS, now that the prebuilt packages carry it]" "$work/last.log" |
	grep -q "^changed: \[$name\]" || fail "the DKMS registration was not removed by the role"
g "! ls -d /var/lib/dkms/toa/[0-9]* 2>/dev/null" || fail "DKMS still has a tree of TOA: $(g 'ls /var/lib/dkms/toa')"
g "! ls /lib/modules/*/updates/dkms/toa.ko 2>/dev/null" || fail "a DKMS-built toa.ko is left"
file=$(g "modinfo -n toa")
[ "$file" = "/lib/modules/$other/updates/toa.ko" ] || fail "toa comes from $file"
g "grep -q '^toa ' /proc/modules" || fail "toa is not loaded"
said "getpeername() returned 203.0.113.7:4242" || fail "the probe did not pass"
timed "rerun after the switch" play site.yml -e toa_module_source=prebuilt || fail "rerun after the switch"
[ "$(changed)" = 0 ] || fail "rerun after the switch: $(recap)"
pass "DKMS -> prebuilt: DKMS's registration and build removed, toa from $file, probe passed, rerun changed=0"
timed "remove.yml after the switch" play remove.yml || fail "remove.yml after the switch"

echo
echo "times (s, Debian 12 guest under TCG, $(date -u +%F)):"
column -t -s "$(printf '\t')" "$times"
