#!/usr/bin/python
# -*- coding: utf-8 -*-
# End-to-end TOA probe: a crafted TCP handshake carrying a TOA option, inside a
# private network namespace, and what getpeername()/accept() report for it.
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: toa_probe
short_description: Prove end to end that TOA rewrites the peer address of a TCP connection
description:
  - Proves that TOA (TCP Option Address) works on the target host, not merely that a kernel
    module is loaded.
  - A forked child process enters a private network namespace (C(unshare) with C(CLONE_NEWNET)),
    brings up C(lo) and a TUN device named C(toaprobe0) with C(192.0.2.1/24) and
    C(2001:db8::1/64), and listens on it. It then plays the layer-4 proxy itself through the
    TUN file descriptor, writing a hand-made SYN from O(proxy_address), reading the kernel's
    SYN-ACK, and writing the final ACK with the TOA option (O(toa_address), O(toa_port)),
    followed by a first data segment. It accepts the connection and reports what accept()
    and getpeername() returned.
  - Because the SYN-ACK is delivered to the TUN device (this process) the kernel never
    answers it with a RST, and no firewall rule, route or address is touched on the host.
  - When the child exits, its network namespace and the TUN device disappear with it. The
    parent kills the child (and anything it started) when O(timeout) expires, so nothing is
    left behind even on failure or timeout.
  - The module fails when the observed peer does not match O(expect), with a message saying
    what was seen and what was expected.
version_added: "1.0.0"
author:
  - toa-fleet contributors (!UNKNOWN)
options:
  family:
    description:
      - Address family of the probe.
      - V(ipv4) sends IPv4 packets to an C(AF_INET) listener on C(192.0.2.1).
      - V(ipv6) sends IPv6 packets to an C(AF_INET6) listener on C(2001:db8::1).
      - V(ipv4_on_ipv6) sends IPv4 packets carrying an IPv4 TOA option to a dual-stack
        C(AF_INET6) listener (C(IPV6_V6ONLY=0)); the peer is then reported as
        C(::ffff:a.b.c.d).
    type: str
    choices: [ipv4, ipv6, ipv4_on_ipv6]
    default: ipv4
  kind:
    description:
      - TCP option kind of the TOA option.
      - Defaults to V(200) for V(ipv4) and V(ipv4_on_ipv6), V(254) for V(ipv6).
      - The option length follows from the family, 8 for an IPv4 address and 20 for an
        IPv6 address.
      - Kinds the kernel itself interprets (0-5, 8, 19, 29, 30, 34) are refused.
    type: int
  toa_address:
    description:
      - Client address put into the TOA option, the address a working TOA module reports.
      - Defaults to V(203.0.113.7) for V(ipv4) and V(ipv4_on_ipv6), V(2001:db8:7::7) for
        V(ipv6).
    type: str
  toa_port:
    description: Client port put into the TOA option.
    type: int
    default: 4242
  proxy_address:
    description:
      - Source address of the crafted packets, the layer-4 proxy as the kernel sees it and
        the peer reported when nothing rewrites it.
      - Set it outside a TOA module's trusted proxy ranges to check that options from
        untrusted sources are ignored (with O(expect=unrewritten)).
      - Defaults to V(192.0.2.2) for V(ipv4) and V(ipv4_on_ipv6), V(2001:db8::2) for
        V(ipv6). Must not be the listener address, loopback, multicast or unspecified.
    type: str
  option_in:
    description:
      - Which segments carry the TOA option.
      - V(ack) the final ACK of the handshake (what the classic modules read).
      - V(syn) the SYN only.
      - V(both) the SYN and the final ACK.
      - V(data) the final ACK and the first data segment.
      - V(all) the SYN, the final ACK and the first data segment.
      - A first data segment is always sent; it carries the option only with V(data) or
        V(all).
    type: str
    choices: [ack, syn, both, data, all]
    default: ack
  expect:
    description:
      - What the peer address must be for the module to succeed.
      - V(rewritten) requires both getpeername() and accept() to report
        O(toa_address):O(toa_port), the proof that TOA works.
      - V(unrewritten) requires both to report the real proxy address and port, for hosts
        without a TOA module or probes from an untrusted O(proxy_address).
      - V(any) only reports; it still fails when the peer is neither of the two (for
        example an address rewritten without its port), which is always a bug.
    type: str
    choices: [rewritten, unrewritten, any]
    default: rewritten
  timeout:
    description:
      - Seconds the whole probe may take. The child is killed when it expires.
    type: float
    default: 10
requirements:
  - Runs as root (C(become=true)); needs C(CAP_SYS_ADMIN) for the namespace and
    C(CAP_NET_ADMIN) for the TUN device.
  - Kernel with network namespaces (C(CONFIG_NET_NS)) and TUN (C(CONFIG_TUN), C(/dev/net/tun)).
  - The C(ip) command (iproute2). IPv6 support in the kernel for V(ipv6) and V(ipv4_on_ipv6).
  - No third-party Python package; Python 2.7 or 3.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - The probe runs in check mode too, because it changes nothing on the host; a probe
        that skipped its work in check mode would prove nothing.
notes:
  - The result is never C(changed).
  - A TOA module that filters by trusted proxy source ranges must trust O(proxy_address)
    (by default C(192.0.2.0/24) and C(2001:db8::/64)) for O(expect=rewritten) to pass.
  - Opening C(/dev/net/tun) may make the kernel load the C(tun) module on demand; nothing
    else on the host changes.
'''

EXAMPLES = r'''
- name: Prove that TOA rewrites the peer address (IPv4, option kind 200)
  toa_probe:
  become: true

- name: IPv6 TOA with kind 253
  toa_probe:
    family: ipv6
    kind: 253
  become: true

- name: IPv4 TOA seen by a dual-stack listener as ::ffff:203.0.113.7
  toa_probe:
    family: ipv4_on_ipv6
  become: true

- name: Options from an untrusted source must be ignored
  toa_probe:
    proxy_address: 198.51.100.9
    expect: unrewritten
  become: true

- name: Without a TOA module the real proxy address must be seen
  toa_probe:
    expect: unrewritten
  become: true
  register: probe

- name: Show the proof
  ansible.builtin.debug:
    msg: >-
      sent {{ probe.toa_address }}:{{ probe.toa_port }},
      getpeername() said {{ probe.peer_address }}:{{ probe.peer_port }}
'''

RETURN = r'''
peer_address:
  description: Address returned by getpeername() on the accepted socket.
  returned: success or failed expectation
  type: str
  sample: 203.0.113.7
peer_port:
  description: Port returned by getpeername().
  returned: success or failed expectation
  type: int
  sample: 4242
accept_address:
  description: Address returned by accept().
  returned: success or failed expectation
  type: str
  sample: 203.0.113.7
accept_port:
  description: Port returned by accept().
  returned: success or failed expectation
  type: int
  sample: 4242
toa_address:
  description: Address put into the TOA option.
  returned: always
  type: str
  sample: 203.0.113.7
toa_port:
  description: Port put into the TOA option.
  returned: always
  type: int
  sample: 4242
proxy_address:
  description: Source address of the crafted packets (the real peer).
  returned: always
  type: str
  sample: 192.0.2.2
proxy_port:
  description: Source port of the crafted packets (the real peer port).
  returned: when the probe ran
  type: int
  sample: 45123
listen_address:
  description:
    - Destination of the crafted packets inside the private namespace. The listener is bound
      to it, except for V(ipv4_on_ipv6) where it is bound to C(::) with C(IPV6_V6ONLY=0).
  returned: always
  type: str
  sample: 192.0.2.1
listen_port:
  description: Port of the listener inside the private namespace.
  returned: when the probe ran
  type: int
  sample: 39211
expected_address:
  description:
    - The address getpeername() must report for O(expect), in the listener's notation
      (C(::ffff:a.b.c.d) for V(ipv4_on_ipv6)). Empty for O(expect=any).
  returned: always
  type: str
  sample: 203.0.113.7
expected_port:
  description: The port getpeername() must report for O(expect); 0 for O(expect=any).
  returned: when the probe ran
  type: int
  sample: 4242
peer_state:
  description:
    - V(rewritten) when getpeername() reported the TOA address and port, V(unrewritten)
      when it reported the proxy address and port, V(other) otherwise.
  returned: success or failed expectation
  type: str
  sample: rewritten
accept_state:
  description: The same classification for the address accept() returned.
  returned: success or failed expectation
  type: str
  sample: rewritten
rewritten:
  description: Whether getpeername() reported the TOA address and port.
  returned: success or failed expectation
  type: bool
  sample: true
matches:
  description: Whether what was seen satisfies O(expect).
  returned: success or failed expectation
  type: bool
  sample: true
payload_ok:
  description: Whether the accepted socket delivered the probe's data segment intact.
  returned: success or failed expectation
  type: bool
  sample: true
family:
  description: The probe's family.
  returned: always
  type: str
  sample: ipv4
kind:
  description: The TOA option kind used.
  returned: always
  type: int
  sample: 200
option_in:
  description: Which segments carried the option.
  returned: always
  type: str
  sample: ack
syn_sent:
  description:
    - How many SYNs were written. The SYN is retransmitted (after 0.2 s, then doubling up to
      1 s) until the SYN-ACK arrives, as a real client would.
  returned: success or failed expectation
  type: int
  sample: 1
ack_sent:
  description: How many final ACKs (with the data segment) were written; more than one when
    the listener retransmitted its SYN-ACK.
  returned: success or failed expectation
  type: int
  sample: 1
elapsed_ms:
  description: Wall time of the probe in milliseconds (fork to result).
  returned: when the probe ran
  type: int
  sample: 48
stage:
  description: Last step the probe reached; tells where a failure or timeout happened.
  returned: when the probe ran
  type: str
  sample: done
'''


from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.toa_probe_run import (
    OPTION_SEGMENTS, ProbeError, base_result, conclude, environment, resolve_params, run_in_child)


def check_environment(module):
    """Preconditions on the target; returns the path of `ip` or fails the module."""
    ip_bin, problem = environment(module)
    if problem:
        module.fail_json(msg=problem)
    return ip_bin


def main():
    module = AnsibleModule(
        argument_spec=dict(
            family=dict(type='str', default='ipv4', choices=['ipv4', 'ipv6', 'ipv4_on_ipv6']),
            kind=dict(type='int'),
            toa_address=dict(type='str'),
            toa_port=dict(type='int', default=4242),
            proxy_address=dict(type='str'),
            option_in=dict(type='str', default='ack', choices=sorted(OPTION_SEGMENTS)),
            expect=dict(type='str', default='rewritten', choices=['rewritten', 'unrewritten', 'any']),
            timeout=dict(type='float', default=10.0),
        ),
        supports_check_mode=True,
    )
    try:
        plan = resolve_params(module.params)
    except ProbeError as exc:
        module.fail_json(msg=str(exc))
    for warning in plan.pop('warnings'):
        module.warn(warning)

    result = base_result(plan)
    plan['ip_bin'] = check_environment(module)
    result, message = conclude(plan, result, run_in_child(module, plan))
    if message:
        module.fail_json(msg=message, **result)
    if not result.get('payload_ok'):
        module.warn('the accepted connection did not deliver the probe payload intact')
    module.exit_json(**result)


if __name__ == '__main__':
    main()
