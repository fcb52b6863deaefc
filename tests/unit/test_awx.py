"""The project as an AWX/AAP project: execution environments and project files.

`ansible-builder create` renders each execution-environment file into a build
context (no container engine needed); the tests check that the Containerfile
installs exactly the pinned ansible-core the controller tooling uses, an
ansible-runner for AWX and the SSH client, on the documented base image.
Building the images and running the playbooks in them is proven on real
guests by tests/awx/run_jobs.py (tools/build_ee.py builds them); the
build-argument and certificate logic of that tool is tested below.
"""

import configparser
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read(*parts):
    with open(os.path.join(ROOT, *parts)) as handle:
        return handle.read()


def _pin(requirements, package):
    """The version `package==X` pins in a requirements file."""
    match = re.search(r"^%s==(\S+)\s*$" % re.escape(package), _read("requirements", requirements), re.M)
    assert match, "requirements/%s pins no %s" % (requirements, package)
    return match.group(1)


def _builder():
    """ansible-builder from this interpreter's virtualenv, else from PATH."""
    local = os.path.join(os.path.dirname(sys.executable), "ansible-builder")
    if os.access(local, os.X_OK):
        return local
    return shutil.which("ansible-builder")


EE_FILES = [
    # file, requirements file whose ansible-core pin the image must carry, tag
    ("execution-environment.yml", "dev.txt", "toa-fleet-ee:2.19"),
    ("execution-environment-legacy.yml", "legacy.txt", "toa-fleet-ee-legacy:2.16"),
]


@pytest.mark.parametrize("ee_file,requirements,tag", EE_FILES)
def test_definition_pins_the_controller_ansible_core(ee_file, requirements, tag):
    ee = yaml.safe_load(_read(ee_file))
    assert ee["version"] == 3
    deps = ee["dependencies"]
    assert deps["ansible_core"]["package_pip"] == "ansible-core==%s" % _pin(requirements, "ansible-core")
    assert re.match(r"^ansible-runner==\d+\.\d+\.\d+$", deps["ansible_runner"]["package_pip"])
    # ansible-core >= 2.18 needs Python >= 3.11 on the controller; 2.16 >= 3.10.
    assert deps["python_interpreter"]["python_path"] == "/usr/bin/python3.11"
    assert "galaxy" not in deps, "the playbooks need no collection; requirements.yml lists none"
    assert ee["options"]["tags"] == [tag]


@pytest.mark.parametrize("ee_file,requirements,tag", EE_FILES)
def test_ansible_builder_creates_the_build_context(tmp_path, ee_file, requirements, tag):
    builder = _builder()
    if not builder:
        pytest.skip("ansible-builder is not installed (requirements/dev.txt pins it)")
    context = tmp_path / "context"
    proc = subprocess.run(
        [builder, "create", "-f", os.path.join(ROOT, ee_file), "--context", str(context),
         "--output-filename", "Containerfile"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (context / "Containerfile").read_text()
    core = _pin(requirements, "ansible-core")
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.11"' in containerfile
    assert 'ARG PKGMGR="/usr/bin/dnf"' in containerfile
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="([^"]*)"$', containerfile, re.M)
    assert refs, containerfile
    assert refs.group(1).split() == ["ansible-core==%s" % core, "ansible-runner==2.4.3"]
    # Multi-stage build whose final stage is an EE AWX can run.
    assert "FROM $EE_BASE_IMAGE AS base" in containerfile
    assert "FROM base AS final" in containerfile
    assert "LABEL ansible-execution-environment=true" in containerfile
    assert "ansible-galaxy" not in containerfile, "no collection to install"
    bindep = (context / "_build" / "bindep.txt").read_text().split("\n")
    assert "openssh-clients [platform:rpm]" in bindep
    assert "sshpass [platform:rpm]" in bindep
    # Debian's names, for a Debian base (tools/build_ee.py --local-base builds on one).
    assert "openssh-client [platform:dpkg]" in bindep
    assert "sshpass [platform:dpkg]" in bindep
    scripts = sorted(os.listdir(str(context / "_build" / "scripts")))
    for script in ("assemble", "check_ansible", "entrypoint", "install-from-bindep", "introspect.py"):
        assert script in scripts


def test_project_needs_no_galaxy_content():
    """AWX installs collections from these files and roles from roles/requirements.yml."""
    for path in ("requirements.yml", os.path.join("collections", "requirements.yml")):
        data = yaml.safe_load(_read(path))
        assert data == {"collections": []}, path
    assert not os.path.exists(os.path.join(ROOT, "roles", "requirements.yml"))
    meta = yaml.safe_load(_read("roles", "toa", "meta", "main.yml"))
    assert meta["dependencies"] == []


def test_ansible_cfg_paths_resolve_from_the_project_root():
    """AWX runs from the project root and reads ./ansible.cfg: every path must exist there."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "ansible.cfg"))
    defaults = cfg["defaults"]
    for key in ("library", "module_utils", "roles_path", "filter_plugins"):
        assert key in defaults, key
        path = os.path.normpath(os.path.join(ROOT, defaults[key]))
        assert os.path.isdir(path), "%s = %s does not exist" % (key, defaults[key])
    # The default inventory lists local test VMs; AWX passes its own (-i) instead.
    assert os.path.isfile(os.path.join(ROOT, defaults["inventory"]))
    assert defaults.get("become_ask_pass", "False").lower() in ("false", "0", "no")


def test_the_awx_job_check_reads_the_verify_task_that_exists():
    """tests/awx/run_jobs.py finds the probes in the toa_verify task's event by its name."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "run_jobs", os.path.join(ROOT, "tests", "awx", "run_jobs.py"))
    run_jobs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_jobs)
    tasks = yaml.safe_load(_read("roles", "toa", "tasks", "verify_host.yml"))
    verify = [task for task in tasks if "toa_verify" in task]
    assert [task["name"] for task in verify] == [run_jobs.VERIFY_TASK]
