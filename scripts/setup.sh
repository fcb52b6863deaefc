#!/usr/bin/env bash
# Set up everything this project needs on a fresh Debian 12 machine:
# Debian packages (QEMU, debootstrap, GRUB tools, cross compiler for the
# arm64 compile test, clang and libbpf headers for the eBPF object, rpm to parse
# the generated EL spec), and three Python virtualenvs (current and legacy
# ansible-core, and ansible-test 2.16 for the sanity tests on the legacy
# Pythons) from pinned requirements.  Idempotent: reruns are fast.
#   scripts/setup.sh        everything the tests need
#   scripts/setup.sh awx    only what running the playbooks in execution
#                           environments needs (podman, runc, ansible-builder,
#                           ansible-runner): tools/build_ee.py calls it
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/env.sh
. "$here/scripts/env.sh"

install_debs() {   # install_debs PACKAGE...: the ones not installed yet
	local d missing=()
	for d in "$@"; do
		dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q 'install ok installed' || missing+=("$d")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "setup: installing Debian packages: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
}

make_venv() {   # make_venv DIR REQUIREMENTS
	local dir=$1 req=$2 stamp
	stamp=$(sha256sum "$req" | cut -c1-16)
	if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then
		return 0
	fi
	echo "setup: building virtualenv $dir from $(basename "$req")"
	rm -rf "$dir"
	python3 -m venv "$dir"
	"$dir/bin/pip" install -q --upgrade pip >/dev/null
	"$dir/bin/pip" install -q -r "$req"
	echo "$stamp" > "$dir/.stamp"
}

if [ "${1:-}" = awx ]; then
	# Debian's podman 4.3 runs here only with runc (crun refuses the hybrid
	# cgroup layout); debootstrap makes the local EE base image.
	install_debs podman runc debootstrap python3-venv
	make_venv "$TOA_VENV_AWX" "$here/requirements/awx.txt"
	echo "setup: ready for execution environments (venv $TOA_VENV_AWX)"
	exit 0
elif [ $# -gt 0 ]; then
	echo "usage: scripts/setup.sh [awx]" >&2
	exit 2
fi

debs=(qemu-system-x86 qemu-utils debootstrap grub-pc-bin grub2-common fdisk
      openssh-client e2fsprogs xz-utils zstd iproute2 python3-venv
      make gcc libc6-dev bc flex bison libelf-dev libssl-dev
      gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu
      chromium
      patch rsync kmod cpio dpkg-dev fakeroot
      clang-14 llvm-14 libbpf-dev
      rpm)   # rpmspec: the generated EL kmod spec is parsed by rpm itself
install_debs "${debs[@]}"
make_venv "$TOA_VENV" "$here/requirements/dev.txt"
make_venv "$TOA_VENV_LEGACY" "$here/requirements/legacy.txt"
make_venv "$TOA_VENV_SANITY_LEGACY" "$here/requirements/sanity-legacy.txt"
echo "setup: ready (venv $TOA_VENV, legacy venv $TOA_VENV_LEGACY, sanity venv $TOA_VENV_SANITY_LEGACY, cache $TOA_CACHE)"
