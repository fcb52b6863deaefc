"""tools/build_ee.py's logic: which certificates go into the local base, the
build arguments that put an EE on it, and the recipe hashes that decide when
an image is rebuilt. The build itself is proven by tests/awx/run_jobs.py."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load():
    spec = importlib.util.spec_from_file_location("build_ee", os.path.join(ROOT, "tools", "build_ee.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_ee = _load()


def _pem(body):
    return "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----" % body


def test_extra_certificates_are_the_hosts_ones_debian_lacks_once_each_in_order():
    debian = "\n".join([_pem("AAA"), _pem("BBB")]) + "\n"
    host = "\n".join([_pem("AAA"), _pem("SITE1"), _pem("BBB"), _pem("SITE2"), _pem("SITE1")]) + "\n"
    assert build_ee.extra_certificates(host, debian) == [_pem("SITE1"), _pem("SITE2")]
    assert build_ee.extra_certificates(debian, debian) == []


def test_public_base_needs_no_build_argument():
    assert build_ee.build_args(None) == {}


def test_local_base_build_arguments():
    args = build_ee.build_args("localhost/toa-ee-base:debian12-0123456789abcdef")
    assert args == {
        "EE_BASE_IMAGE": "localhost/toa-ee-base:debian12-0123456789abcdef",
        "PKGMGR": "/usr/bin/apt-get",
        "PYCMD": "/opt/ee-python/bin/python3.11",
    }
    # PYCMD is the base image's venv, first on the image's PATH.
    assert build_ee.PATH_IN_BASE.startswith(build_ee.BASE["venv"] + "/bin:")


def test_ee_key_follows_definition_data_base_arguments_and_builder():
    args = build_ee.build_args("localhost/b:1")
    ee = {"version": 3, "options": {"tags": ["t:1"]}}
    key = build_ee.ee_key(ee, "localhost/b:1", args, "3.2.0")
    assert len(key) == 16
    # The same data in another key order (another layout of the file) is the same recipe.
    assert key == build_ee.ee_key({"options": {"tags": ["t:1"]}, "version": 3}, "localhost/b:1", args, "3.2.0")
    assert key != build_ee.ee_key({"version": 3, "options": {"tags": ["t:2"]}}, "localhost/b:1", args, "3.2.0")
    assert key != build_ee.ee_key(ee, "localhost/b:2", build_ee.build_args("localhost/b:2"), "3.2.0")
    assert key != build_ee.ee_key(ee, "localhost/b:1", args, "3.2.1")
    assert key != build_ee.ee_key(ee, None, build_ee.build_args(None), "3.2.0")


def test_definition_tag_is_the_single_tag():
    assert build_ee.definition_tag({"options": {"tags": ["toa-fleet-ee:2.19"]}}, "f") == "toa-fleet-ee:2.19"
    for bad in ({"options": {"tags": ["a:1", "b:1"]}}, {"options": {}}, {}):
        try:
            build_ee.definition_tag(bad, "f.yml")
        except SystemExit as e:
            assert "f.yml: expected one tag" in str(e)
        else:
            raise AssertionError("accepted %r" % bad)


def test_base_key_follows_the_hosts_certificates():
    one = build_ee.base_key(_pem("AAA") + "\n")
    assert one == build_ee.base_key(_pem("AAA") + "\n")
    assert one != build_ee.base_key(_pem("AAA") + "\n" + _pem("SITE") + "\n")


def test_containers_conf_sets_runc_and_limits():
    conf = build_ee.CONTAINERS_CONF
    assert 'runtime = "runc"' in conf
    assert 'default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]' in conf
