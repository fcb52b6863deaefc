"""tests/kmod/vm_toa_test.py runs in a guest; here only what can be read from its source:
no check is recorded with a constant result (it would count as a check that cannot fail)."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VM_TEST = os.path.join(ROOT, "tests", "kmod", "vm_toa_test.py")


def calls_of(name):
    with open(VM_TEST) as handle:
        tree = ast.parse(handle.read())
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name) and node.func.id == name]


def test_no_check_has_a_constant_outcome():
    constant = [node.lineno for node in calls_of("check")
                if len(node.args) > 1 and isinstance(node.args[1], ast.Constant)]
    assert not constant, "check() with a constant result at lines %s: use skip()" % constant

