"""The guest tests (tests/kmod/vm_abuse.py, vm_load.py, tests/bpf/vm_bpf_test.py)
call the helpers of tests/kmod/vm_toa_test.py, and vm_toa_test.py calls
module_utils/toa_packet.py. They run only in a guest, so a helper whose
signature changes breaks them only there, halfway through a long run. Here every
such call is bound to the callee's signature, read from the source."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# caller file, the name it imports the callee module as, callee file
CALLERS = [
    ("tests/bpf/vm_bpf_test.py", "K", "tests/kmod/vm_toa_test.py"),
    ("tests/kmod/vm_abuse.py", "T", "tests/kmod/vm_toa_test.py"),
    ("tests/kmod/vm_load.py", "T", "tests/kmod/vm_toa_test.py"),
    ("tests/kmod/vm_toa_test.py", "P", "module_utils/toa_packet.py"),
]


def parse(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return ast.parse(f.read(), rel)


def functions(rel):
    return {n.name: n.args for n in parse(rel).body if isinstance(n, ast.FunctionDef)}


def binding_error(sig, call):
    """Why @call cannot bind to the arguments @sig, or None."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return None                      # *args / **kwargs at the call: not decidable here
    params = [a.arg for a in sig.posonlyargs + sig.args]
    npos = len(call.args)
    if npos > len(params) and not sig.vararg:
        return "%d positional arguments for %d parameters" % (npos, len(params))
    given = set(params[:npos])
    for kw in call.keywords:
        if kw.arg in given:
            return "%s given twice (positionally and by name)" % kw.arg
        if kw.arg not in params and kw.arg not in [a.arg for a in sig.kwonlyargs] and not sig.kwarg:
            return "no parameter %s" % kw.arg
        given.add(kw.arg)
    required = params[:len(params) - len(sig.defaults)]
    required += [a.arg for a, d in zip(sig.kwonlyargs, sig.kw_defaults) if d is None]
    missing = [p for p in required if p not in given]
    return "missing %s" % ", ".join(missing) if missing else None


def calls(caller, alias):
    for node in ast.walk(parse(caller)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == alias):
            yield node


@pytest.mark.parametrize("caller,alias,callee", CALLERS, ids=[c[0] for c in CALLERS])
def test_every_call_binds_to_the_callee_signature(caller, alias, callee):
    sigs = functions(callee)
    bad = []
    seen = 0
    for node in calls(caller, alias):
        sig = sigs.get(node.func.attr)
        if sig is None:
            continue                     # a module-level value, not a function
        seen += 1
        why = binding_error(sig, node)
        if why:
            bad.append("%s:%d %s.%s(): %s" % (caller, node.lineno, alias, node.func.attr, why))
    assert seen, "no calls of %s's functions found in %s: is the alias %s still right?" % (
        callee, caller, alias)
    assert not bad, "\n".join(bad)


def test_the_check_itself_catches_a_stale_call():
    sig = functions("tests/kmod/vm_toa_test.py")["tcp_packet"]
    stale = ast.parse("K.tcp_packet(False, a, b, 1, 2, 3, 0, 2, b'', payload=b'x')").body[0].value
    assert "positional" in binding_error(sig, stale) or "twice" in binding_error(sig, stale)
    good = ast.parse("K.tcp_packet(a, b, 1, 2, 3, 0, 2, b'', payload=b'x')").body[0].value
    assert binding_error(sig, good) is None
    assert "missing" in binding_error(sig, ast.parse("K.tcp_packet(a, b)").body[0].value)
