"""Checks on the toa role's data: the vendor catalogue, defaults against
argument_specs, the source version, the generated table of docs/variables.md
and the README's hand-picked variables."""

import os
import re
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE = os.path.join(ROOT, "roles", "toa")
SEED_URL = "http://toakernel-1253438722.cossh.myqcloud.com/"

# The seed guide's four prebuilt TOA kernels, transcribed from its download links
# (the guide itself is not part of this repository): (distribution, release,
# arch, uname -r once booted, image file, headers file).
SEED_ROWS = [
    ("centos", "6", "x86_64", "2.6.32-220.23.1.el6.toa.x86_64",
     "kernel-2.6.32-220.23.1.el6.toa.x86_64.rpm", None),
    ("centos", "7", "x86_64", "3.10.0-693.el7.centos.toa.x86_64",
     "kernel-3.10.0-693.el7.centos.toa.x86_64.rpm", None),
    ("ubuntu", "16.04", "x86_64", "4.4.87.toa",
     "linux-image-4.4.87.toa_1.0_amd64.deb", "linux-headers-4.4.87.toa_1.0_amd64.deb"),
    ("debian", "8", "x86_64", "3.16.43.toa",
     "linux-image-3.16.43.toa_1.0_amd64.deb", "linux-headers-3.16.43.toa_1.0_amd64.deb"),
]
ROW_KEYS = {"id", "distribution", "arch", "kernel", "format", "image", "headers", "sha256"}
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def load(*parts):
    with open(os.path.join(ROLE, *parts)) as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def catalogue():
    return load("vars", "main.yml")["toa_catalogue_default"]


@pytest.fixture(scope="module")
def defaults():
    return load("defaults", "main.yml")


@pytest.fixture(scope="module")
def options():
    return load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]


def release(row):
    return str(row.get("version") or row.get("major"))


def test_catalogue_rows_are_well_formed(catalogue):
    ids = [row["id"] for row in catalogue]
    assert len(ids) == len(set(ids)), "catalogue ids must be unique"
    for row in catalogue:
        assert ROW_KEYS <= set(row), "%s lacks %s" % (row["id"], ROW_KEYS - set(row))
        assert ("version" in row) != ("major" in row), "%s: give version or major" % row["id"]
        assert isinstance(row.get("version", row.get("major")), str), \
            "%s: quote the release so YAML keeps it a string" % row["id"]
        assert row["format"] in ("rpm", "deb")
        assert row["image"].endswith("." + row["format"])
        if row["headers"] is not None:
            assert row["headers"].endswith("." + row["format"])
        assert isinstance(row["sha256"], dict)
        assert isinstance(row.get("module_params", True), bool), row["id"]
        for name, digest in row["sha256"].items():
            assert name in (row["image"], row["headers"])
            assert SHA256_RE.match(digest), "%s: %s is not sha256 hex" % (row["id"], name)


def test_catalogue_kernel_matches_its_file_name(catalogue):
    # uname -r of the installed kernel is spelt inside the package file name.
    for row in catalogue:
        if row["format"] == "rpm":
            assert row["image"] == "kernel-%s.rpm" % row["kernel"]
        else:
            assert row["image"].startswith("linux-image-%s_" % row["kernel"])
            if row["headers"]:
                assert row["headers"].startswith("linux-headers-%s_" % row["kernel"])
        assert re.search(r"(^|[-._])toa($|[-._])", row["kernel"]), row["kernel"]


def test_vendor_rows_take_no_module_parameters(catalogue):
    # The vendor's LVS-derived module has no parameters: the role must not pass
    # toa_params to it (an unknown parameter can make modprobe refuse the module).
    for row in catalogue:
        assert row["module_params"] is False, row["id"]


def test_catalogue_holds_the_seed_rows(catalogue):
    got = sorted((row["distribution"], release(row), row["arch"], row["kernel"], row["image"],
                  row["headers"]) for row in catalogue)
    assert got == sorted(SEED_ROWS)


def test_default_base_url_is_the_seeds(defaults):
    assert defaults["toa_package_base_url"] == SEED_URL


def test_every_default_is_specified_and_every_spec_has_a_default(defaults, options):
    assert set(defaults) == set(options)


@pytest.mark.parametrize("key", ["type", "description"])
def test_every_option_has(options, key):
    missing = [name for name, spec in options.items() if not spec.get(key)]
    assert not missing, "options without %s: %s" % (key, missing)


def test_spec_defaults_equal_role_defaults(defaults, options):
    for name, spec in options.items():
        assert "default" in spec, name
        assert spec["default"] == defaults[name], name


def test_defaults_are_allowed_choices(defaults, options):
    for name, spec in options.items():
        if "choices" not in spec:
            continue
        values = defaults[name] if isinstance(defaults[name], list) else [defaults[name]]
        for value in values:
            assert value in spec["choices"], "%s=%r not in %r" % (name, value, spec["choices"])


def test_default_types_match_their_spec(defaults, options):
    types = {"str": str, "path": str, "bool": bool, "int": int, "dict": dict, "list": list}
    for name, spec in options.items():
        assert isinstance(defaults[name], types[spec["type"]]), name


def test_inputs_are_role_prefixed(defaults):
    assert all(name.startswith("toa_") for name in defaults)


def test_src_version_matches_dkms_conf(defaults):
    path = os.path.join(ROLE, "files", "toa-src", "dkms.conf")
    with open(path) as handle:  # the module route needs it: a missing file fails
        match = re.search(r'^PACKAGE_VERSION=["\']?([^"\'\s]+)', handle.read(), re.M)
    assert match, "dkms.conf has no PACKAGE_VERSION"
    assert match.group(1) == defaults["toa_src_version"]


def test_src_version_matches_version_file(defaults):
    path = os.path.join(ROLE, "files", "toa-src", "VERSION")
    with open(path) as handle:
        assert handle.read().strip() == defaults["toa_src_version"]


def test_route_task_file_for_every_route(options):
    for route in ("package", "module", "kernel", "ebpf"):
        assert os.path.exists(os.path.join(ROLE, "tasks", "route_%s.yml" % route)), route
    assert set(options["toa_strategy"]["choices"]) == {"auto", "package", "module", "kernel", "ebpf"}


GEN_ROLE_DOCS = os.path.join(ROOT, "scripts", "gen_role_docs.py")


def gen_role_docs(*args):
    return subprocess.run([sys.executable, GEN_ROLE_DOCS, "--check"] + list(args),
                          capture_output=True, text=True)


def test_variables_page_and_readme_picks_are_current():
    result = gen_role_docs()
    assert result.returncode == 0, result.stderr
    with open(os.path.join(ROOT, "docs", "variables.md")) as handle:
        page = handle.read()
    for name in load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]:
        assert "| `%s` |" % name in page, name


def test_a_stale_variables_page_is_caught(tmp_path):
    with open(os.path.join(ROOT, "docs", "variables.md")) as handle:
        page = handle.read()
    stale = tmp_path / "variables.md"
    stale.write_text(page.replace("| `toa_reboot_timeout` | int | `900` |",
                                  "| `toa_reboot_timeout` | int | `600` |"))
    result = gen_role_docs("--page", str(stale))
    assert result.returncode == 1
    assert "out of date" in result.stderr and "`900`" in result.stderr


@pytest.mark.parametrize("edit,message", [
    (("| `toa_reboot` | `auto` |", "| `toa_reboot` | `never` |"),
     "shows `never` as the default of `toa_reboot`; the role's is `auto`"),
    (("| `toa_autoload` |", "| `toa_autoload_at_boot` |"),
     "names `toa_autoload_at_boot`, which the role does not have"),
    (("<!-- END MOST USED VARIABLES -->", "<!-- END -->"),
     "lacks the BEGIN/END MOST USED VARIABLES markers"),
])
def test_a_wrong_readme_pick_is_caught(tmp_path, edit, message):
    with open(os.path.join(ROOT, "README.md")) as handle:
        readme = handle.read()
    assert edit[0] in readme
    wrong = tmp_path / "README.md"
    wrong.write_text(readme.replace(edit[0], edit[1]))
    result = gen_role_docs("--readme", str(wrong))
    assert result.returncode == 1
    assert message in result.stderr, result.stderr


# The role's catalogue through the route selection toa_facts runs (pure logic in
# module_utils/toa_route.py), on the hosts the seed names.
SEED_HOSTS = [
    # (os-release, redhat-release, uname -r, expected row id)
    ("", "CentOS release 6.10 (Final)", "2.6.32-754.el6.x86_64", "centos6-x86_64"),
    ('ID="centos"\nVERSION_ID="7"\nID_LIKE="rhel fedora"\n', "CentOS Linux release 7.9.2009 (Core)",
     "3.10.0-1160.el7.x86_64", "centos7-x86_64"),
    ('ID=ubuntu\nVERSION_ID="16.04"\nID_LIKE=debian\n', "", "4.4.0-210-generic", "ubuntu1604-x86_64"),
    ('ID=debian\nVERSION_ID="8"\n', "", "3.16.0-11-amd64", "debian8-x86_64"),
]


def role_catalogue(extra=()):
    """What tasks/facts.yml hands toa_facts: default rows, then the user's."""
    return load("vars", "main.yml")["toa_catalogue_default"] + list(extra)


@pytest.mark.parametrize("os_release,redhat_release,kernel,row_id", SEED_HOSTS)
def test_seed_hosts_take_the_package_route(os_release, redhat_release, kernel, row_id):
    toa_route = pytest.importorskip("toa_route")
    host = toa_route.identify_host(os_release, redhat_release, "x86_64", kernel, "systemd")
    row = [r for r in role_catalogue() if r["id"] == row_id][0]
    route = toa_route.select_route(host, role_catalogue(), base_url=SEED_URL,
                                   checksums={row["image"]: "a" * 64}, allow_older_kernel=True)
    assert route["route"] == "package"
    assert route["package"]["id"] == row_id
    assert route["package"]["kernel"] == row["kernel"]
    assert [f["url"] for f in route["package"]["files"]] == [SEED_URL + row["image"]]


def test_seed_host_without_checksum_takes_the_module_route_and_says_how_to_pin_it():
    toa_route = pytest.importorskip("toa_route")
    host = toa_route.identify_host('ID=debian\nVERSION_ID="8"\n', "", "x86_64", "3.16.0-11-amd64", "systemd")
    route = toa_route.select_route(host, role_catalogue(), base_url=SEED_URL)
    assert route["route"] == "module"
    assert "toa_package_checksums" in route["reason"]
    assert "toa_allow_unverified_packages" in route["reason"]
    with pytest.raises(toa_route.RouteError) as err:
        toa_route.select_route(host, role_catalogue(), strategy="package", base_url=SEED_URL)
    assert "toa_package_checksums" in str(err.value)


def test_current_debian_takes_the_module_route():
    toa_route = pytest.importorskip("toa_route")
    host = toa_route.identify_host('ID=debian\nVERSION_ID="12"\n', "", "x86_64", "6.1.0-28-amd64", "systemd")
    assert toa_route.select_route(host, role_catalogue())["route"] == "module"


def test_user_row_with_a_default_id_replaces_the_default_row():
    toa_route = pytest.importorskip("toa_route")
    host = toa_route.identify_host('ID=debian\nVERSION_ID="8"\n', "", "x86_64", "3.16.0-11-amd64", "systemd")
    mine = dict(id="debian8-x86_64", distribution="debian", major="8", arch="x86_64",
                kernel="3.16.99.toa", format="deb", image="linux-image-3.16.99.toa_2.0_amd64.deb",
                headers=None, sha256={"linux-image-3.16.99.toa_2.0_amd64.deb": "b" * 64})
    route = toa_route.select_route(host, role_catalogue([mine]), base_url="file:///srv/mirror/")
    assert route["package"]["kernel"] == "3.16.99.toa"
    assert route["package"]["files"][0]["url"] == "file:///srv/mirror/linux-image-3.16.99.toa_2.0_amd64.deb"
    assert route["package"]["verified"]
