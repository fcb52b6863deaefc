#!/usr/bin/env bash
# Upgrades reach the kernel (issue 14, item 5), proven in a guest:
#
#   tests/kmod/vm_upgrade.sh NAME     (NAME: a running toavm guest, e.g.
#                                      `testbed/toavm.py up up1 --guest debian12`)
#
# 1. converge the guest with the module route (site.yml);
# 2. change the module's C source in a copy of the project (the working tree
#    is never touched) and converge again with toa_reload=false: the role
#    must build and install the new module, leave the old one loaded, warn,
#    and verify.yml must fail naming the pending reload;
# 3. converge again with toa_reload=true: the new build is loaded (loaded
#    srcversion == installed srcversion) and verify.yml passes;
# 4. a rerun changes nothing.
# Exit status 0 only when every step behaved as described.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/env.sh
. "$root/scripts/env.sh"
name=${1:?usage: vm_upgrade.sh GUEST}
export PATH="$TOA_VENV/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0
inv="$root/inventories/local/toavm_guests.py"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL $*"; exit 1; }
pass() { echo "PASS $*"; }

play() {	# play DIR PLAYBOOK [args...]: run from DIR, log to $work/<n>.log
	local dir=$1 pb=$2 log
	shift 2
	log=$work/$(date +%s%N).log
	(cd "$dir" && ansible-playbook -i "$inv" "playbooks/$pb" --limit "$name" "$@") >"$log" 2>&1
	local rc=$?
	cat "$log" >"$work/last.log"
	return $rc
}
recap() { grep -E "^$name +:" "$work/last.log" | tail -1; }
srcversions() {
	python3 "$root/testbed/toavm.py" ssh "$name" -- \
		'cat /sys/module/toa/srcversion; modinfo -F srcversion toa' | tr '\n' ' '
}

play "$root" site.yml || { tail -40 "$work/last.log"; fail "first converge"; }
pass "first converge: $(recap)"
read -r loaded0 installed0 <<<"$(srcversions)"
[ "$loaded0" = "$installed0" ] || fail "after the first converge loaded $loaded0 != installed $installed0"

# A copy of the project whose module source differs by one real symbol.
rsync -a --exclude .git "$root/" "$work/proj/"
echo 'static int __maybe_unused toa_upgrade_proof = 1;' >>"$work/proj/roles/toa/files/toa-src/toa_cfg.c"

play "$work/proj" site.yml || { tail -40 "$work/last.log"; fail "converge with changed source"; }
read -r loaded1 installed1 <<<"$(srcversions)"
[ "$loaded1" = "$loaded0" ] && [ "$installed1" != "$installed0" ] ||
	fail "changed source: loaded $loaded1 (was $loaded0), installed $installed1 (was $installed0)"
grep -q "$name" <(sed -n '/older TOA code/,/PLAY RECAP/p' "$work/last.log") ||
	fail "the run does not list $name as running older TOA code"
pass "changed source, toa_reload=false: new build installed ($installed1), old one still loaded ($loaded1), reported: $(recap)"

if play "$work/proj" verify.yml; then
	fail "verify.yml passed although the loaded module is not the installed build"
fi
grep -qi "reload" "$work/last.log" || fail "verify.yml failed without naming the pending reload"
pass "verify.yml fails while the reload is pending: $(grep -m1 -io 'rerun[^"]*' "$work/last.log" || echo failed)"

play "$work/proj" site.yml -e toa_reload=true || { tail -40 "$work/last.log"; fail "converge with toa_reload=true"; }
read -r loaded2 installed2 <<<"$(srcversions)"
[ "$loaded2" = "$installed2" ] && [ "$loaded2" = "$installed1" ] ||
	fail "toa_reload=true: loaded $loaded2, installed $installed2"
pass "toa_reload=true: the new build is loaded ($loaded2): $(recap)"

play "$work/proj" verify.yml || { tail -30 "$work/last.log"; fail "verify.yml after the reload"; }
pass "verify.yml passes after the reload"

play "$work/proj" site.yml -e toa_reload=true || fail "rerun"
recap | grep -q "changed=0" || fail "rerun changed something: $(recap)"
pass "rerun: $(recap)"
echo "RESULT PASS"
