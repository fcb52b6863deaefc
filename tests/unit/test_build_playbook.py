"""playbooks/build.yml outside the test bed: no default for where it works and publishes."""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from role_tasks import ROOT, find_task, render_all

BUILD = os.path.join(ROOT, "playbooks", "build.yml")
PLACES = ("toa_build_cache", "toa_build_dir", "toa_build_mirror_dir", "toa_build_mirror_url")
CHECK = "Check that the build knows where to work and where the fleet downloads from"


def play():
    with open(BUILD) as handle:
        return yaml.safe_load(handle)[0]


def test_no_test_bed_default_for_the_cache_or_the_mirror():
    # Play vars would also override the inventory's values: none may be defined there.
    assert not set(PLACES) & set(play()["vars"])
    with open(BUILD) as handle:
        text = handle.read()
    assert "10.0.2.100" not in text and "TOA_CACHE" not in text


def run_build(*extra):
    program = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([program, "-i", "localhost,", "-c", "local", BUILD] + list(extra),
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


def test_without_them_the_build_stops_first_and_names_both():
    rc, out = run_build()
    assert rc != 0
    assert "TASK [" + CHECK + "]" in out
    assert "Read the build host's release" not in out  # nothing ran before the check
    assert ("Set toa_build_cache (a directory on localhost that outlives the run, e.g. "
            "/srv/toa-build, not an AWX job container that goes with the job; or toa_build_dir "
            "and toa_build_mirror_dir) and toa_build_mirror_url (the URL the fleet reaches the "
            "published mirror directory by) in the build host's inventory or with -e.") in out


def test_a_missing_mirror_url_alone_is_named_alone():
    rc, out = run_build("-e", "toa_build_cache=/srv/toa-build")
    assert rc != 0
    assert "Set toa_build_mirror_url (the URL the fleet reaches" in out
    assert "Set toa_build_cache" not in out


def inventory_vars():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "inventories", "local", "toavm_guests.py")],
                          capture_output=True, text=True, check=True,
                          env=dict(os.environ, TOA_CACHE="/var/tmp/toa-cache-test"))
    return json.loads(proc.stdout)["all"]["vars"]


def test_the_test_bed_inventory_sets_them_and_the_check_passes():
    sys.path.insert(0, os.path.join(ROOT, "testbed"))
    import toavm
    found = inventory_vars()
    assert found == {"toa_build_cache": "/var/tmp/toa-cache-test",
                     "toa_build_mirror_url": "http://%s:%d/toa-mirror/" % toavm.GUEST_PROXY}
    task = find_task("playbooks/build.yml", CHECK)
    assert render_all(task["ansible.builtin.assert"]["that"], play()["vars"], inventory_hostname="localhost",
                      **found)
    assert not render_all(task["ansible.builtin.assert"]["that"], play()["vars"],
                          inventory_hostname="localhost")
    # toa_build_dir and toa_build_mirror_dir may stand in for the cache.
    assert render_all(task["ansible.builtin.assert"]["that"], play()["vars"], inventory_hostname="b",
                      toa_build_dir="/srv/k", toa_build_mirror_dir="/srv/m",
                      toa_build_mirror_url="https://m.example/")


def debian12_host():
    with open("/etc/os-release") as handle:
        text = handle.read()
    return 'ID=debian' in text and 'VERSION_ID="12"' in text


@pytest.mark.skipif(not debian12_host(), reason="build.yml refuses a build host that is not Debian 12 first")
def test_missing_build_packages_are_named_and_stop_the_build(tmp_path):
    # dpkg is installed on any Debian host; the other name exists nowhere.
    rc, out = run_build("-e", "toa_build_cache=%s" % tmp_path, "-e", "toa_build_mirror_url=http://m.example/",
                        "-e", '{"toa_build_deps": ["dpkg", "toa-no-such-package"]}',
                        "-e", "ansible_python_interpreter=%s" % sys.executable)
    assert rc != 0
    assert re.search(r"TASK \[Install the missing build packages\] \** skipping: \[localhost\]", out)
    assert ("localhost lacks toa-no-such-package. Install them (apt-get install --no-install-recommends "
            "toa-no-such-package) or run with -e toa_build_install_deps=true as root.") in out
    assert "Create the build directories" not in out and os.listdir(str(tmp_path)) == []


def kmod_play():
    with open(BUILD) as handle:
        plays = yaml.safe_load(handle)
    return [p for p in plays if p["name"].startswith("Build TOA module packages")][0]


def test_module_releases_are_the_given_ones_then_the_fleets():
    from role_tasks import render
    play_vars = kmod_play()["vars"]

    def requested(**variables):
        given = render(play_vars["__toa_kmod_given"], None, **variables)
        return render(play_vars["__toa_kmod_requested"], None, __toa_kmod_given=given, **variables)

    fleet = {"groups": {"all": ["web1", "web2", "db1"]},
             "hostvars": {"web1": {"__toa_kmod_fleet_kernels": ["6.1.0-57-amd64", "6.1.0-56-amd64"]},
                          "web2": {"__toa_kmod_fleet_kernels": ["6.1.0-57-amd64"]},
                          "db1": {}}}  # not in the collecting play: nothing from it
    # The tool builds each release once; the list keeps repeats for the count it reports.
    assert requested(toa_build_kmod_releases=["5.10.0-30-amd64"], **fleet) == [
        "5.10.0-30-amd64", "6.1.0-57-amd64", "6.1.0-56-amd64", "6.1.0-57-amd64"]
    assert requested(toa_build_kmod_releases="6.1.0-57-amd64,6.1.0-56-amd64",
                     groups={"all": []}, hostvars={}) == ["6.1.0-57-amd64,6.1.0-56-amd64"]
    assert requested(groups={"all": []}, hostvars={}) == []


# -- the ubuntu1604 target: a xenial build root on any build host ------------------------------

START = "Start the kernel build (runs in the background)"


def build_argv(target, **extra):
    from role_tasks import render
    play_vars = play()["vars"]
    task = find_task("playbooks/build.yml", START)
    variables = dict(play_vars, toa_build_target=target, toa_build_cache="/srv/c", toa_build_mirror_url="http://m/")
    variables.update(extra)
    recipe = render(play_vars["__toa_recipe"], None, **variables)
    variables.update(__toa_recipe=recipe, __toa_build_dir="/srv/c/kbuild", __toa_build_mirror_dir="/srv/c/mirror",
                     __toa_tools="/srv/c/kbuild/tools",
                     __toa_in_root=render(play_vars["__toa_in_root"], None, __toa_recipe=recipe))
    return render(task["vars"]["__toa_argv"], None, **variables)


def test_ubuntu1604_builds_in_the_xenial_root_with_the_ubuntu_release_name():
    argv = build_argv("ubuntu1604", toa_buildroot={"stdout": "/srv/c/buildroots/xenial-0123\n"})
    pairs = dict(zip(argv, argv[1:]))
    assert pairs["--buildroot"] == "/srv/c/buildroots/xenial-0123"
    assert pairs["--series"] == "4.4.0" and pairs["--version"] == "16.04"
    assert pairs["--config-from-headers"] == "linux-headers-generic"
    assert pairs["--lsmod"] == "/srv/c/kbuild/tools/kernel-recipes/ubuntu1604-qemu.lsmod"
    assert "--localversion=-{abi}-toa" in argv and "--configure-only" not in argv
    assert os.path.isfile(os.path.join(ROOT, "tools", "kernel-recipes", "ubuntu1604-qemu.lsmod"))
    quick = build_argv("ubuntu1604", toa_buildroot={"stdout": "/r"}, toa_build_configure_only=True)
    assert "--configure-only" in quick


def test_debian12_keeps_its_native_build():
    argv = build_argv("debian12")
    assert "--buildroot" not in argv and not [a for a in argv if a.startswith("--localversion")]
    assert dict(zip(argv, argv[1:]))["--major"] == "12"


def test_a_build_root_host_needs_debootstrap_not_the_kernel_build_packages():
    from role_tasks import render
    play_vars = play()["vars"]
    dpkg = {"stdout_lines": ["python3 install ok installed", "dpkg install ok installed"]}
    for target, missing in (("ubuntu1604", ["debootstrap"]), ("debian12", None)):
        recipe = render(play_vars["__toa_recipe"], None, **dict(play_vars, toa_build_target=target))
        found = render(play_vars["__toa_missing"], None, **dict(
            play_vars, __toa_recipe=recipe, toa_build_dpkg=dpkg,
            __toa_in_root=render(play_vars["__toa_in_root"], None, __toa_recipe=recipe),
            __toa_installed=render(play_vars["__toa_installed"], None, toa_build_dpkg=dpkg)))
        if missing:
            assert found == missing
        else:
            assert "gcc" in found and "debootstrap" not in found
