# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The end-to-end TOA probe, shared by toa_probe and toa_verify.

A forked child (module_utils/toa_child.py) enters a private network namespace,
brings up a TUN device, listens on it and plays the layer-4 proxy itself: a
crafted SYN, the kernel's SYN-ACK, a final ACK carrying the TOA option.  What
accept() and getpeername() return is compared with what was asked (verdict()).

A caller runs one probe as:

    plan = resolve_params(params)          # ProbeError: bad parameters
    ip_bin, problem = environment(module)  # problem: what the host lacks
    plan['ip_bin'] = ip_bin
    result = base_result(plan)
    result, message = conclude(plan, result, run_in_child(module, plan))

message is None when the probe saw what plan['expect'] asks, else what went wrong.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import random
import socket
import struct
import time

from ansible.module_utils.toa_packet import (
    CLONE_NEWNET, TCP_ACK, TCP_PSH, TCP_SYN, TFO_EXP_MAGIC, TUN_PATH, address_problem,
    attach_tun, build_packet, describe_packet, encode_toa_option, is_reset_for, is_synack_for,
    mss_option, pack_address, parse_packet, readable, same_address, unpack_address,
    unshare, v4_mapped)
from ansible.module_utils.toa_child import ChildError, remaining, run_bounded

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

TUN_NAME = 'toaprobe0'

LISTEN4 = '192.0.2.1'
LISTEN6 = '2001:db8::1'
PREFIX4 = 24
PREFIX6 = 64

DEFAULTS = {
    'ipv4': {'kind': 200, 'toa_address': '203.0.113.7', 'proxy_address': '192.0.2.2'},
    'ipv4_on_ipv6': {'kind': 200, 'toa_address': '203.0.113.7', 'proxy_address': '192.0.2.2'},
    'ipv6': {'kind': 254, 'toa_address': '2001:db8:7::7', 'proxy_address': '2001:db8::2'},
}

# Kinds the Linux stack parses itself: EOL, NOP, MSS, window scale, SACK-permitted, SACK,
# timestamps, MD5 signature, TCP-AO, MPTCP, Fast Open.
RESERVED_KINDS = {
    0: 'end of option list', 1: 'no-operation', 2: 'MSS', 3: 'window scale',
    4: 'SACK permitted', 5: 'SACK', 8: 'timestamps', 19: 'TCP MD5 signature',
    29: 'TCP-AO', 30: 'MPTCP', 34: 'TCP Fast Open',
}

SYN_RETRY_FIRST = 0.2
SYN_RETRY_MAX = 1.0
PROBE_PAYLOAD = b'TOA-PROBE\n'
OPTION_SEGMENTS = {
    'ack': ('ack',),
    'syn': ('syn',),
    'both': ('syn', 'ack'),
    'data': ('ack', 'data'),
    'all': ('syn', 'ack', 'data'),
}


class ProbeError(ChildError):
    """A failure with a message meant for the operator."""


# ---------------------------------------------------------------------------
# Parameters and verdict (pure)
# ---------------------------------------------------------------------------

def resolve_params(params):
    """Validate module parameters, fill family-dependent defaults; raise ProbeError."""
    family = params.get('family') or 'ipv4'
    if family not in DEFAULTS:
        raise ProbeError('family must be one of ipv4, ipv6, ipv4_on_ipv6, not %r' % (family,))
    defaults = DEFAULTS[family]
    wire_family = socket.AF_INET6 if family == 'ipv6' else socket.AF_INET
    wire_name = 'IPv6' if family == 'ipv6' else 'IPv4'

    kind = params.get('kind')
    if kind is None:
        kind = defaults['kind']
    kind = int(kind)
    if not 0 <= kind <= 255:
        raise ProbeError('kind must be a TCP option kind between 0 and 255, not %d' % kind)
    if kind in RESERVED_KINDS:
        raise ProbeError('kind %d is the standard TCP option "%s", which the kernel parses '
                         'itself; TOA uses kind 200 (IPv4), 253 or 254' % (kind, RESERVED_KINDS[kind]))

    port = params.get('toa_port')
    port = 4242 if port is None else int(port)
    if not 1 <= port <= 65535:
        raise ProbeError('toa_port must be between 1 and 65535, not %d' % port)

    resolved = {}
    for name in ('toa_address', 'proxy_address'):
        value = params.get(name)
        if value is None or str(value).strip() == '':
            value = defaults[name]
        value = str(value).strip()
        try:
            addr_family, packed = pack_address(value)
        except ValueError as exc:
            raise ProbeError(str(exc))
        if addr_family != wire_family:
            raise ProbeError('%s %s is not an %s address, but family=%s sends %s packets%s' % (
                name, value, wire_name, family, wire_name,
                ' (use family=ipv6 for IPv6 addresses)' if wire_name == 'IPv4' else ''))
        problem = address_problem(packed)
        if problem and name == 'proxy_address':
            raise ProbeError('proxy_address %s %s; the crafted packets need a unicast source '
                             'address' % (value, problem))
        resolved[name] = unpack_address(packed)

    listen = LISTEN6 if family == 'ipv6' else LISTEN4
    if same_address(resolved['proxy_address'], listen):
        raise ProbeError('proxy_address %s is the listener address inside the probe namespace; '
                         'pick another address' % resolved['proxy_address'])
    if resolved['proxy_address'] in ('192.0.2.0', '192.0.2.255') and family != 'ipv6':
        raise ProbeError('proxy_address %s is the network or broadcast address of the probe\'s '
                         '192.0.2.0/24; the kernel drops packets from it' % resolved['proxy_address'])
    if same_address(resolved['proxy_address'], resolved['toa_address']):
        raise ProbeError('toa_address and proxy_address are both %s: the probe could not tell a '
                         'rewritten peer from the real one' % resolved['toa_address'])

    option_in = params.get('option_in') or 'ack'
    if option_in not in OPTION_SEGMENTS:
        raise ProbeError('option_in must be one of %s, not %r'
                         % (', '.join(sorted(OPTION_SEGMENTS)), option_in))
    expect = params.get('expect') or 'rewritten'
    if expect not in ('rewritten', 'unrewritten', 'any'):
        raise ProbeError('expect must be rewritten, unrewritten or any, not %r' % (expect,))

    timeout = params.get('timeout')
    timeout = 10.0 if timeout is None else float(timeout)
    if not 0 < timeout <= 3600:
        raise ProbeError('timeout must be more than 0 and at most 3600 seconds, not %s' % timeout)

    warnings = []
    if kind == 254 and port == TFO_EXP_MAGIC:
        warnings.append('toa_port %d with kind 254 looks like the experimental TCP Fast Open '
                        'magic 0xF989; a correct TOA module must ignore it' % port)

    return {
        'family': family,
        'kind': kind,
        'toa_address': resolved['toa_address'],
        'toa_port': port,
        'proxy_address': resolved['proxy_address'],
        'listen_address': listen,
        'option_in': option_in,
        'expect': expect,
        'timeout': timeout,
        'warnings': warnings,
    }


def peer_seen_as(family, address):
    """How the listener reports a wire address: ::ffff:a.b.c.d on a dual-stack socket."""
    if family == 'ipv4_on_ipv6':
        return v4_mapped(address)
    return address


def classify(plan, address, port, proxy_port):
    """rewritten / unrewritten / other for an (address, port) the listener reported."""
    family = plan['family']
    if same_address(address, peer_seen_as(family, plan['toa_address'])) and port == plan['toa_port']:
        return 'rewritten'
    if same_address(address, peer_seen_as(family, plan['proxy_address'])) and port == proxy_port:
        return 'unrewritten'
    return 'other'


def verdict(plan, observed):
    """Fill the verdict keys into a copy of the child's observation; return (result, msg)."""
    result = dict(observed)
    proxy_port = observed['proxy_port']
    peer_state = classify(plan, observed['peer_address'], observed['peer_port'], proxy_port)
    accept_state = classify(plan, observed['accept_address'], observed['accept_port'], proxy_port)
    expect = plan['expect']
    result['peer_state'] = peer_state
    result['accept_state'] = accept_state
    result['rewritten'] = peer_state == 'rewritten'
    if expect == 'any':
        matches = peer_state != 'other' and accept_state != 'other'
    else:
        matches = peer_state == expect and accept_state == expect
    result['matches'] = matches

    seen = 'getpeername() returned %s port %s and accept() returned %s port %s' % (
        observed['peer_address'], observed['peer_port'],
        observed['accept_address'], observed['accept_port'])
    toa = '%s port %d' % (peer_seen_as(plan['family'], plan['toa_address']), plan['toa_port'])
    proxy = '%s port %d' % (peer_seen_as(plan['family'], plan['proxy_address']), proxy_port)
    where = 'option kind %d in %s, family %s' % (plan['kind'], plan['option_in'], plan['family'])
    if matches:
        return result, None
    if expect == 'rewritten':
        if peer_state == 'unrewritten' and accept_state == 'unrewritten':
            hint = ('no TOA module rewrote the peer (not loaded, wrong kind, or proxy %s not '
                    'trusted)' % plan['proxy_address'])
        elif peer_state == 'rewritten':
            hint = 'getpeername() is rewritten but accept() is not (a getname hook that ignores accept)'
        elif accept_state == 'rewritten':
            hint = 'accept() is rewritten but getpeername() is not'
        else:
            hint = 'the peer was changed to something that is neither the TOA nor the proxy address'
        return result, 'TOA did not rewrite the peer: expected the TOA address %s, but %s (%s; %s)' % (
            toa, seen, where, hint)
    if expect == 'unrewritten':
        if 'rewritten' in (peer_state, accept_state):
            hint = ('a TOA module rewrote the peer although this probe expected the real address '
                    '(untrusted proxy or unexpected kind accepted?)')
        else:
            hint = 'the peer was changed to something that is neither the TOA nor the proxy address'
        return result, 'expected the real proxy address %s, but %s (%s; %s)' % (proxy, seen, where, hint)
    return result, ('the peer is neither the TOA address %s nor the proxy address %s: %s (%s)'
                    % (toa, proxy, seen, where))


# ---------------------------------------------------------------------------
# The child: private namespace, TUN device, crafted handshake
# ---------------------------------------------------------------------------

def _unshare_net():
    try:
        unshare(CLONE_NEWNET)
    except OSError as exc:
        if exc.errno == errno.EPERM:
            raise ProbeError('unshare(CLONE_NEWNET) was refused (EPERM): the probe needs root with '
                             'CAP_SYS_ADMIN; run it with become: true, and outside a container that '
                             'drops that capability')
        if exc.errno == errno.EINVAL:
            raise ProbeError('unshare(CLONE_NEWNET) failed (EINVAL): this kernel has no network '
                             'namespace support (CONFIG_NET_NS)')
        raise ProbeError('unshare(CLONE_NEWNET) failed: %s' % os.strerror(exc.errno))


def _open_tun(name):
    try:
        fd = os.open(TUN_PATH, os.O_RDWR)
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENXIO, errno.ENOENT):
            raise ProbeError('cannot open %s (%s): the tun kernel module is missing or cannot be '
                             'loaded; check CONFIG_TUN and `modprobe tun`' % (TUN_PATH, exc.strerror))
        raise ProbeError('cannot open %s: %s' % (TUN_PATH, exc.strerror))
    try:
        attach_tun(fd, name)
    except (IOError, OSError) as exc:
        os.close(fd)
        raise ProbeError('TUNSETIFF for %s failed: %s (CAP_NET_ADMIN is needed)' % (name, exc))
    return fd


def _ip(module, ip_bin, args):
    cmd = [ip_bin] + list(args)
    rc, out, err = module.run_command(cmd, check_rc=False)
    if rc != 0:
        raise ProbeError('`%s` failed (rc=%s): %s' % (' '.join(cmd), rc, (err or out).strip()))


def _child_probe(module, plan, report):
    """Runs in the forked child; returns the observation dict or raises ProbeError."""
    deadline = plan['child_deadline']
    family = plan['family']
    listen = plan['listen_address']
    proxy = plan['proxy_address']
    ip_bin = plan['ip_bin']

    report('unshare')
    _unshare_net()
    report('loopback')
    _ip(module, ip_bin, ['link', 'set', 'dev', 'lo', 'up'])
    report('tun')
    tun = _open_tun(TUN_NAME)
    report('addresses')
    if family == 'ipv6':
        _ip(module, ip_bin, ['-6', 'addr', 'add', '%s/%d' % (LISTEN6, PREFIX6), 'dev', TUN_NAME, 'nodad'])
    else:
        _ip(module, ip_bin, ['addr', 'add', '%s/%d' % (LISTEN4, PREFIX4), 'dev', TUN_NAME])
    _ip(module, ip_bin, ['link', 'set', 'dev', TUN_NAME, 'up'])
    # A default route through the TUN device lets any proxy_address work (also with
    # strict reverse path filtering) and sends every answer to us.
    _ip(module, ip_bin, ['-6' if family == 'ipv6' else '-4', 'route', 'add', 'default', 'dev', TUN_NAME])

    report('listen')
    try:
        if family == 'ipv4':
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind((listen, 0))
        else:
            listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            if family == 'ipv4_on_ipv6':
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                listener.bind(('::', 0))
            else:
                listener.bind((listen, 0))
        listener.listen(8)
    except socket.error as exc:
        if getattr(exc, 'errno', None) == errno.EAFNOSUPPORT:
            raise ProbeError('this kernel has no IPv6 support (booted with ipv6.disable=1?); '
                             'family=%s needs an AF_INET6 socket' % family)
        raise ProbeError('cannot listen on %s: %s' % (listen, exc))
    listener.setblocking(False)
    listen_port = listener.getsockname()[1]

    rng = random.SystemRandom()
    proxy_port = rng.randint(32768, 60999)
    while proxy_port == plan['toa_port']:
        proxy_port = rng.randint(32768, 60999)
    isn = rng.randint(0, 0xFFFFFFFF)
    ident = rng.randint(0, 0xFFFF)
    segments = OPTION_SEGMENTS[plan['option_in']]
    toa = encode_toa_option(plan['kind'], plan['toa_address'], plan['toa_port'])

    observed = {'listen_port': listen_port, 'proxy_port': proxy_port}

    def send_syn():
        syn_options = mss_option() + (toa if 'syn' in segments else b'')
        os.write(tun, build_packet(proxy, listen, proxy_port, listen_port, isn, 0, TCP_SYN,
                                   options=syn_options, ident=ident))

    def send_ack_and_data(server_isn):
        seq = (isn + 1) & 0xFFFFFFFF
        ack = (server_isn + 1) & 0xFFFFFFFF
        os.write(tun, build_packet(proxy, listen, proxy_port, listen_port, seq, ack, TCP_ACK,
                                   options=toa if 'ack' in segments else b'',
                                   ident=ident + 1))
        os.write(tun, build_packet(proxy, listen, proxy_port, listen_port, seq, ack,
                                   TCP_ACK | TCP_PSH,
                                   options=toa if 'data' in segments else b'',
                                   payload=PROBE_PAYLOAD, ident=ident + 2))

    report('syn')
    send_syn()
    observed['syn_sent'] = 1

    report('synack')
    # Like a real client, retransmit the SYN until the SYN-ACK comes: a freshly configured
    # device may drop the first packet (for example before IPv6 address setup finishes).
    server_isn = None
    others = []
    interval = SYN_RETRY_FIRST
    next_syn = time.time() + interval
    while server_isn is None:
        now = time.time()
        if now >= deadline:
            raise ProbeError('no SYN-ACK from the listener %s port %d within the deadline '
                             '(%d SYNs sent; other packets seen: %s)'
                             % (listen, listen_port, observed['syn_sent'], '; '.join(others) or 'none'))
        if now >= next_syn:
            send_syn()
            observed['syn_sent'] += 1
            interval = min(interval * 2, SYN_RETRY_MAX)
            next_syn = now + interval
        if not readable([tun], max(0.0, min(next_syn, deadline) - time.time())):
            continue
        raw = os.read(tun, 65535)
        packet = parse_packet(raw)
        if is_synack_for(packet, listen, listen_port, proxy, proxy_port, isn):
            server_isn = packet['seq']
        elif is_reset_for(packet, listen_port, proxy_port):
            raise ProbeError('the listener answered the crafted SYN with a RST')
        elif len(others) < 8:
            others.append(describe_packet(raw))

    report('ack')
    send_ack_and_data(server_isn)
    observed['ack_sent'] = 1

    report('accept')
    # If the final ACK is lost the listener retransmits its SYN-ACK: answer it again.
    while True:
        ready = readable([listener.fileno(), tun], remaining(deadline))
        if listener.fileno() in ready:
            break
        if not ready:
            raise ProbeError('the handshake did not produce a connection to accept() within the '
                             'deadline (%d final ACKs sent)' % observed['ack_sent'])
        packet = parse_packet(os.read(tun, 65535))
        if is_synack_for(packet, listen, listen_port, proxy, proxy_port, isn):
            send_ack_and_data(server_isn)
            observed['ack_sent'] += 1
    conn, accepted = listener.accept()
    try:
        # Abortive close (RST) so no orphaned socket lingers in FIN-WAIT after we exit.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        report('getpeername')
        peer = conn.getpeername()
        observed.update({
            'accept_address': accepted[0], 'accept_port': accepted[1],
            'peer_address': peer[0], 'peer_port': peer[1],
        })
        report('read')
        received = b''
        conn.setblocking(False)
        while len(received) < len(PROBE_PAYLOAD) and readable([conn.fileno()], remaining(deadline)):
            chunk = conn.recv(len(PROBE_PAYLOAD) - len(received))
            if not chunk:
                break
            received += chunk
        observed['payload_ok'] = received == PROBE_PAYLOAD
    finally:
        conn.close()
        listener.close()
        os.close(tun)
    report('done')
    return observed


def run_in_child(module, plan):
    """The probe in a forked child (module_utils/toa_child): whatever it creates dies with it."""
    plan = dict(plan)

    def work(report, child_deadline):
        plan['child_deadline'] = child_deadline
        return _child_probe(module, plan, report)
    return run_bounded(work, plan['timeout'], what='the probe')


# ---------------------------------------------------------------------------
# What the host needs, and the result a caller returns
# ---------------------------------------------------------------------------

def environment(module):
    """(path of `ip`, None) when the host can run the probe, else (None, what to do)."""
    if os.geteuid() != 0:
        return None, ('the TOA probe must run as root (it creates a network namespace and a '
                      'TUN device); use become: true')
    if not os.path.exists(TUN_PATH):
        return None, ('%s does not exist: the kernel has no TUN support or the device node '
                      'is missing; load it with `modprobe tun` (CONFIG_TUN) or create the '
                      'node with `mknod %s c 10 200`' % (TUN_PATH, TUN_PATH))
    ip_bin = module.get_bin_path('ip', required=False, opt_dirs=['/sbin', '/usr/sbin', '/bin', '/usr/bin'])
    if not ip_bin:
        return None, ('the `ip` command was not found: install iproute2 (Debian/Ubuntu) '
                      'or iproute (RHEL/CentOS)')
    return ip_bin, None


def base_result(plan):
    """What a probe result says before the probe runs: the plan, and the expected address."""
    return {
        'changed': False,
        'family': plan['family'],
        'kind': plan['kind'],
        'toa_address': plan['toa_address'],
        'toa_port': plan['toa_port'],
        'proxy_address': plan['proxy_address'],
        'listen_address': plan['listen_address'],
        'option_in': plan['option_in'],
        'expected_address': {
            'rewritten': peer_seen_as(plan['family'], plan['toa_address']),
            'unrewritten': peer_seen_as(plan['family'], plan['proxy_address']),
        }.get(plan['expect'], ''),
    }


def conclude(plan, result, outcome):
    """The result with what the child saw (run_in_child's outcome) and its verdict:
    (result, None) when it satisfies plan['expect'], else (result, what went wrong)."""
    result = dict(result)
    result['elapsed_ms'] = outcome['elapsed_ms']
    result['stage'] = outcome.get('stage', 'done')
    if 'error' in outcome:
        result.update(outcome.get('result') or {})
        return result, 'TOA probe failed at stage "%s": %s' % (result['stage'], outcome['error'])
    observed, message = verdict(plan, outcome['result'])
    result.update(observed)
    result['expected_port'] = {'rewritten': plan['toa_port'],
                               'unrewritten': observed['proxy_port']}.get(plan['expect'], 0)
    return result, message
