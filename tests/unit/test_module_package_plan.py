"""toa_route.module_package_plan: prebuilt TOA module packages or DKMS on the module route."""

import pytest
from toa_route import RouteError, module_package_plan

SHA = "a" * 64
RUN = "6.1.0-57-amd64"
OLD = "6.1.0-56-amd64"
NEW = "6.1.0-58-amd64"
URL = "http://mirror.example/toa/"


def entry(release, version="2.0.1", **kw):
    out = {"file": "kmod-debian-12-x86_64/toa-kmod-%s_%s+k0123456789_amd64.deb" % (release, version),
           "sha256": SHA, "version": version}
    out.update(kw)
    return out


def plan(source="auto", installed=(RUN,), packages=None, src_version="2.0.1", base_url=URL, running=RUN):
    return module_package_plan(source, running, list(installed), packages, src_version, base_url)


def test_running_kernel_with_a_package_takes_prebuilt():
    p = plan(packages={RUN: entry(RUN)})
    assert p["source"] == "prebuilt"
    assert p["install"] == [{
        "kernel": RUN, "name": "toa-kmod-%s_2.0.1+k0123456789_amd64.deb" % RUN,
        "url": URL + "kmod-debian-12-x86_64/toa-kmod-%s_2.0.1+k0123456789_amd64.deb" % RUN,
        "sha256": SHA, "version": "2.0.1", "package": "toa-kmod-%s" % RUN,
        "package_version": "2.0.1+k0123456789"}]
    assert p["without"] == [] and p["unusable"] == {}
    assert "no compiler" in p["reason"]


def test_every_installed_kernel_with_a_package_gets_it_running_first():
    p = plan(installed=[OLD, RUN, NEW], packages={NEW: entry(NEW), RUN: entry(RUN), "5.10.0-30-amd64": entry("x")})
    assert [i["kernel"] for i in p["install"]] == [RUN, NEW]
    assert p["without"] == [OLD]  # a reboot into it would have no TOA: the role says so


def test_the_running_kernel_counts_when_boot_does_not_list_it():
    assert [i["kernel"] for i in plan(installed=[], packages={RUN: entry(RUN)})["install"]] == [RUN]


@pytest.mark.parametrize("packages, why", [
    (None, "toa_module_packages is empty"),
    ({}, "toa_module_packages is empty"),
    ({NEW: entry(NEW)}, "has no package for the running kernel %s (it has %s)" % (RUN, NEW)),
    ({RUN: entry(RUN, version="2.0.0")}, "holds TOA 2.0.0 and this role installs 2.0.1"),
    ({RUN: entry(RUN, sha256="")}, "has no sha256"),
    ({RUN: entry(RUN, sha256="abc")}, "not 64 hex digits"),
    ({RUN: entry(RUN, file="")}, "has no file"),
    ({RUN: entry(RUN, file="../etc/toa-kmod_1_amd64.deb")}, "has no file"),
    ({RUN: entry(RUN, file="kmod/toa.ko")}, "not a .deb file name"),
    ({RUN: entry(RUN, version="")}, "no module version"),
    ({RUN: "toa-kmod.deb"}, "not a dict"),
])
def test_auto_falls_back_to_dkms_and_says_why(packages, why):
    p = plan(packages=packages)
    assert p["source"] == "dkms" and p["install"] == []
    assert why in p["reason"] and p["reason"].endswith("building TOA on the host under DKMS")


def test_no_base_url_makes_packages_unusable():
    p = plan(packages={RUN: entry(RUN)}, base_url="")
    assert p["source"] == "dkms"
    assert p["unusable"] == {RUN: "toa_module_package_base_url is empty"}


def test_prebuilt_only_fails_with_what_to_build():
    with pytest.raises(RouteError) as exc:
        plan(source="prebuilt", packages={NEW: entry(NEW)})
    msg = str(exc.value)
    assert "toa_module_source is prebuilt but toa_module_packages has no package for the running kernel" in msg
    assert '"toa_build_kmod_releases": ["%s"]' % RUN in msg
    assert "toa_module_source: auto" in msg


def test_prebuilt_only_with_a_package_installs_it():
    assert plan(source="prebuilt", packages={RUN: entry(RUN)})["source"] == "prebuilt"


def test_dkms_ignores_packages():
    p = plan(source="dkms", packages={RUN: entry(RUN)})
    assert p == {"source": "dkms", "reason": "toa_module_source is dkms: building TOA on the host under DKMS",
                 "install": [], "without": [], "unusable": {}}


def test_unknown_source_is_refused():
    with pytest.raises(RouteError, match="not one of auto, prebuilt, dkms"):
        plan(source="both")


def test_a_checksum_prefix_and_case_are_normalised_and_names_may_be_given():
    p = plan(packages={RUN: entry(RUN, sha256="SHA256:" + "A" * 64, package="toa-kmod-x",
                                  package_version="9")})
    assert p["install"][0]["sha256"] == "a" * 64
    assert (p["install"][0]["package"], p["install"][0]["package_version"]) == ("toa-kmod-x", "9")


def test_version_check_is_skipped_without_a_role_version():
    assert plan(packages={RUN: entry(RUN, version="1.9")}, src_version="")["source"] == "prebuilt"
