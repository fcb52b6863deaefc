"""Host identification and route selection (module_utils/toa_route.py)."""

import copy

import pytest
import toa_route
from conftest import fixture_text, load_catalogue
from toa_route import (
    RouteError,
    identify_host,
    is_toa_kernel,
    parse_dkms_status,
    parse_os_release,
    parse_redhat_release,
    select_route,
)

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4
MIRROR = "https://mirror.example.org/toa/"


def osr(name):
    return fixture_text("os-release", name) if name else ""


def rhr(name):
    return fixture_text("redhat-release", name) if name else ""


# name: (os-release, redhat-release, uname -m, uname -r, /proc/1/comm)
HOSTS = {
    "centos6": (None, "centos6", "x86_64", "2.6.32-754.35.1.el6.x86_64", "init"),
    "rhel6": (None, "rhel6", "x86_64", "2.6.32-754.el6.x86_64", "init"),
    "centos7": ("centos7", "centos7", "x86_64", "3.10.0-1160.el7.x86_64", "systemd"),
    "rocky9": ("rocky9", "rocky9", "x86_64", "5.14.0-362.8.1.el9_3.x86_64", "systemd"),
    "debian8": ("debian8", None, "x86_64", "3.16.0-11-amd64", "init"),
    "debian11": ("debian11", None, "x86_64", "5.10.0-28-amd64", "systemd"),
    "debian12": ("debian12", None, "x86_64", "6.1.0-18-amd64", "systemd"),
    "debian13": ("debian13", None, "x86_64", "6.12.48+deb13-amd64", "systemd"),
    "debian12-arm": ("debian12", None, "aarch64", "6.1.0-18-arm64", "systemd"),
    "ubuntu1604": ("ubuntu1604", None, "x86_64", "4.4.0-210-generic", "systemd"),
    "ubuntu1604-arm": ("ubuntu1604", None, "arm64", "4.4.0-210-generic", "systemd"),
    "ubuntu2204": ("ubuntu2204", None, "x86_64", "5.15.0-105-generic", "systemd"),
    "ubuntu2404": ("ubuntu2404", None, "x86_64", "6.8.0-45-generic", "systemd"),
    "debian12-i686": ("debian12", None, "i686", "6.1.0-18-686-pae", "systemd"),
    "alpine": ("alpine319", None, "x86_64", "6.6.14-0-lts", "init"),
    "arch": ("arch", None, "x86_64", "6.7.4-arch1-1", "systemd"),
}


# uname -v (/proc/sys/kernel/version) and /proc/version_signature where they say more
# than uname -r: the upstream version of a Debian or Ubuntu kernel.
UNAME_V = {
    "debian8": "#1 SMP Debian 3.16.84-1 (2020-06-09)",
    "debian12": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)",
    "ubuntu1604": "#242-Ubuntu SMP Fri Apr 16 09:57:56 UTC 2021",
    "centos7": "#1 SMP Tue Nov 3 19:32:30 UTC 2020",
}
SIGNATURE = {"ubuntu1604": "Ubuntu 4.4.0-210.242-generic 4.4.262\n"}


def host(name, **changes):
    os_release, redhat_release, machine, kernel, comm = HOSTS[name]
    result = identify_host(osr(os_release), rhr(redhat_release), machine, kernel, comm,
                           kernel_version=UNAME_V.get(name, ""),
                           version_signature=SIGNATURE.get(name, ""))
    result.update(changes)
    return result


def checksums_for(*names):
    return {name: SHA_A for name in names}


# -- parsing -----------------------------------------------------------------

def test_parse_os_release_unquotes_and_skips_comments():
    text = '# comment\nID="centos"\nNAME=\'My OS\'\nVERSION_ID=7\nESC="a\\"b"\n\nbad line\n'
    assert parse_os_release(text) == {"ID": "centos", "NAME": "My OS", "VERSION_ID": "7",
                                      "ESC": 'a"b'}


def test_parse_os_release_empty():
    assert parse_os_release("") == {}
    assert parse_os_release(None) == {}


@pytest.mark.parametrize("name, distribution, version, major, codename", [
    ("centos6", "CentOS", "6.10", "6", "Final"),
    ("centos7", "CentOS", "7.9.2009", "7", "Core"),
    ("rhel6", "RedHat", "6.10", "6", "Santiago"),
    ("rocky9", "Rocky", "9.3", "9", "Blue Onyx"),
])
def test_parse_redhat_release(name, distribution, version, major, codename):
    parsed = parse_redhat_release(rhr(name))
    assert (parsed["distribution"], parsed["version"], parsed["major"], parsed["codename"]) == (
        distribution, version, major, codename)


def test_parse_redhat_release_rejects_other_text():
    assert parse_redhat_release("Debian GNU/Linux 8\n") == {}
    assert parse_redhat_release("") == {}


@pytest.mark.parametrize("name, expected", [
    ("centos6", ("CentOS", "centos", "6.10", "6", "RedHat", "x86_64", "upstart")),
    ("rhel6", ("RedHat", "rhel", "6.10", "6", "RedHat", "x86_64", "upstart")),
    ("centos7", ("CentOS", "centos", "7", "7", "RedHat", "x86_64", "systemd")),
    ("rocky9", ("Rocky", "rocky", "9.3", "9", "RedHat", "x86_64", "systemd")),
    ("debian8", ("Debian", "debian", "8", "8", "Debian", "x86_64", "sysvinit")),
    ("debian11", ("Debian", "debian", "11", "11", "Debian", "x86_64", "systemd")),
    ("debian12", ("Debian", "debian", "12", "12", "Debian", "x86_64", "systemd")),
    ("debian13", ("Debian", "debian", "13", "13", "Debian", "x86_64", "systemd")),
    ("debian12-arm", ("Debian", "debian", "12", "12", "Debian", "aarch64", "systemd")),
    ("ubuntu1604", ("Ubuntu", "ubuntu", "16.04", "16", "Debian", "x86_64", "systemd")),
    ("ubuntu1604-arm", ("Ubuntu", "ubuntu", "16.04", "16", "Debian", "aarch64", "systemd")),
    ("ubuntu2204", ("Ubuntu", "ubuntu", "22.04", "22", "Debian", "x86_64", "systemd")),
    ("ubuntu2404", ("Ubuntu", "ubuntu", "24.04", "24", "Debian", "x86_64", "systemd")),
    ("debian12-i686", ("Debian", "debian", "12", "12", "Debian", "i386", "systemd")),
    ("alpine", ("Alpine", "alpine", "3.19.1", "3", "Unknown", "x86_64", "sysvinit")),
    ("arch", ("Archlinux", "arch", "", "", "Unknown", "x86_64", "systemd")),
])
def test_identify_host(name, expected):
    found = host(name)
    assert (found["distribution"], found["id"], found["version"], found["major"],
            found["family"], found["arch"], found["init"]) == expected
    assert found["kernel"] == HOSTS[name][3]


def test_identify_host_keeps_full_redhat_version():
    assert host("centos7")["full_version"] == "7.9.2009"
    assert host("debian12")["full_version"] == "12"


def test_identify_host_unknown_init_and_upstart_ubuntu():
    trusty = 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="14.04"\n'
    assert identify_host(trusty, "", "x86_64", "3.13.0-170-generic", "init\n")["init"] == "upstart"
    assert identify_host(trusty, "", "x86_64", "3.13.0-170-generic", "")["init"] == "unknown"
    assert identify_host(trusty, "", "x86_64", "3.13.0-170-generic", "runit")["init"] == "unknown"


def test_identify_host_derivative_uses_id_like():
    text = 'ID=pop\nID_LIKE="ubuntu debian"\nVERSION_ID="22.04"\nNAME="Pop!_OS"\n'
    found = identify_host(text, "", "amd64", "6.9.3-76060903-generic", "systemd")
    assert (found["family"], found["distribution"], found["arch"]) == ("Debian", "Pop!_OS",
                                                                      "x86_64")


@pytest.mark.parametrize("release, expected", [
    ("2.6.32-220.23.1.el6.toa.x86_64", True),
    ("3.10.0-693.el7.centos.toa.x86_64", True),
    ("4.4.87.toa", True),
    ("3.16.43.toa", True),
    ("6.1.0-18-amd64", False),
    ("5.4.0-toaster", False),
    ("", False),
])
def test_is_toa_kernel(release, expected):
    assert is_toa_kernel(release) is expected


# -- route selection -----------------------------------------------------------
# The realistic hosts run kernels newer than the vendor's 2017 builds. Tests of the
# package plan itself (files, URLs, checksums) therefore opt in with
# allow_older_kernel=True; the refusal has its own tests further down.

@pytest.mark.parametrize("name, route, row", [
    ("centos6", "package", "centos6-x86_64"),
    ("centos7", "package", "centos7-x86_64"),
    ("ubuntu1604", "package", "ubuntu1604-x86_64"),
    ("debian8", "package", "debian8-x86_64"),
    ("rhel6", "kernel", None),
    ("rocky9", "module", None),
    ("debian11", "module", None),
    ("debian12", "module", None),
    ("debian13", "module", None),
    ("debian12-arm", "module", None),
    ("ubuntu1604-arm", "module", None),
    ("ubuntu2204", "module", None),
    ("ubuntu2404", "module", None),
])
def test_auto_route(name, route, row):
    chosen = select_route(host(name), load_catalogue(), allow_unverified=True,
                          allow_older_kernel=True)
    assert chosen["route"] == route
    assert chosen["strategy"] == "auto"
    if row is None:
        assert chosen["package"] is None
    else:
        assert chosen["package"]["id"] == row


@pytest.mark.parametrize("name", ["alpine", "arch", "debian12-i686"])
def test_auto_route_refuses_unservable_hosts(name):
    target = host(name)
    with pytest.raises(RouteError) as info:
        select_route(target, load_catalogue(), allow_unverified=True)
    message = str(info.value)
    for part in (target["distribution"], target["kernel"], "arch " + target["arch"],
                 "toa_strategy", "toa_catalogue_extra", "toa_package_checksums",
                 "toa_allow_unverified_packages"):
        assert part in message
    assert target["version"] in message or "(no version)" in message


def test_package_urls_files_and_kernel_for_each_seed_row():
    expected = {
        "centos6": ("kernel-2.6.32-220.23.1.el6.toa.x86_64.rpm", "rpm",
                    "2.6.32-220.23.1.el6.toa.x86_64"),
        "centos7": ("kernel-3.10.0-693.el7.centos.toa.x86_64.rpm", "rpm",
                    "3.10.0-693.el7.centos.toa.x86_64"),
        "ubuntu1604": ("linux-image-4.4.87.toa_1.0_amd64.deb", "deb", "4.4.87.toa"),
        "debian8": ("linux-image-3.16.43.toa_1.0_amd64.deb", "deb", "3.16.43.toa"),
    }
    for name, (image, fmt, kernel) in expected.items():
        chosen = select_route(host(name), load_catalogue(), checksums=checksums_for(image),
                              allow_older_kernel=True)
        package = chosen["package"]
        assert (package["format"], package["kernel"], package["verified"]) == (fmt, kernel, True)
        assert package["files"] == [{
            "name": image, "kind": "image", "sha256": SHA_A,
            "url": "http://toakernel-1253438722.cossh.myqcloud.com/" + image,
        }]
        assert package["running"] is False


@pytest.mark.parametrize("base, url", [
    ("https://mirror.example.org/toa", "https://mirror.example.org/toa/%s"),
    ("https://mirror.example.org/toa/", "https://mirror.example.org/toa/%s"),
    ("https://mirror.example.org/toa//", "https://mirror.example.org/toa/%s"),
    ("file:///srv/toa", "file:///srv/toa/%s"),
    ("file:///srv/toa/", "file:///srv/toa/%s"),
    ("http://10.0.0.5:8080", "http://10.0.0.5:8080/%s"),
])
def test_package_url_joining(base, url):
    image = "linux-image-3.16.43.toa_1.0_amd64.deb"
    chosen = select_route(host("debian8"), load_catalogue(), base_url=base,
                          checksums=checksums_for(image), allow_older_kernel=True)
    assert chosen["package"]["files"][0]["url"] == url % image


def test_row_image_given_as_full_url_ignores_base():
    catalogue = load_catalogue()
    catalogue[3]["image"] = "https://other.example.net/pool/linux-image-3.16.43.toa_1.0_amd64.deb"
    chosen = select_route(host("debian8"), catalogue, base_url=MIRROR,
                          checksums=checksums_for("linux-image-3.16.43.toa_1.0_amd64.deb"),
                          allow_older_kernel=True)
    assert chosen["package"]["files"][0]["url"] == catalogue[3]["image"]
    assert chosen["package"]["files"][0]["name"] == "linux-image-3.16.43.toa_1.0_amd64.deb"


def test_missing_checksum_is_refused_with_the_variable_and_file_named():
    with pytest.raises(RouteError) as info:
        select_route(host("centos7"), load_catalogue(), strategy="package",
                     allow_older_kernel=True)
    message = str(info.value)
    assert "kernel-3.10.0-693.el7.centos.toa.x86_64.rpm" in message
    assert "toa_package_checksums" in message
    assert "toa_allow_unverified_packages" in message
    assert "CentOS 7.9.2009" in message and "3.10.0-1160.el7.x86_64" in message


def test_allow_unverified_gives_unverified_package():
    package = select_route(host("centos7"), load_catalogue(), allow_unverified=True,
                           allow_older_kernel=True)["package"]
    assert package["verified"] is False
    assert package["files"][0]["sha256"] is None
    assert package["unverified"] == ["kernel-3.10.0-693.el7.centos.toa.x86_64.rpm"]


def test_checksums_variable_beats_catalogue_row():
    catalogue = load_catalogue()
    image = "kernel-2.6.32-220.23.1.el6.toa.x86_64.rpm"
    catalogue[0]["sha256"] = {image: SHA_B}
    chosen = select_route(host("centos6"), catalogue, allow_older_kernel=True)
    assert chosen["package"]["files"][0]["sha256"] == SHA_B
    chosen = select_route(host("centos6"), catalogue, checksums={image: SHA_A},
                          allow_older_kernel=True)
    assert chosen["package"]["files"][0]["sha256"] == SHA_A


def test_checksum_prefix_and_case_are_normalised():
    image = "kernel-2.6.32-220.23.1.el6.toa.x86_64.rpm"
    chosen = select_route(host("centos6"), load_catalogue(),
                          checksums={image: "sha256:" + SHA_B.upper()}, allow_older_kernel=True)
    assert chosen["package"]["files"][0]["sha256"] == SHA_B


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "a" * 63, "md5:" + "a" * 32])
def test_malformed_checksum_is_an_error(bad):
    image = "kernel-2.6.32-220.23.1.el6.toa.x86_64.rpm"
    with pytest.raises(RouteError) as info:
        select_route(host("centos6"), load_catalogue(), checksums={image: bad},
                     allow_unverified=True)
    assert "not 64 hex digits" in str(info.value)
    assert image in str(info.value)


def test_malformed_row_checksum_names_the_row():
    catalogue = load_catalogue()
    catalogue[1]["sha256"] = {"kernel-3.10.0-693.el7.centos.toa.x86_64.rpm": "nope"}
    with pytest.raises(RouteError) as info:
        select_route(host("centos7"), catalogue)
    assert "catalogue row centos7-x86_64" in str(info.value)


def test_headers_only_when_asked_and_each_needs_a_checksum():
    image = "linux-image-4.4.87.toa_1.0_amd64.deb"
    headers = "linux-headers-4.4.87.toa_1.0_amd64.deb"
    plain = select_route(host("ubuntu1604"), load_catalogue(), checksums=checksums_for(image),
                         allow_older_kernel=True)
    assert [f["kind"] for f in plain["package"]["files"]] == ["image"]
    with pytest.raises(RouteError) as info:
        select_route(host("ubuntu1604"), load_catalogue(), checksums=checksums_for(image),
                     install_headers=True, strategy="package", allow_older_kernel=True)
    assert headers in str(info.value) and image not in str(info.value).split("no sha256")[1]
    both = select_route(host("ubuntu1604"), load_catalogue(), base_url=MIRROR,
                        checksums=checksums_for(image, headers), install_headers=True,
                        allow_older_kernel=True)
    assert [(f["kind"], f["url"]) for f in both["package"]["files"]] == [
        ("image", MIRROR + image), ("headers", MIRROR + headers)]


def test_headers_requested_on_rpm_row_without_headers():
    image = "kernel-3.10.0-693.el7.centos.toa.x86_64.rpm"
    chosen = select_route(host("centos7"), load_catalogue(), checksums=checksums_for(image),
                          install_headers=True, allow_older_kernel=True)
    assert len(chosen["package"]["files"]) == 1
    assert chosen["package"]["headers_available"] is False


def test_package_running_when_host_booted_the_toa_kernel():
    target = host("debian8", kernel="3.16.43.toa")
    chosen = select_route(target, load_catalogue(), allow_unverified=True)
    assert chosen["package"]["running"] is True


def test_explicit_package_without_row_is_refused():
    with pytest.raises(RouteError) as info:
        select_route(host("debian12"), load_catalogue(), strategy="package")
    message = str(info.value)
    assert "toa_strategy is package but no catalogue row matches Debian 12 on x86_64" in message
    assert "toa_catalogue_extra" in message


def test_explicit_module_on_el6_is_refused_with_reason():
    with pytest.raises(RouteError) as info:
        select_route(host("centos6"), load_catalogue(), strategy="module")
    assert "kernel >= 3.10" in str(info.value)
    assert "2.6.32-754.35.1.el6.x86_64" in str(info.value)


def test_explicit_module_and_kernel_are_honoured_over_a_matching_row():
    assert select_route(host("centos7"), load_catalogue(), strategy="module")["route"] == "module"
    assert select_route(host("centos7"), load_catalogue(), strategy="kernel")["route"] == "kernel"
    assert select_route(host("ubuntu2204"), [], strategy="kernel")["route"] == "kernel"


def test_explicit_kernel_on_unknown_family_is_refused():
    with pytest.raises(RouteError) as info:
        select_route(host("alpine"), load_catalogue(), strategy="kernel")
    assert "Debian and RedHat families" in str(info.value)


def test_unknown_strategy_lists_valid_ones():
    with pytest.raises(RouteError) as info:
        select_route(host("debian12"), load_catalogue(), strategy="magic")
    assert "'magic'" in str(info.value)
    assert "auto, package, module, kernel" in str(info.value)


def test_strategy_is_case_insensitive():
    assert select_route(host("debian12"), [], strategy="Module")["route"] == "module"


def test_module_route_needs_el7_even_with_new_enough_kernel():
    target = host("centos6", kernel="4.19.0-1.el6.elrepo.x86_64")
    assert toa_route.module_route_problem(target) == (
        "the module route needs an Enterprise Linux release >= 7")
    assert select_route(target, [], allow_unverified=True)["route"] == "kernel"


def test_row_matching_by_exact_version_and_major():
    catalogue = load_catalogue()
    assert select_route(host("ubuntu1604", version="16.10", major="16"), catalogue)[
        "route"] == "module"
    extra = {"id": "ubuntu16-any", "distribution": "ubuntu", "major": 16, "arch": "amd64",
             "format": "deb", "kernel": "4.4.99.toa", "image": "img.deb", "headers": None,
             "sha256": {"img.deb": SHA_A}}
    chosen = select_route(host("ubuntu1604", version="16.10"), catalogue + [extra],
                          allow_older_kernel=True)
    assert chosen["package"]["id"] == "ubuntu16-any"
    # The exact version row outranks the major row for 16.04.
    chosen = select_route(host("ubuntu1604"), catalogue + [extra], allow_unverified=True,
                          allow_older_kernel=True)
    assert chosen["package"]["id"] == "ubuntu1604-x86_64"


def test_later_row_with_same_id_overrides():
    override = copy.deepcopy(load_catalogue()[3])
    override["image"] = "linux-image-3.16.99.toa_2.0_amd64.deb"
    override["kernel"] = "3.16.99.toa"
    chosen = select_route(host("debian8"), load_catalogue() + [override], allow_unverified=True)
    assert chosen["package"]["kernel"] == "3.16.99.toa"


def test_extra_row_for_new_distribution_gives_package_route():
    extra = {"id": "debian12-mirror", "distribution": "Debian", "version": "12",
             "arch": "x86_64", "format": "deb", "kernel": "6.1.90.toa",
             "image": "linux-image-6.1.90.toa_1.0_amd64.deb", "headers": None, "sha256": {}}
    chosen = select_route(host("debian12"), load_catalogue() + [extra], base_url=MIRROR,
                          checksums={"linux-image-6.1.90.toa_1.0_amd64.deb": SHA_B})
    assert chosen["route"] == "package"
    assert chosen["package"]["files"][0]["url"] == MIRROR + "linux-image-6.1.90.toa_1.0_amd64.deb"


def test_broken_row_is_reported():
    with pytest.raises(RouteError) as info:
        select_route(host("debian12"), [{"id": "x", "distribution": "Debian"}])
    assert "catalogue row x lacks" in str(info.value)
    assert "image" in str(info.value) and "version or major" in str(info.value)
    row = dict(load_catalogue()[3], format="tar")
    with pytest.raises(RouteError) as info:
        select_route(host("debian8"), [row])
    assert "use rpm or deb" in str(info.value)


def test_checksums_must_be_a_mapping():
    with pytest.raises(RouteError) as info:
        select_route(host("debian8"), load_catalogue(), checksums=["abc"])
    assert "toa_package_checksums must map" in str(info.value)


# -- dkms status -----------------------------------------------------------------

def test_parse_dkms_status_all_formats():
    text = "\n".join([
        "toa, 1.0.0, 4.4.0-210-generic, x86_64: installed",
        "toa, 1.0.0, 5.4.0-150-generic, x86_64: installed (original_module exists)",
        "toa, 1.0.0, 5.4.0-160-generic, x86_64: built",
        "other, 2.1: added",
        "toa/1.0.0, 6.1.0-18-amd64, x86_64: installed",
        "toa/1.0.0, 6.1.0-20-amd64, x86_64: installed (WARNING! Diff between built and "
        "installed module!)",
        "toa/2.0.0: added",
        "toa, 1.0, 3.10.0-957.el7.x86_64, x86_64: installed-weak from 3.10.0-693.el7.x86_64",
        "Error! Could not locate dkms.conf file.",
        "WARNING: something odd",
        "",
    ])
    entries = parse_dkms_status(text)
    assert [(e["module"], e["version"], e["kernel"], e["arch"], e["state"]) for e in entries] == [
        ("toa", "1.0.0", "4.4.0-210-generic", "x86_64", "installed"),
        ("toa", "1.0.0", "5.4.0-150-generic", "x86_64", "installed"),
        ("toa", "1.0.0", "5.4.0-160-generic", "x86_64", "built"),
        ("other", "2.1", None, None, "added"),
        ("toa", "1.0.0", "6.1.0-18-amd64", "x86_64", "installed"),
        ("toa", "1.0.0", "6.1.0-20-amd64", "x86_64", "installed"),
        ("toa", "2.0.0", None, None, "added"),
        ("toa", "1.0", "3.10.0-957.el7.x86_64", "x86_64", "installed-weak"),
    ]
    assert entries[1]["notes"] == "(original_module exists)"
    assert entries[7]["notes"] == "from 3.10.0-693.el7.x86_64"


def test_parse_dkms_status_empty():
    assert parse_dkms_status("") == []


def test_among_equal_rows_the_later_one_wins():
    mirror_row = dict(load_catalogue()[1], id="centos7-local-build",
                      kernel="3.10.0-1160.el7.toa.x86_64",
                      image="kernel-3.10.0-1160.el7.toa.x86_64.rpm")
    chosen = select_route(host("centos7"), load_catalogue() + [mirror_row], allow_unverified=True,
                          allow_older_kernel=True)
    assert chosen["package"]["id"] == "centos7-local-build"
    chosen = select_route(host("centos7"), [mirror_row] + load_catalogue(), allow_unverified=True,
                          allow_older_kernel=True)
    assert chosen["package"]["id"] == "centos7-x86_64"


@pytest.mark.parametrize("text, kernel", [
    ('NAME="Amazon Linux"\nVERSION="2"\nID="amzn"\nID_LIKE="centos rhel fedora"\n'
     'VERSION_ID="2"\n', "4.14.336-257.562.amzn2.x86_64"),
    ('NAME="Fedora Linux"\nVERSION="40 (Server Edition)"\nID=fedora\nVERSION_ID=40\n',
     "6.8.5-301.fc40.x86_64"),
])
def test_non_el_redhat_family_only_needs_the_kernel_check(text, kernel):
    target = identify_host(text, "", "x86_64", kernel, "systemd")
    assert target["family"] == "RedHat"
    assert select_route(target, load_catalogue())["route"] == "module"


def test_empty_base_url_is_refused():
    with pytest.raises(RouteError) as info:
        select_route(host("debian8"), load_catalogue(), base_url="", allow_unverified=True)
    assert "toa_package_base_url is empty" in str(info.value)


# -- auto passes over a row it may not install; the package route refuses older kernels ----

@pytest.mark.parametrize("release, uname_v, signature, want", [
    ("6.1.0-18-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)", "", "6.1.76"),
    ("3.16.0-4-amd64", "#1 SMP Debian 3.16.7-ckt25-2 (2016-04-08)", "", "3.16.7"),
    ("4.4.0-210-generic", "#242-Ubuntu SMP Fri Apr 16 09:57:56 UTC 2021",
     "Ubuntu 4.4.0-210.242-generic 4.4.262\n", "4.4.262"),
    ("4.4.0-210-generic", "#242-Ubuntu SMP Fri Apr 16 09:57:56 UTC 2021", "", ""),
    # x.y.0-N names say nothing about the code's age (EL compares releases instead).
    ("3.10.0-1160.el7.x86_64", "#1 SMP Tue Nov 3 19:32:30 UTC 2020", "", ""),
    ("5.15.0-105-generic", "#115-Ubuntu SMP Mon Apr 15 09:52:04 UTC 2024", "", ""),
    ("4.4.87.toa", "#1 SMP Mon Sep 11 10:00:00 CST 2017", "", "4.4.87"),
    ("6.1.192-toa", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2.toa1 (2026-11-26)", "", "6.1.192"),
    ("", "", "", ""),
])
def test_upstream_kernel_version(release, uname_v, signature, want):
    assert toa_route.upstream_kernel_version(release, uname_v, signature) == want


@pytest.mark.parametrize("name, changes, row_index, older", [
    # EL: version, then release numbers (3.10.0-693 is RHEL 7.4, 1160 is 7.9).
    ("centos7", {}, 1, True),
    ("centos7", {"kernel": "3.10.0-514.el7.x86_64"}, 1, False),
    ("centos7", {"kernel": "3.10.0-693.21.1.el7.x86_64"}, 1, True),
    ("centos7", {"kernel": "3.10.0-693.el7.centos.toa.x86_64"}, 1, False),
    ("centos6", {}, 0, True),
    ("centos6", {"kernel": "2.6.32-131.0.15.el6.x86_64"}, 0, False),
    # Debian and Ubuntu: the upstream version the running kernel is based on.
    ("ubuntu1604", {}, 2, True),
    ("ubuntu1604", {"kernel_upstream": "4.4.6"}, 2, False),
    ("ubuntu1604", {"kernel_upstream": ""}, 2, None),
    ("debian8", {}, 3, True),
    ("debian8", {"kernel_upstream": "3.16.7"}, 3, False),
])
def test_kernel_is_older(name, changes, row_index, older):
    assert toa_route.kernel_is_older(host(name, **changes), load_catalogue()[row_index]) is older


def test_auto_takes_the_module_route_when_no_checksum_is_pinned_and_says_how_to_pin_it():
    chosen = select_route(host("ubuntu1604", kernel_upstream="4.4.6"), load_catalogue())
    assert (chosen["route"], chosen["package"]) == ("module", None)
    reason = chosen["reason"]
    for part in ("catalogue row ubuntu1604-x86_64", "linux-image-4.4.87.toa_1.0_amd64.deb",
                 "toa_package_checksums", "toa_allow_unverified_packages",
                 "Building the TOA module with DKMS"):
        assert part in reason, reason
    # Pinned, the same host takes the package route.
    pinned = select_route(host("ubuntu1604", kernel_upstream="4.4.6"), load_catalogue(),
                          checksums=checksums_for("linux-image-4.4.87.toa_1.0_amd64.deb"))
    assert pinned["route"] == "package"


def test_package_strategy_still_refuses_a_row_without_checksum():
    with pytest.raises(RouteError) as info:
        select_route(host("ubuntu1604", kernel_upstream="4.4.6"), load_catalogue(),
                     strategy="package")
    assert "toa_package_checksums: {'linux-image-4.4.87.toa_1.0_amd64.deb': <sha256>}" \
        in str(info.value)


def test_auto_fails_when_neither_the_row_nor_the_module_route_can_serve():
    # CentOS 6: the module route needs EL >= 7, so auto does not pass over the row.
    with pytest.raises(RouteError) as info:
        select_route(host("centos6", kernel="2.6.32-131.0.15.el6.x86_64"), load_catalogue())
    message = str(info.value)
    assert "no sha256 is known for kernel-2.6.32-220.23.1.el6.toa.x86_64.rpm" in message
    assert "The module route cannot serve this host instead: the module route needs " \
        "kernel >= 3.10" in message


def test_package_strategy_refuses_an_older_kernel_and_says_what_the_host_loses():
    image = "kernel-3.10.0-693.el7.centos.toa.x86_64.rpm"
    with pytest.raises(RouteError) as info:
        select_route(host("centos7"), load_catalogue(), strategy="package",
                     checksums=checksums_for(image))
    message = str(info.value)
    assert ("catalogue row centos7-x86_64 would install kernel 3.10.0-693.el7.centos.toa.x86_64,"
            " older than the running kernel 3.10.0-1160.el7.x86_64") in message
    assert "lose every fix made between the two, security fixes among them" in message
    assert "toa_allow_older_kernel: true" in message
    chosen = select_route(host("centos7"), load_catalogue(), strategy="package",
                          checksums=checksums_for(image), allow_older_kernel=True)
    assert chosen["route"] == "package"


def test_deb_refusal_names_the_upstream_version_of_the_running_kernel():
    image = "linux-image-3.16.43.toa_1.0_amd64.deb"
    with pytest.raises(RouteError) as info:
        select_route(host("debian8"), load_catalogue(), strategy="package",
                     checksums=checksums_for(image))
    assert "older than the running kernel 3.16.0-11-amd64 (upstream 3.16.84)" in str(info.value)


def test_auto_passes_over_an_older_kernel_for_the_module_route():
    image = "kernel-3.10.0-693.el7.centos.toa.x86_64.rpm"
    chosen = select_route(host("centos7"), load_catalogue(), checksums=checksums_for(image))
    assert chosen["route"] == "module"
    assert "toa_allow_older_kernel: true" in chosen["reason"]
    # Both reasons at once when neither holds.
    both = select_route(host("centos7"), load_catalogue())["reason"]
    assert "toa_package_checksums" in both and "toa_allow_older_kernel" in both


def test_a_host_on_an_older_kernel_than_the_row_takes_the_package_route():
    image = "kernel-3.10.0-693.el7.centos.toa.x86_64.rpm"
    chosen = select_route(host("centos7", kernel="3.10.0-514.el7.x86_64"), load_catalogue(),
                          checksums=checksums_for(image))
    assert chosen["route"] == "package"


def test_unknown_upstream_version_does_not_refuse():
    # Ubuntu without /proc/version_signature: 4.4.0-210 says nothing about its code's age.
    image = "linux-image-4.4.87.toa_1.0_amd64.deb"
    target = host("ubuntu1604", kernel_upstream="")
    chosen = select_route(target, load_catalogue(), strategy="package",
                          checksums=checksums_for(image))
    assert chosen["route"] == "package"
