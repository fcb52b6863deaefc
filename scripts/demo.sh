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
	trap 'python3 scripts/toavm.py down "$name" >/dev/null 2>&1 || true' EXIT INT TERM
fi
python3 scripts/toavm.py up "$name" --guest "$guest" >/dev/null
ansible-playbook -i inventories/local/toavm_guests.py playbooks/site.yml --limit "$name"
echo
echo "=== Proof: a crafted handshake carries TOA 203.0.113.7:4242 from proxy 192.0.2.2"
ansible -i inventories/local/toavm_guests.py "$name" -m toa_probe \
	-a "toa_address=203.0.113.7 toa_port=4242 expect=rewritten" -o |
	python3 -c '
import json, sys
line = sys.stdin.read()
res = json.loads(line[line.index("{"):])
print("  injected TOA address : %s:%s" % (res["toa_address"], res["toa_port"]))
print("  packet source (proxy): %s:%s" % (res["proxy_address"], res["proxy_port"]))
print("  getpeername() says   : %s:%s" % (res["peer_address"], res["peer_port"]))
print("  TOA works            : %s" % ("yes" if res["matches"] else "NO"))
sys.exit(0 if res["matches"] else 1)'
