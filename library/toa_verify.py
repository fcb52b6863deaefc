#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: toa_verify
short_description: Verify TOA on a host in one module run (state, checks and the end-to-end probe)
description:
  - Read-only. Reads the TOA state as C(toa_facts) does (module loaded, version, srcversion of the
    loaded code and of the installed file, parameters, autoload, C(/proc/net/toa_stats), the eBPF
    route's status), checks it, and proves end to end as C(toa_probe) does that a crafted
    handshake's TOA address comes out of C(getpeername()), all in one run on the host.
  - "The checks, for a host of the module route: TOA is loaded; autoload is as I(autoload) asks;
    no counter shows a lost client address; the loaded code is the installed build (with
    I(reload_pending=fail)). For a host of the eBPF route (its loader and unit installed): the
    programs are loaded and attached to all three hooks, no TOA module is loaded beside them, and
    C(entries_nomem) is 0."
  - The probe runs for each family of I(probe_families) whose option kinds (I(params)) are not
    empty, with the first kind, and must see the injected address. It is not run when TOA is not
    in place (the module not loaded, the eBPF programs not attached); that failure is reported
    instead.
  - Fails when any check fails, with every failure in C(msg) (host, OS, kernel, and what to run)
    and in C(failures). Never changes anything; C(changed) is always false.
  - This is what C(playbooks/verify.yml) runs, one task per host, so that the controller's work
    per host does not grow with the number of checks.
options:
  name:
    description: Name of the kernel module.
    type: str
    default: toa
  host:
    description: The host's name in the messages (the inventory name); empty takes the host's own name.
    type: str
    default: ""
  autoload:
    description:
      - Whether some boot-time method must load the module (C(toa_autoload)); null does not check.
    type: bool
  reload_pending:
    description:
      - What a loaded module whose code is not the installed build (C(toa.module.reload_pending))
        does. V(fail) fails the check; V(report) only says so.
    type: str
    choices: [fail, report]
    default: fail
  probe:
    description: Run the end-to-end probe (C(toa_verify_probe)).
    type: bool
    default: true
  probe_families:
    description: The address families to probe (C(toa_verify_probe_families)).
    type: list
    elements: str
    choices: [ipv4, ipv6, ipv4_on_ipv6]
    default: [ipv4]
  params:
    description:
      - The module parameters TOA was loaded with (C(toa_params)). C(ipv4_kinds) (default
        C("200")) gives the kind the C(ipv4) and C(ipv4_on_ipv6) probes send, C(ipv6_kinds)
        (default C("253")) the C(ipv6) probe's; a family whose kinds are empty is not probed.
        C(trusted_cidrs) is named in a failed probe's message.
    type: dict
    default: {}
  probe_address:
    description: Client address the IPv4 probes put in the TOA option.
    type: str
    default: 203.0.113.7
  probe_address6:
    description: Client address the IPv6 probe puts in the TOA option.
    type: str
    default: "2001:db8:7::7"
  probe_port:
    description: Client port the probes put in the TOA option.
    type: int
    default: 4242
  probe_timeout:
    description: Seconds one probe may take before it is stopped and reported as failed.
    type: float
    default: 30
  probe_proxy_address:
    description: Source address of the IPv4 probes' handshake; empty takes the probe's default (192.0.2.2).
    type: str
    default: ""
  probe_proxy_address6:
    description: Source address of the IPv6 probe's handshake; empty takes the probe's default (2001:db8::2).
    type: str
    default: ""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Everything runs in check mode too, the probe included, because nothing is changed.
requirements:
  - Runs as root (C(become=true)) for the probe, with what C(toa_probe) needs (network
    namespaces, TUN, the C(ip) command).
notes:
  - Runs C(modinfo), C(toa-bpf status) on a host of the eBPF route, and C(ip) inside the probe's
    private network namespace; nothing else is executed.
author:
  - toa-fleet contributors (!UNKNOWN)
'''

EXAMPLES = r'''
- name: Verify TOA with the role's variables (roles/toa/tasks/verify_host.yml)
  toa_verify:
    host: "{{ inventory_hostname }}"
    autoload: "{{ toa_autoload | bool }}"
    params: "{{ toa_params }}"
    probe_families: [ipv4, ipv6]
  become: true

- name: Check the state only, without the probe, and print what was found
  toa_verify:
    probe: false
  become: true
  register: verified

- name: Show what verification found
  ansible.builtin.debug:
    msg: "{{ verified.notes }}"
'''

RETURN = r'''
toa:
  description:
    - The TOA state as C(toa_facts) returns it in C(ansible_facts.toa), with the keys verification
      reads (C(host), C(module), C(stats), C(counters), C(autoload), C(kernels) with C(running)
      only, C(ebpf)); not set as a fact.
  returned: always
  type: dict
route:
  description: V(ebpf) when the eBPF route is installed (its loader and unit exist), else V(module).
  returned: always
  type: str
  sample: module
failures:
  description: One message for each failed check, each naming the host and what to do.
  returned: always
  type: list
  elements: str
  sample:
    - "web1 (debian 12, kernel 6.1.0-28-amd64): TOA is not loaded (loaded=false,
      autoload=true); run playbooks/site.yml."
notes:
  description: What each check found when it passed, and what was not checked or probed and why.
  returned: always
  type: list
  elements: str
probes:
  description:
    - One result for each probe that ran, with the keys C(toa_probe) returns (C(family),
      C(peer_address), C(matches), ...) and C(msg) (null when it saw the injected address).
  returned: always
  type: list
  elements: dict
msg:
  description: The notes, or every failure, in one line.
  returned: always
  type: str
'''

import json
import socket

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.toa_probe_run import (
    ProbeError, base_result, conclude, environment, resolve_params, run_in_child)
from ansible.module_utils.toa_state import read_state

FAMILIES = ('ipv4', 'ipv6', 'ipv4_on_ipv6')
EBPF_HOOKS = 3  # sock_ops, getpeername4, getpeername6


# ---------------------------------------------------------------------------
# The checks (pure: a state dict in, messages out)
# ---------------------------------------------------------------------------

def _words(value):
    """A value as Ansible's messages print it: true/false, as it is otherwise."""
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    return '%s' % (value,)


def where(state, host):
    """'web1 (debian 12, kernel 6.1.0-28-amd64)': the host, its OS and kernel."""
    info = state.get('host') or {}
    return '%s (%s %s, kernel %s)' % (host, info.get('id') or '?', info.get('version') or '?',
                                      (state.get('kernels') or {}).get('running') or '?')


def check_ebpf(state, host):
    """The eBPF route: (failures, notes)."""
    ebpf = state.get('ebpf') or {}
    status = ebpf.get('status')
    kernel = (state.get('kernels') or {}).get('running') or '?'
    problems = []
    if not status:
        problems.append('toa-bpf status gave nothing (%s)'
                        % (ebpf.get('status_error') or 'no error said'))
    else:
        attached = status.get('attached') or {}
        if not status.get('loaded'):
            problems.append('the programs are not loaded')
        if len([hook for hook, on in attached.items() if on]) != EBPF_HOOKS:
            problems.append('not attached to every hook (%s)' % (', '.join(
                '%s=%s' % (hook, _words(on)) for hook, on in sorted(attached.items())) or 'none'))
    if ebpf.get('module_loaded'):
        problems.append('the toa module is loaded beside them')
    # what running the route's install again mends; lost addresses it does not
    fix = 'run playbooks/site.yml with toa_strategy=ebpf' if problems else (
        'find out why the host was short of kernel memory (docs/ebpf.md, the counters)')
    nomem = ((status or {}).get('counters') or {}).get('entries_nomem')
    if status and nomem != 0:
        problems.append('entries_nomem is %s: client addresses were lost for want of socket '
                        'storage (the kernel refused memory)' % _words(nomem))
    if problems:
        return ['%s: the TOA eBPF route is not in order: %s; status %s; %s.' % (
            where(state, host), '; '.join(problems), json.dumps(status, sort_keys=True), fix)], []
    return [], ['%s: TOA eBPF programs attached on kernel %s, counters %s.' % (
        host, kernel, json.dumps(status.get('counters') or {}, sort_keys=True))]


def sources(module):
    """Which sources the loaded module honours TOA from, as a sentence's end."""
    if module.get('honours_any_source'):
        return ('from any source (no trusted_cidrs: a client that reaches the host directly '
                'can claim any address)')
    return 'only from %s' % (module.get('trusted_cidrs') or '?')


def check_module(state, host, autoload=True):
    """The module route: loaded, and autoload as asked (None: not checked)."""
    module = state.get('module') or {}
    enabled = bool((state.get('autoload') or {}).get('enabled'))
    kernel = (state.get('kernels') or {}).get('running') or '?'
    problems = []
    if not module.get('loaded'):
        problems.append('TOA is not loaded')
    if autoload is not None and enabled != bool(autoload):
        problems.append('autoload is %s, toa_autoload wants it %s' % (
            'enabled' if enabled else 'disabled', 'enabled' if autoload else 'disabled'))
    if problems:
        return ['%s: %s (loaded=%s, autoload=%s); run playbooks/site.yml.' % (
            where(state, host), ' and '.join(problems), _words(bool(module.get('loaded'))),
            _words(enabled))], []
    return [], ['%s: TOA %s loaded on kernel %s, autoload %s, honours TOA %s.' % (
        host, module.get('version') or '?', kernel, 'enabled' if enabled else 'disabled',
        sources(module))]


def check_counters(state, host):
    """TOA's own counters must show no lost client address (module route)."""
    counters = state.get('counters') or {}
    if counters.get('lost'):
        lost = ', '.join('%s=%s' % item for item in sorted((counters.get('lost_nonzero') or {}).items()))
        return ['%s: TOA lost client addresses (those connections saw the proxy): %s. %s' % (
            host, lost, counters.get('advice') or '')], []
    if counters.get('lost') is None:
        return [], ['%s: no TOA counters to read (no /proc/net/toa_stats, as with the vendor\'s '
                    'module), so lost addresses are unknown.' % host]
    hooks = {True: 'ftrace (cannot miss)', False: 'kprobes (can miss under load)'}.get(
        counters.get('hooks_ftrace'), 'not reported')
    refused = ', '.join('%s=%s' % item for item in sorted((counters.get('refusals') or {}).items())
                        if item[1] is not None)
    unknown = counters.get('lost_unknown') or []
    return [], ['%s: no TOA counter shows a lost client address; hooks %s; refused %s%s.' % (
        host, hooks, refused or 'none',
        '; unknown (not printed by this module): %s' % ', '.join(unknown) if unknown else '')]


def check_reload(state, host, name='toa', mode='fail'):
    """The loaded code must be the installed build (mode fail), or is only reported."""
    module = state.get('module') or {}
    if not module.get('reload_pending'):
        return [], []
    said = ('%s: the loaded %s (srcversion %s) is not the installed build (srcversion %s): the '
            'new module is installed but not running. Run playbooks/site.yml with -e '
            'toa_reload=true (live connections lose their TOA address), or reboot the host.' % (
                host, name, module.get('srcversion'), module.get('file_srcversion')))
    return ([said], []) if mode == 'fail' else ([], [said])


def kinds_of(value, default):
    """The option kinds a parameter names ("200,254", [254, 253], "") as numbers."""
    if value is None:
        value = default
    if isinstance(value, (list, tuple)):
        value = ','.join('%s' % item for item in value)
    return [int(item.strip()) for item in ('%s' % value).split(',') if item.strip()]


def probe_kinds(params):
    """family -> the option kinds the module reads for it (toa_params, the module's defaults)."""
    params = params or {}
    v4 = kinds_of(params.get('ipv4_kinds'), '200')
    return {'ipv4': v4, 'ipv6': kinds_of(params.get('ipv6_kinds'), '253'), 'ipv4_on_ipv6': v4}


def probe_requests(options, host):
    """(toa_probe parameters for each family to probe, notes on the families left out)."""
    kinds = probe_kinds(options.get('params'))
    requests, notes = [], []
    for family in options.get('probe_families') or []:
        if not kinds[family]:
            key = 'ipv6_kinds' if family == 'ipv6' else 'ipv4_kinds'
            notes.append('Not probing %s on %s: toa_params.%s is empty, so the module honours no %s '
                         'TOA option and there is nothing to prove. Remove %s from '
                         'toa_verify_probe_families, or set the kinds your proxies send.' % (
                             family, host, key, 'IPv6' if family == 'ipv6' else 'IPv4', family))
            continue
        six = family == 'ipv6'
        requests.append({
            'family': family,
            'kind': kinds[family][0],
            'toa_address': options['probe_address6' if six else 'probe_address'],
            'toa_port': options['probe_port'],
            'timeout': options['probe_timeout'],
            'proxy_address': options['probe_proxy_address6' if six else 'probe_proxy_address'] or None,
            'expect': 'rewritten',
        })
    return requests, notes


def probe_said(state, options, host, family, result, message):
    """(failures, notes) for one probe's result and message (None: it saw the TOA address)."""
    if message is None:
        said = ('TOA probe (%s): proxy %s:%s sent TOA %s:%s; getpeername() returned %s:%s, '
                'the injected address.')
        return [], [said % (family, result.get('proxy_address'), result.get('proxy_port'),
                            result.get('toa_address'), result.get('toa_port'),
                            result.get('peer_address'), result.get('peer_port'))]
    trusted = ((state.get('module') or {}).get('trusted_cidrs')
               or (options.get('params') or {}).get('trusted_cidrs'))
    hint = ''
    if trusted and 'did not rewrite' in message:
        hint = (' trusted_cidrs is %s: toa_verify_probe_proxy_address%s must lie inside it.'
                % (trusted, '6' if family == 'ipv6' else ''))
    return ['TOA probe (%s) on %s: %s.%s' % (family, where(state, host), message.rstrip('.'), hint)], []


def check_state(state, options, host):
    """Every check but the probe: (route, failures, notes, whether TOA is in place to probe)."""
    if (state.get('ebpf') or {}).get('installed'):
        failures, notes = check_ebpf(state, host)
        status = state['ebpf'].get('status') or {}
        attached = [on for on in (status.get('attached') or {}).values() if on]
        return 'ebpf', failures, notes, bool(status.get('loaded')) and len(attached) == EBPF_HOOKS
    failures, notes = check_module(state, host, options.get('autoload'))
    for more in (check_counters(state, host),
                 check_reload(state, host, options.get('name') or 'toa',
                              options.get('reload_pending') or 'fail')):
        failures += more[0]
        notes += more[1]
    return 'module', failures, notes, bool((state.get('module') or {}).get('loaded'))


# ---------------------------------------------------------------------------
# Module entry point
# ---------------------------------------------------------------------------

def run_probes(module, state, options, host):
    """Run the probes; (results, failures, notes)."""
    requests, notes = probe_requests(options, host)
    results, failures = [], []
    if not requests:
        return results, failures, notes
    ip_bin, problem = environment(module)
    if problem:
        return results, ['TOA probe on %s: %s.' % (where(state, host), problem)], notes
    for request in requests:
        try:
            plan = resolve_params(request)
        except ProbeError as exc:
            failures.append('TOA probe (%s) on %s: %s; check the toa_verify_probe_* variables.'
                            % (request['family'], host, exc))
            continue
        for warning in plan.pop('warnings'):
            module.warn(warning)
        plan['ip_bin'] = ip_bin
        result, message = conclude(plan, base_result(plan), run_in_child(module, plan))
        result.pop('changed', None)
        result['msg'] = message
        results.append(result)
        if message is None and not result.get('payload_ok'):
            module.warn('TOA probe (%s): the accepted connection did not deliver the probe '
                        'payload intact' % request['family'])
        said = probe_said(state, options, host, request['family'], result, message)
        failures += said[0]
        notes += said[1]
    return results, failures, notes


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', default='toa'),
            host=dict(type='str', default=''),
            autoload=dict(type='bool'),
            reload_pending=dict(type='str', default='fail', choices=['fail', 'report']),
            probe=dict(type='bool', default=True),
            probe_families=dict(type='list', elements='str', default=['ipv4'],
                                choices=list(FAMILIES)),
            params=dict(type='dict', default={}),
            probe_address=dict(type='str', default='203.0.113.7'),
            probe_address6=dict(type='str', default='2001:db8:7::7'),
            probe_port=dict(type='int', default=4242),
            probe_timeout=dict(type='float', default=30.0),
            probe_proxy_address=dict(type='str', default=''),
            probe_proxy_address6=dict(type='str', default=''),
        ),
        supports_check_mode=True,
    )
    options = module.params
    host = options['host'] or socket.gethostname()
    try:
        probe_kinds(options['params'])
    except ValueError as exc:
        module.fail_json(msg='params (toa_params) ipv4_kinds and ipv6_kinds take option kinds '
                             'as numbers separated by commas: %s' % exc)
    state = read_state(module, options['name'])
    route, failures, notes, in_place = check_state(state, options, host)
    probes = []
    if options['probe'] and in_place:
        probes, more, said = run_probes(module, state, options, host)
        failures += more
        notes += said
    elif options['probe']:
        notes.append('%s: not probed, TOA is not in place.' % host)
    result = dict(changed=False, toa=state, route=route, failures=failures, notes=notes,
                  probes=probes)
    if failures:
        module.fail_json(msg=' '.join(
            failures if len(failures) == 1
            else ['%d checks failed:' % len(failures)] + ['(%d) %s' % (number, text) for number, text
                                                          in enumerate(failures, 1)]), **result)
    module.exit_json(msg=' '.join(notes), **result)


if __name__ == '__main__':
    main()
