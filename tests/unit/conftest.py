"""Shared helpers for unit tests of the modules in library/.

Works with ansible-core 2.19 (patch_module_args) and 2.16 (basic._ANSIBLE_ARGS).

    def test_x(run_module, fake_commands):
        fake_commands.add(["modprobe", "toa"], rc=1, err="not found")
        result = run_module(toa_module, {"name": "toa"}, check_mode=True)
        assert result["failed"]

run_module() returns the dict given to exit_json or fail_json; fail_json
results carry failed=True.  Commands go to fake_commands, never to the host.
"""

import contextlib
import glob
import importlib
import json
import os
import sys

import pytest

import ansible.module_utils
from ansible.module_utils import basic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

for _sub in ("library", "module_utils"):
    _path = os.path.join(ROOT, _sub)
    if _path not in sys.path:
        sys.path.insert(0, _path)

# The modules import `ansible.module_utils.<name>`; on a controller ansiballz
# ships module_utils/ for them.  Here the same module object is registered
# under both names so exception classes and constants are shared.
# One that imports another not registered yet (toa_state needs toa_stats) is
# tried again after the others.
_pending = sorted(os.path.splitext(os.path.basename(_file))[0]
                  for _file in glob.glob(os.path.join(ROOT, "module_utils", "*.py")))
_pending = [_name for _name in _pending if not _name.startswith("_")]
while _pending:
    _waiting = []
    for _name in _pending:
        try:
            _mod = importlib.import_module(_name)
        except ImportError:
            _waiting.append(_name)
            continue
        sys.modules["ansible.module_utils." + _name] = _mod
        setattr(ansible.module_utils, _name, _mod)
    if _waiting == _pending:
        importlib.import_module(_waiting[0])  # raises the ImportError that blocks them all
    _pending = _waiting


def write(root, path, text, mode=None):
    """Write a file of a fake host tree (path is absolute on the host)."""
    full = os.path.join(str(root), path.lstrip("/"))
    if not os.path.isdir(os.path.dirname(full)):
        os.makedirs(os.path.dirname(full))
    with open(full, "w") as handle:
        handle.write(text)
    if mode is not None:
        os.chmod(full, mode)
    return full


def debian12_host(root, monkeypatch, proc_modules):
    """A fake host tree for toa_facts: Debian 12 on x86_64 with systemd, kernel 6.1.0-18-amd64,
    the given /proc/modules, and its (empty) /lib/modules directory."""
    import toa_host
    import toa_state
    monkeypatch.setattr(toa_host, "ROOT", str(root))
    monkeypatch.setattr(toa_state, "uname", lambda: ("x86_64", "6.1.0-18-amd64"))
    write(root, "/etc/os-release", fixture_text("os-release", "debian12"))
    write(root, "/proc/1/comm", "systemd\n")
    write(root, "/proc/sys/kernel/osrelease", "6.1.0-18-amd64\n")
    write(root, "/proc/modules", proc_modules)
    os.makedirs(os.path.join(str(root), "lib/modules/6.1.0-18-amd64"))
    return root


def fixture_text(*parts):
    """Text of tests/unit/fixtures/<parts...>."""
    with open(os.path.join(FIXTURES, *parts)) as handle:
        return handle.read()


def load_catalogue():
    """A realistic copy of the role's vendor catalogue (the seed's four rows)."""
    return json.loads(fixture_text("catalogue.json"))


class ModuleExit(Exception):
    """Raised instead of exit_json; .result holds the module's result."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


class ModuleFail(Exception):
    """Raised instead of fail_json; .result holds the module's result."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


@contextlib.contextmanager
def module_args(args):
    """Expose args to AnsibleModule, on ansible-core 2.16 and 2.19 alike."""
    try:
        from ansible.module_utils.testing import patch_module_args
    except ImportError:
        patch_module_args = None
    if patch_module_args is not None:
        with patch_module_args(args):
            yield
        return
    saved = basic._ANSIBLE_ARGS
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode("utf-8")
    try:
        yield
    finally:
        basic._ANSIBLE_ARGS = saved


class FakeCommands:
    """Stands in for AnsibleModule.run_command.

    Responses are matched on the command's argument list with the program
    reduced to its base name ("/sbin/modprobe" -> "modprobe"): exact lists
    first, then prefixes, latest rule first.  A callable response gets the
    argument list and returns (rc, out, err).  Unmatched commands return
    (0, "", "") unless strict is set, then the test fails.
    """

    def __init__(self):
        self.rules = []
        self.calls = []
        self.strict = False

    def add(self, argv, rc=0, out="", err="", prefix=False, times=None):
        self.rules.insert(0, {"argv": list(argv), "response": (rc, out, err),
                              "prefix": prefix, "times": times})

    def add_callable(self, argv, func, prefix=True):
        self.rules.insert(0, {"argv": list(argv), "response": func, "prefix": prefix,
                              "times": None})

    @staticmethod
    def _short(args):
        if isinstance(args, str):
            args = args.split()
        args = list(args)
        if args:
            args[0] = os.path.basename(args[0])
        return args

    def __call__(self, args, **kwargs):
        argv = self._short(args)
        self.calls.append(argv)
        for rule in self.rules:
            want = rule["argv"]
            hit = argv[:len(want)] == want if rule["prefix"] else argv == want
            if not hit or rule["times"] == 0:
                continue
            if rule["times"] is not None:
                rule["times"] -= 1
            response = rule["response"]
            return response(argv) if callable(response) else response
        if self.strict:
            raise AssertionError("unexpected command %r" % (argv,))
        return 0, "", ""

    def ran(self, argv):
        """True when exactly this argument list was run."""
        return list(argv) in self.calls


@pytest.fixture
def fake_commands():
    return FakeCommands()


@pytest.fixture
def run_module(monkeypatch, fake_commands):
    """run_module(module, args, check_mode=False, diff=False, bins=None) -> result.

    bins maps a program name to its path (None: not installed); programs not
    listed resolve to /usr/sbin/<name>.
    """

    def runner(module, args, check_mode=False, diff=False, bins=None):
        bins = dict(bins or {})

        def exit_json(self, **kwargs):
            kwargs.setdefault("changed", False)
            raise ModuleExit(kwargs)

        def fail_json(self, msg="", **kwargs):
            kwargs["failed"] = True
            kwargs["msg"] = msg
            raise ModuleFail(kwargs)

        def get_bin_path(self, arg, required=False, opt_dirs=None):
            path = bins.get(arg, "/usr/sbin/" + arg)
            if path is None and required:
                fail_json(self, msg="Failed to find required executable %s" % arg)
            return path

        def run_command(self, args, **kwargs):
            return fake_commands(args, **kwargs)

        monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
        monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
        monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", get_bin_path)
        monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
        full = dict(args)
        if check_mode:
            full["_ansible_check_mode"] = True
        if diff:
            full["_ansible_diff"] = True
        with module_args(full):
            try:
                module.main()
            except ModuleExit as exc:
                return exc.result
            except ModuleFail as exc:
                return exc.result
        raise AssertionError("the module returned without exit_json or fail_json")

    return runner
