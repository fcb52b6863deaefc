#!/usr/bin/env bash
# The whole test suite: linters, unit tests (current and legacy ansible-core),
# ansible-test sanity on the collection, host tests, the kernel-module compile
# matrix and the Molecule VM scenarios.
#
#   scripts/test.sh                 everything CI runs
#   scripts/test.sh --no-vm         skip the VM scenarios (quick local loop)
#   TOA_SCENARIOS="default ubuntu1604" scripts/test.sh   choose scenarios
#   scripts/test.sh --all-guests    every guest scenario (long; see docs/testing.md)
#   scripts/test.sh --kernel        also the kernel route on Debian 12 and on
#                                   Ubuntu 16.04 (builds each TOA kernel once,
#                                   cached after; see docs/kernel-route.md) and
#                                   the xenial build root's host test (~5 min)
#   scripts/test.sh --ebpf          also the eBPF route's scenarios, Debian 12 and
#                                   Ubuntu 24.04 (see docs/ebpf.md); with
#                                   --all-guests also Debian 11, 13 and Ubuntu 22.04
#   TOA_MOLECULE_GUEST_PREFIX=x-    name the scenarios' guests x-SCENARIO-GUEST
#                                   (default molecule-); cleanup stops only those
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
# shellcheck source=scripts/env.sh
. scripts/env.sh

vm=1
scenarios=${TOA_SCENARIOS:-"default ubuntu1604 failures"}
extra_scenarios=""
all_guests=0
ebpf=0
for a in "$@"; do
	case $a in
	--no-vm) vm=0 ;;
	--all-guests) all_guests=1; scenarios="default ubuntu1604 failures debian11 debian13 ubuntu1804 ubuntu2004 ubuntu2204 ubuntu2404" ;;
	--kernel) extra_scenarios="$extra_scenarios kernel kernel-ubuntu1604"; export TOA_TEST_BUILDROOT=1 ;;
	--ebpf) ebpf=1 ;;
	*) echo "test.sh: unknown option $a (see the header of $0)" >&2; exit 2 ;;
	esac
done
if [ "$ebpf" = 1 ]; then
	extra_scenarios="$extra_scenarios ebpf ebpf-ubuntu2404"
	[ "$all_guests" = 0 ] || extra_scenarios="$extra_scenarios ebpf-debian11 ebpf-debian13 ebpf-ubuntu2204"
fi

bash scripts/setup.sh
export PATH="$TOA_VENV/bin:$PATH"
t_start=$(date +%s)
stage() { printf '\n=== %s (%ss)\n' "$1" "$(( $(date +%s) - t_start ))"; }

# Leave none of our guests behind, even when a stage fails or we are
# interrupted; guests that others started (a demo, a developer's) stay.
if [ "$vm" = 1 ]; then
	cleanup() {
		python3 testbed/toavm.py down --prefix "${TOA_MOLECULE_GUEST_PREFIX:-molecule-}" >/dev/null 2>&1 || true
		python3 testbed/toavm.py down molecule-kmod >/dev/null 2>&1 || true
	}
	trap cleanup EXIT INT TERM
fi

stage "lint: yamllint"
yamllint -s .
stage "lint: ansible-lint (production profile)"
ansible-lint --offline -q
stage "lint: ruff"
ruff check library module_utils filter_plugins tests scripts tools testbed inventories
stage "lint: Python 2.7 compatibility of the target-side code (vermin)"
vermin -q -t=2.7- -t=3.6- --no-tips --violations --eval-annotations library module_utils
# The kernel builder runs on xenial's Python 3.5 inside the build root.
vermin -q -t=3.5- --no-tips --violations tools/build_toa_kernel.py tools/make_toa_patch.py tools/toa_buildroot.py
stage "docs: docs/variables.md and the README's most used variables match argument_specs"
python3 scripts/gen_role_docs.py --check
stage "syntax: every playbook"
for pb in playbooks/*.yml; do
	ansible-playbook --syntax-check -i localhost, "$pb" >/dev/null
	echo "ok  $pb"
done

stage "unit tests: ansible-core $(python3 -c 'import ansible.release as r; print(r.__version__)' 2>/dev/null || echo current)"
pytest -q tests/unit
stage "unit tests: legacy ansible-core 2.16"
"$TOA_VENV_LEGACY/bin/pytest" -q -p no:cacheprovider tests/unit

# The collection collection/galaxy.yml describes, built from library/,
# module_utils/, filter_plugins/ and roles/toa, under ansible-test sanity:
# 2.19 for Python 3.8-3.13, 2.16 for 2.7 and 3.6-3.12 (each Python this
# machine has). About 1 min with ansible-test's venvs cached, 3.5 min cold.
stage "ansible-test sanity: the toa_fleet.toa collection (ansible-core 2.19 and 2.16)"
python3 scripts/sanity.py

stage "host tests: toa_probe in a private network namespace"
pytest -q tests/host
stage "kernel module: compile matrix (amd64 + arm64 cross)"
bash tests/kmod/build.sh

if [ "$vm" = 1 ]; then
	# toa.ko itself in a real kernel: the 80 functional checks, then a seeded
	# abuse run (crafted segments, spoofing, rmmod under 2,000 held connections)
	# and a shortened load test.
	stage "kernel module in a Debian 12 guest: functional checks, abuse (seeded), load"
	python3 testbed/toavm.py up molecule-kmod --guest debian12 >/dev/null
	# SSH host keys (about 1 min): the key toavm.py recorded is checked, a
	# changed one is refused by ansible and by toavm.py (docs/testing.md).
	python3 testbed/hostkey_check.py molecule-kmod
	bash tests/kmod/vm_run.sh molecule-kmod
	# Shortened in CI (20,000 segments, 2 unload cycles: about 30 s). The full
	# size (`vm_run.sh NAME --abuse`: 100,000 segments, 5 cycles, about 2 min
	# idle) is run by hand, figures in docs/testing.md: it passed 6 of 6 runs
	# since the one unexplained stall (see there), but CI is not where to find out.
	# On a failure vm_run.sh prints the guest's kernel console.
	bash tests/kmod/vm_run.sh molecule-kmod --abuse --seed 20261126 --segments 20000 --cycles 2
	# Load test, shortened (30,000 TOA handshakes over 2 flows, 10,000 held
	# at once, rmmod under 5,000 held and handshakes flowing: about 2-3 min).
	# The full size (1,000,000 / 200,000, a 4 GB guest) is a command in
	# docs/load-test.md, with its figures.
	bash tests/kmod/vm_run.sh molecule-kmod --load --handshakes 30000 --hold 10000 --rmmod-hold 5000 --flows 2
	python3 testbed/toavm.py down molecule-kmod

	# The failures scenario runs all 16 bad-input cases (11 min on an idle
	# machine); TOA_FAILURE_CASES="checksum,lockdown" picks a subset.
	for s in $scenarios $extra_scenarios; do
		case $s in ubuntu1604|ubuntu1804|kernel-ubuntu1604) legacy=1 ;; *) legacy=0 ;; esac
		if [ "$legacy" = 1 ]; then
			# The legacy fleet (Python 2.7 / 3.6 targets) is managed by ansible-core 2.16.
			stage "molecule scenario: $s (legacy ansible-core 2.16)"
			PATH="$TOA_VENV_LEGACY/bin:$PATH" molecule test -s "$s"
		else
			stage "molecule scenario: $s"
			molecule test -s "$s"
		fi
	done
fi
stage "all tests passed"
