#!/usr/bin/env bash
# The eBPF route under kernel lockdown (opt-in; docs/ebpf.md):
#   tests/bpf/vm_lockdown.sh NAME
# NAME is a running Debian 12 test guest (testbed/toavm.py up NAME --guest
# debian12) that this test may reboot and leave converged; take a fresh one.
#
#  1. toa.ko is built here from roles/toa/files/toa-src against the cached
#     headers of the guest's kernel (tests/kmod/build.sh fills
#     $TOA_CACHE/kheaders), unsigned, and insmod'ed in the guest without
#     lockdown: it loads, so it is a module this kernel would take.
#  2. lockdown=integrity goes on the kernel command line (GRUB_CMDLINE_LINUX_DEFAULT,
#     update-grub) and the guest reboots; /proc/cmdline and
#     /sys/kernel/security/lockdown must show it.
#  3. insmod of the same toa.ko is refused (EPERM, the kernel's lockdown
#     message in dmesg) and no toa module is loaded.
#  4. playbooks/site.yml -e toa_strategy=ebpf converges the guest (its own
#     probe), toa_facts says lockdown integrity and that the route is possible,
#     and playbooks/verify.yml passes with probes for ipv4, ipv6 and ipv4_on_ipv6.
# Exit status 0 only when every step held.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/env.sh
. "$root/scripts/env.sh"
name=${1:?usage: vm_lockdown.sh NAME (a running debian12 guest)}
vm() { python3 "$root/testbed/toavm.py" "$@"; }
step() { printf '\n--- %s (%ss)\n' "$1" "$SECONDS"; }
fail() {
	echo "vm_lockdown.sh: FAIL: $*" >&2
	tail -30 "$TOA_CACHE/run/$name/console.log" >&2 || true
	exit 1
}
export PATH="$TOA_VENV/bin:$PATH"

step "build an unsigned toa.ko for the guest's kernel"
rel=$(vm ssh "$name" -- uname -r)
kdir=$TOA_CACHE/kheaders/root-$rel/usr/src/linux-headers-$rel
[ -f "$TOA_CACHE/kheaders/root-$rel/.complete" ] ||
	fail "no cached headers for $rel under $TOA_CACHE/kheaders (run tests/kmod/build.sh)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$root/roles/toa/files/toa-src" "$work/src"
nice -n 10 make -s -C "$kdir" M="$work/src" CONFIG_DEBUG_INFO_BTF_MODULES= modules >"$work/build.log" 2>&1 ||
	{ cat "$work/build.log"; fail "toa.ko did not build"; }
modinfo -F vermagic "$work/src/toa.ko" | grep -q "^$rel " || fail "vermagic is not $rel"
if modinfo -F signer "$work/src/toa.ko" | grep -q .; then fail "the module is signed"; fi
vm copy-to "$name" "$work/src/toa.ko" /root/toa.ko
echo "toa.ko for $rel, unsigned"

step "without lockdown the kernel takes it"
vm ssh "$name" -- 'set -e
grep -q "\[none\]" /sys/kernel/security/lockdown
insmod /root/toa.ko
grep -q "^toa " /proc/modules
echo "lockdown: $(cat /sys/kernel/security/lockdown); insmod toa.ko: loaded"' ||
	fail "the unsigned toa.ko does not load even without lockdown"

step "boot with lockdown=integrity"
vm ssh "$name" -- 'set -e
sed -i "s/^GRUB_CMDLINE_LINUX_DEFAULT=\"\(.*\)\"/GRUB_CMDLINE_LINUX_DEFAULT=\"\1 lockdown=integrity\"/" /etc/default/grub
grep -q "^GRUB_CMDLINE_LINUX_DEFAULT=.*lockdown=integrity" /etc/default/grub
update-grub >/dev/null 2>&1
grep -q "lockdown=integrity" /boot/grub/grub.cfg'
boot_before=$(vm ssh "$name" -- cat /proc/sys/kernel/random/boot_id)
sync_reboot='sync; systemctl reboot'
timeout 120 python3 "$root/testbed/toavm.py" ssh "$name" -- "$sync_reboot" || true
sleep 20
for _ in $(seq 1 90); do
	boot=$(vm ssh "$name" -- cat /proc/sys/kernel/random/boot_id 2>/dev/null) || boot=
	[ -n "$boot" ] && [ "$boot" != "$boot_before" ] && break
	sleep 10
done
[ -n "$boot" ] && [ "$boot" != "$boot_before" ] || fail "the guest did not come back from the reboot"
vm ssh "$name" -- 'set -e
grep -qw "lockdown=integrity" /proc/cmdline
grep -q "\[integrity\]" /sys/kernel/security/lockdown
echo "cmdline: $(cat /proc/cmdline)"; echo "lockdown: $(cat /sys/kernel/security/lockdown)"' ||
	fail "the guest did not boot into lockdown=integrity"

step "under lockdown the same unsigned toa.ko is refused"
vm ssh "$name" -- 'dmesg -C
if out=$(insmod /root/toa.ko 2>&1); then echo "insmod succeeded"; exit 1; fi
echo "insmod: $out"
echo "$out" | grep -q "Operation not permitted" || exit 1
dmesg | grep -i "lockdown" | grep -i "unsigned module" || exit 1
if grep -q "^toa " /proc/modules; then echo "toa is loaded"; exit 1; fi' ||
	fail "insmod of the unsigned module was not refused by lockdown"

step "the eBPF route converges under lockdown"
# The default inventory (inventories/local) lists every running guest: --limit
# keeps the runs to this one.
(cd "$root" && ANSIBLE_NOCOLOR=1 ansible-playbook --limit "$name" playbooks/site.yml \
	-e toa_strategy=ebpf -e '{"toa_verify_probe_families": ["ipv4", "ipv6", "ipv4_on_ipv6"]}') ||
	fail "playbooks/site.yml (toa_strategy=ebpf) failed under lockdown"

step "facts and verification under lockdown"
(cd "$root" && ANSIBLE_NOCOLOR=1 ansible "$name" -m toa_facts -o) >"$work/facts.txt" ||
	fail "toa_facts failed"
python3 - "$work/facts.txt" <<'EOF' || fail "toa_facts does not report the route as lockdown-proof"
import json, sys
text = open(sys.argv[1]).read()
facts = json.loads(text[text.index("{"):])["ansible_facts"]["toa"]
ebpf = facts["ebpf"]
print("toa_facts: lockdown %r, possible %s, problems %s, module loaded %s, attached %s"
      % (ebpf["lockdown"], ebpf["possible"], ebpf["problems"], ebpf["module_loaded"],
         (ebpf["status"] or {}).get("attached")))
assert ebpf["lockdown"] == "integrity"
assert ebpf["possible"] and not ebpf["problems"]
assert not ebpf["module_loaded"] and not facts["module"]["loaded"]
assert all((ebpf["status"] or {}).get("attached", {}).values()) and len(ebpf["status"]["attached"]) == 3
EOF
(cd "$root" && ANSIBLE_NOCOLOR=1 ansible-playbook --limit "$name" playbooks/verify.yml \
	-e '{"toa_verify_probe_families": ["ipv4", "ipv6", "ipv4_on_ipv6"]}') ||
	fail "playbooks/verify.yml failed under lockdown"
vm ssh "$name" -- 'grep -q "\[integrity\]" /sys/kernel/security/lockdown && ! grep -q "^toa " /proc/modules' ||
	fail "lockdown or the module changed during the run"
echo
echo "vm_lockdown.sh: PASS ($SECONDS s): lockdown=integrity refused the unsigned toa.ko; the eBPF route converged and its probes passed"
