#!/usr/bin/env bash
# The main job on the embedded default: set everything up, boot a local
# Debian 12 guest, converge it with playbooks/site.yml, and show the proof:
# a TOA option injected into a handshake comes out of getpeername().
#
#   scripts/demo.sh            converge a fresh guest, print the proof, stop it
#   scripts/demo.sh --keep     leave the guest running (inventories/local lists it)
#   TOA_DEMO_GUEST=ubuntu1604 scripts/demo.sh    another guest recipe
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
# shellcheck source=scripts/env.sh
. scripts/env.sh
keep=0
[ "${1:-}" = "--keep" ] && keep=1
guest=${TOA_DEMO_GUEST:-debian12}
name="demo-$guest"

bash scripts/setup.sh
export PATH="$TOA_VENV/bin:$PATH"
if [ "$keep" = 0 ]; then
	trap 'python3 testbed/toavm.py down "$name" >/dev/null 2>&1 || true' EXIT INT TERM
fi
python3 testbed/toavm.py up "$name" --guest "$guest" >/dev/null
ansible-playbook -i inventories/local/toavm_guests.py playbooks/site.yml --limit "$name"
echo
echo "=== Proof: read-only verification, with a crafted TOA handshake on the guest"
ansible-playbook -i inventories/local/toavm_guests.py playbooks/verify.yml --limit "$name" |
	tee "$TOA_CACHE/demo-verify.log" |
	sed -n -e '/^ *msg:$/,/^$/{/^ *msg:$/d;/^$/d;p;}' -e "/^ *msg: '/{N;p;}" || true
grep -q 'failed=0' "$TOA_CACHE/demo-verify.log"
