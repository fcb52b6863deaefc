"""Render the Jinja of the role's and playbooks' task files with Ansible's own templating.

Tasks whose logic lives in expressions (a condition, a loop, a message) are tested by
rendering those expressions on realistic registered results and facts, without a host:

    task = find_task("roles/toa/tasks/dkms_signing.yml", "Assert that the module ...")
    assert render_all(task["assert"]["that"], task.get("vars"), **variables)

The task's own `vars:` are given lazily, as Ansible does. Works with ansible-core 2.16
and 2.19 (which templates only strings marked trusted, as it does those from files).
"""

import os

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core < 2.19 templates every string
    def trust_as_template(value):
        return value

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tasks(items):
    for item in items or []:
        yield item
        for key in ("block", "rescue", "always", "tasks"):
            if isinstance(item.get(key), list):
                for inner in _tasks(item[key]):
                    yield inner


def find_task(path, name):
    """The task (or block) called `name` in the YAML file at `path` (relative to the repo)."""
    with open(os.path.join(ROOT, path)) as handle:
        data = yaml.safe_load(handle)
    found = [task for task in _tasks(data) if task.get("name") == name]
    assert len(found) == 1, "%s: %d tasks named %r" % (path, len(found), name)
    return found[0]


def _trusted(value):
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return dict((key, _trusted(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_trusted(item) for item in value]
    return value


def render(expression, task_vars=None, **variables):
    """The value of one template string (e.g. a message) with the task's vars and `variables`."""
    merged = dict(variables)
    merged.update(task_vars or {})
    templar = Templar(loader=DataLoader(), variables=_trusted(merged))
    return templar.template(trust_as_template(expression))


def condition(expression, task_vars=None, **variables):
    """A `when:`/`that:` expression evaluated as Ansible does: True or False."""
    value = render("{{ (%s) | bool }}" % expression.strip(), task_vars, **variables)
    return value is True or value == "True"


def render_all(expressions, task_vars=None, **variables):
    """True when every condition of a `that:` or `when:` list (or a single string) holds."""
    if isinstance(expressions, str):
        expressions = [expressions]
    return all(condition(item, task_vars, **variables) for item in expressions)
