"""The Jinja of task files, rendered by Ansible on realistic facts and command output
(tests/unit/role_tasks.py): messages, conditions and loops whose logic lives in YAML."""

from role_tasks import find_task, render, render_all


# -- verification passes toa_verify the parameters the module was loaded with -----------------
# (what toa_verify checks and says, the probe's kinds included: tests/unit/test_toa_verify.py)

VERIFY_HOST = ("roles/toa/tasks/verify_host.yml",
               "Verify TOA on the host in one module run (state, checks, end-to-end probe)")


def verify_args(**variables):
    task = find_task(*VERIFY_HOST)
    base = dict(toa_params={"ipv4_kinds": "200", "ipv6_kinds": ""}, toa_autoload=True)
    base.update(variables)
    return dict((key, render(task["toa_verify"][key], **base))
                for key in ("params", "autoload", "reload_pending"))


def test_verify_probes_the_kinds_the_module_was_loaded_with_over_toa_params():
    loaded = {"ipv4_kinds": "200", "ipv6_kinds": "254"}
    assert verify_args(__toa_module_params=loaded)["params"] == loaded
    assert verify_args()["params"] == {"ipv4_kinds": "200", "ipv6_kinds": ""}  # playbooks/verify.yml


def test_verify_checks_autoload_and_fails_an_outdated_module_unless_the_role_says_otherwise():
    assert verify_args() == {"params": {"ipv4_kinds": "200", "ipv6_kinds": ""}, "autoload": True,
                             "reload_pending": "fail"}
    role = find_task("roles/toa/tasks/verify.yml",
                     "Check TOA, its counters and the end-to-end probe in one module run")["vars"]
    assert verify_args(toa_autoload=False, **role)["reload_pending"] == "report"
    assert verify_args(toa_autoload=False, ansible_check_mode=False, **role)["autoload"] is False


# -- the DKMS signature check: an unreadable certificate fails, never passes unchecked ------

SIGNING = "roles/toa/tasks/dkms_signing.yml"
SIGNING_BLOCK = "Check that the built module carries a signature by the configured certificate"
CERT = "/root/toa-signing.der"
SERIAL = "1C3D8A520E6F417790ABCDEF0123456789ABCDEF"
MODINFO_SIGNED = (
    "filename:       /lib/modules/6.1.0-28-amd64/updates/dkms/toa.ko\n"
    "version:        2.0.0\n"
    "license:        GPL\n"
    "srcversion:     5E0A6A1F4F2D3C1B0A998877\n"
    "depends:        \n"
    "retpoline:      Y\n"
    "name:           toa\n"
    "vermagic:       6.1.0-28-amd64 SMP preempt mod_unload modversions \n"
    "sig_id:         PKCS#7\n"
    "signer:         toa-fleet failures test key\n"
    "sig_key:        1C:3D:8A:52:0E:6F:41:77:90:AB:CD:EF:01:23:45:67:89:AB:CD:EF\n"
    "sig_hashalgo:   sha256\n"
    "signature:      30:2E:02:15:00:8F:4A:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:\n"
    "\t\tEE:FF:00:11:22\n"
    "parm:           ipv4_kinds:TCP option kinds read as IPv4 TOA (charp)\n")
MODINFO_UNSIGNED = "\n".join(line for line in MODINFO_SIGNED.splitlines()
                             if not line.startswith(("sig", "signer", "\t\t"))) + "\n"


def openssl(der, pem):
    """Registered results of the DER and PEM reads: (rc, stdout, stderr) each."""
    return {"results": [{"item": form, "rc": rc, "stdout": out, "stderr": err}
                        for form, (rc, out, err) in (("DER", der), ("PEM", pem))]}


UNREADABLE = (1, "", "Could not read certificate from %s\nUnable to load certificate" % CERT)


def signing_checks(modinfo, serial_results):
    block = find_task(SIGNING, SIGNING_BLOCK)
    variables = dict(toa_signed_modinfo={"stdout": modinfo}, toa_signing_serial=serial_results,
                     toa_dkms_signing_cert=CERT, __toa_kernel="6.1.0-28-amd64")
    readable = find_task(SIGNING, "Check that openssl can read the signing certificate")
    signed = find_task(SIGNING, "Assert that the module is signed with the configured key")
    task_vars = dict(block["vars"], **signed["vars"])
    return (render_all(readable["ansible.builtin.assert"]["that"], block["vars"], **variables),
            " ".join(render(readable["ansible.builtin.assert"]["fail_msg"], block["vars"],
                            **variables).split()),
            render_all(signed["ansible.builtin.assert"]["that"], task_vars, **variables),
            " ".join(render(signed["ansible.builtin.assert"]["fail_msg"], task_vars,
                            **variables).split()))


def test_a_module_signed_by_the_certificate_passes():
    readable, _msg, signed, _fail = signing_checks(
        MODINFO_SIGNED, openssl((0, "serial=" + SERIAL, ""), UNREADABLE))
    assert readable and signed


def test_a_pem_certificate_is_read_too():
    readable, _msg, signed, _fail = signing_checks(
        MODINFO_SIGNED, openssl(UNREADABLE, (0, "serial=" + SERIAL, "")))
    assert readable and signed


def test_a_certificate_openssl_cannot_read_fails_with_its_error():
    readable, msg, signed, _fail = signing_checks(MODINFO_SIGNED, openssl(UNREADABLE, UNREADABLE))
    assert not readable and not signed
    assert msg.startswith("openssl cannot read toa_dkms_signing_cert %s as a DER or PEM "
                          "certificate (Could not read certificate from %s)" % (CERT, CERT))


def test_missing_openssl_fails_with_the_command_error():
    missing = (2, "", "")
    results = openssl(missing, missing)
    for result in results["results"]:
        result["msg"] = "[Errno 2] No such file or directory: b'openssl'"
    readable, msg, _signed, _fail = signing_checks(MODINFO_SIGNED, results)
    assert not readable
    assert "([Errno 2] No such file or directory: b'openssl')" in msg


def test_a_module_signed_by_another_key_or_unsigned_fails():
    other = "serial=0" + "AB" * 20
    readable, _msg, signed, fail = signing_checks(MODINFO_SIGNED, openssl((0, other, ""),
                                                                          UNREADABLE))
    assert readable and not signed
    assert ("signed by toa-fleet failures test key (serial %s), not by %s (serial %s)"
            % (SERIAL, CERT, "AB" * 20)) in fail
    readable, _msg, signed, fail = signing_checks(MODINFO_UNSIGNED,
                                                  openssl((0, "serial=" + SERIAL, ""), UNREADABLE))
    assert readable and not signed
    assert "is not signed." in fail


# -- removal deletes only the /usr/src directories the role installed ------------------------

REMOVE = "roles/toa/tasks/remove.yml"


def removal(recorded, compare, found):
    """(directories removed, directories named as left, the message) on realistic results."""
    variables = dict(toa={"src_recorded": recorded}, toa_src_version="2.0.0",
                     toa_module_name="toa", inventory_hostname="web1",
                     __toa_src_current="/usr/src/toa-2.0.0",
                     toa_remove_src_compare=compare,
                     toa_remove_src={"files": [{"path": path} for path in found]})
    listed = find_task(REMOVE, "List the module source directories this role installed")
    ours = render(listed["ansible.builtin.set_fact"]["__toa_src_ours"], **variables)
    variables["__toa_src_ours"] = ours
    say = find_task(REMOVE, "Say which source trees were left because this role did not install them")
    left = render("{{ __toa_src_left }}", say["vars"], **variables)
    message = " ".join(render(say["ansible.builtin.debug"]["msg"], say["vars"], **variables).split())
    return ours, left, message


SKIPPED = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}


def test_removal_deletes_the_recorded_directories_and_names_another_package_s():
    ours, left, message = removal(["/usr/src/toa-2.0.0"], SKIPPED,
                                  ["/usr/src/toa-3.1", "/usr/src/toa-2.0.0"])
    assert ours == ["/usr/src/toa-2.0.0"]
    assert left == ["/usr/src/toa-3.1"]
    assert message.startswith("Left in place on web1: /usr/src/toa-3.1. This role neither "
                              "recorded installing it")


def test_an_unrecorded_directory_holding_exactly_the_role_s_source_is_ours():
    # Put there by a role version older than the record: toa_src would write nothing.
    identical = {"changed": False, "dest": "/usr/src/toa-2.0.0", "written": [],
                 "attributes_changed": []}
    ours, left, _message = removal([], identical, ["/usr/src/toa-2.0.0"])
    assert (ours, left) == (["/usr/src/toa-2.0.0"], [])


def test_an_unrecorded_directory_with_other_content_is_left():
    differs = {"changed": True, "dest": "/usr/src/toa-2.0.0", "written": ["toa_main.c"],
               "attributes_changed": []}
    ours, left, _message = removal([], differs, ["/usr/src/toa-2.0.0", "/usr/src/toa-1.0.0"])
    assert ours == []
    assert left == ["/usr/src/toa-1.0.0", "/usr/src/toa-2.0.0"]
    failed = {"failed": True, "msg": "dest /usr/src/toa-2.0.0 exists and is not a directory"}
    assert removal([], failed, [])[0] == []


def test_the_module_route_records_what_toa_facts_reads_back(tmp_path, monkeypatch):
    import toa_facts
    import toa_host
    task = find_task("roles/toa/tasks/route_module.yml",
                     "Record the module source directory this role installs, for removal")
    line = render(task["ansible.builtin.lineinfile"]["line"], toa_module_name="toa",
                  toa_src_version="2.0.0")
    path = tmp_path / task["ansible.builtin.lineinfile"]["path"].lstrip("/")
    path.parent.mkdir(parents=True)
    path.write_text(line + "\n")
    monkeypatch.setattr(toa_host, "ROOT", str(tmp_path))
    assert toa_facts.recorded_src("toa") == ["/usr/src/toa-2.0.0"]
    assert toa_facts.INSTALLED_SRC == task["ansible.builtin.lineinfile"]["path"]


# -- module route, prebuilt packages (module_prebuilt.yml, remove.yml) --------------------

def _kmod_item(release, version):
    return {"kernel": release, "package": "toa-kmod-%s" % release, "package_version": version,
            "name": "toa-kmod-%s_%s_amd64.deb" % (release, version)}


def _stanza(package, status, version):
    return ("Package: %s\nStatus: %s\nPriority: optional\nVersion: %s\nDescription: TOA\n"
            " for one kernel\n .\n Status: install ok installed\n" % (package, status, version))


def _kmod_missing(install, stanzas):
    """What the task installs, given dpkg's database as toa_facts reads it."""
    from toa_route import mark_installed, parse_dpkg_status
    install = [dict(item) for item in install]
    status = "\n".join([_stanza("dkms", "install ok installed", "3.0.10-8")] + stanzas)
    mark_installed({"install": install}, parse_dpkg_status(status, [i["package"] for i in install]))
    task = find_task("roles/toa/tasks/module_prebuilt.yml", "List the prebuilt packages that still need installing")
    missing = render(task["ansible.builtin.set_fact"]["__toa_kmod_missing"], None,
                     __toa_module_plan={"install": install})
    return [{k: v for k, v in item.items() if k != "installed"} for item in missing]


def test_prebuilt_packages_installed_at_their_version_are_not_installed_again():
    a, b = _kmod_item("6.1.0-57-amd64", "2.0.1+k1"), _kmod_item("6.1.0-56-amd64", "2.0.1+k2")
    installed = "install ok installed"
    assert _kmod_missing([a, b], []) == [a, b]
    assert _kmod_missing([a, b], [_stanza("toa-kmod-6.1.0-57-amd64", installed, "2.0.1+k1")]) == [b]
    assert _kmod_missing([a, b], [_stanza("toa-kmod-6.1.0-57-amd64", installed, "2.0.1+k1"),
                                  _stanza("toa-kmod-6.1.0-56-amd64", installed, "2.0.1+k2")]) == []
    # another build of the same release (new headers, key or module version) replaces it
    assert _kmod_missing([a], [_stanza("toa-kmod-6.1.0-57-amd64", installed, "2.0.1+k0")]) == [a]
    # removed but its configuration kept, or half installed: install again
    assert _kmod_missing([a], [_stanza("toa-kmod-6.1.0-57-amd64", "deinstall ok config-files", "2.0.1+k1")]) == [a]
    assert _kmod_missing([a], [_stanza("toa-kmod-6.1.0-57-amd64", "install ok half-configured", "2.0.1+k1")]) == [a]
    # an epoch dpkg keeps is not part of the version the entry names
    assert _kmod_missing([a], [_stanza("toa-kmod-6.1.0-57-amd64", installed, "1:2.0.1+k1")]) == []
    # a package whose name only starts the same is another package
    assert _kmod_missing([a], [_stanza("toa-kmod-6.1.0-57-amd64-dbg", installed, "2.0.1+k1")]) == [a]


def test_dkms_trees_left_by_an_earlier_run_are_listed_for_removal(tmp_path, monkeypatch):
    import toa_facts
    import toa_host
    monkeypatch.setattr(toa_host, "ROOT", str(tmp_path))
    assert toa_facts.dkms_registered("toa") == []
    base = tmp_path / "var/lib/dkms/toa"
    for version in ("2.0.1", "1.0.0"):
        (base / version).mkdir(parents=True)
    (base / "kernel-6.1.0-57-amd64-x86_64").mkdir()  # DKMS's per-kernel link directories
    (base / "original_module").mkdir()
    (base / "3.0.0").write_text("")  # not a tree
    assert toa_facts.dkms_registered("toa") == ["1.0.0", "2.0.1"]
    task = find_task("roles/toa/tasks/module_prebuilt.yml",
                     "Remove TOA from DKMS, now that the prebuilt packages carry it")
    assert render(task["loop"], None, __toa_module_plan={"dkms_left": ["1.0.0"]}) == ["1.0.0"]


def test_removal_purges_every_toa_kmod_package_dpkg_knows():
    task = find_task("roles/toa/tasks/remove.yml", "Purge the prebuilt TOA module packages")
    lines = ["toa-kmod-6.1.0-57-amd64 ii ", "toa-kmod-6.1.0-56-amd64 rc ", "toa-kmod-6.1.0-55-amd64 un "]
    names = render(task["vars"]["__toa_kmod_installed"], None, toa_remove_kmod_query={"stdout_lines": lines})
    assert names == ["toa-kmod-6.1.0-57-amd64", "toa-kmod-6.1.0-56-amd64"]
    assert render(task["vars"]["__toa_kmod_installed"], None, toa_remove_kmod_query={"rc": 2}) == []
