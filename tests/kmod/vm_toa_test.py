#!/usr/bin/env python3
"""In-guest functional test of toa.ko (run as root inside a test VM).

Plays the layer-4 proxy through a TUN device in a private network namespace:
writes hand-made SYN / final ACK segments carrying TOA options, reads the
kernel's SYN-ACK back, accepts, and checks what accept() and getpeername()
report.  Loads and unloads the module itself.

  vm_toa_test.py --ko ./toa.ko [--quick]

Prints one PASS/FAIL line per check and a few "MEASURE" lines; exits non-zero
when a check fails.  Counters are per network namespace: this process reads
its own namespace's /proc/self/net/toa_stats, and /proc/1/net/toa_stats for
the initial namespace's.
"""
import argparse
import ctypes
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The packet code (module_utils/toa_packet.py in the tree) is shared with toa_probe:
# vm_run.sh copies it beside this file into the guest.
sys.path[:0] = [HERE, os.path.join(HERE, '..', '..', 'module_utils')]
import toa_packet as P  # noqa: E402

TUN = 'toat0'
L4, P4 = '192.0.2.1', '192.0.2.2'          # listener / proxy (IPv4)
L6, P6 = '2001:db8::1', '2001:db8::2'      # listener / proxy (IPv6)
PORT4, PORT6, PORT_DUAL, PORT_LO, PORT_TFO = 80, 80, 81, 90, 82
STATS = '/proc/self/net/toa_stats'
INIT_STATS = '/proc/1/net/toa_stats'
PARAMS = '/sys/module/toa/parameters/'

failures = []
skipped = []
tun_fd = None
next_sport = [20000]


def check(name, ok, detail=''):
    print('%s %s%s' % ('PASS' if ok else 'FAIL', name, (': ' + detail) if detail else ''))
    sys.stdout.flush()
    if not ok:
        failures.append(name)


def skip(name, why):
    """A check this kernel gives nothing to check: reported, never counted as passed."""
    print('SKIP %s: %s' % (name, why))
    sys.stdout.flush()
    skipped.append(name)


def sh(*args, ok_codes=(0,)):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if r.returncode not in ok_codes:
        raise RuntimeError('%s: %s' % (' '.join(args), r.stdout))
    return r


def stats(path=STATS):
    out = {}
    with open(path) as f:
        for line in f:
            k, v = line.split()
            out[k] = int(v)
    return out


def setp(name, value):
    """Write a module parameter; return None or the errno text."""
    try:
        with open(PARAMS + name, 'w') as f:
            f.write(value + '\n')      # sysfs ignores an empty write
        return None
    except OSError as e:
        return e.strerror


def getp(name):
    with open(PARAMS + name) as f:
        return f.read().strip()


# --------------------------------------------------------------------------
# packets
toa_opt = P.encode_toa_option


def tcp_packet(src, dst, sport, dport, seq, ack, flags, opts=b'', payload=b''):
    """An IPv4 or IPv6 packet (by the addresses) as a proxy writes it: its options
    aligned with NOPs in front."""
    return P.build_packet(src, dst, sport, dport, seq, ack, flags,
                          options=P.pad_options(opts, nop_front=True), payload=payload)


def read_synack(sport, timeout=5.0):
    """Return the server ISN of the SYN-ACK sent to our source port."""
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([tun_fd], [], [], max(0, end - time.time()))
        if not r:
            break
        pkt = P.parse_packet(os.read(tun_fd, 65536))
        if pkt and pkt['dport'] == sport and pkt['flags'] & 0x12 == 0x12:
            return pkt['seq']
    raise RuntimeError('no SYN-ACK for port %d' % sport)


def handshake(listener, v6, syn_opts=b'', ack_opts=b'', src=None):
    """Complete one crafted handshake; return the accepted socket."""
    if next_sport[0] > 65000:       # long benchmarks: earlier ones are closed
        next_sport[0] = 20000
    sport = next_sport[0]
    next_sport[0] += 1
    src = src or (P6 if v6 else P4)
    dst = L6 if v6 else L4
    dport = listener.getsockname()[1]
    isn = 1000
    os.write(tun_fd, tcp_packet(src, dst, sport, dport, isn, 0, 0x02,
                                b'\x02\x04\x05\xb4' + syn_opts))
    sisn = read_synack(sport)
    os.write(tun_fd, tcp_packet(src, dst, sport, dport, isn + 1, sisn + 1,
                                0x10, ack_opts))
    listener.settimeout(5)
    conn, addr = listener.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    return conn, addr, sport


def peer(conn):
    p = conn.getpeername()
    return p[0], p[1]


# --------------------------------------------------------------------------
# setup
def enter_netns():
    global tun_fd
    P.unshare(P.CLONE_NEWNET)
    tun_fd = P.open_tun(TUN)
    sh('ip', 'link', 'set', 'lo', 'up')
    sh('ip', 'addr', 'add', L4 + '/24', 'dev', TUN)
    sh('ip', '-6', 'addr', 'add', L6 + '/64', 'dev', TUN, 'nodad')
    sh('ip', 'link', 'set', TUN, 'up')
    # the namespace's own sysctls: no SYN cookies surprises, quick orphan death
    for k, v in (('net.ipv4.tcp_syncookies', '0'), ('net.ipv4.tcp_orphan_retries', '1')):
        sh('sysctl', '-qw', '%s=%s' % (k, v), ok_codes=(0, 255))


def listeners():
    l4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l4.bind((L4, PORT4))
    l4.listen(1024)
    l6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    l6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    l6.bind((L6, PORT6))
    l6.listen(1024)
    ld = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ld.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ld.bind(('::', PORT_DUAL))
    ld.listen(1024)
    return l4, l6, ld


def dmesg_mark():
    sh('dmesg', '-C')


def dmesg_bad():
    out = sh('dmesg').stdout
    bad = [ln for ln in out.splitlines()
           if any(w in ln for w in ('BUG', 'WARNING', 'Oops', 'KASAN', 'general protection',
                                    'stack-protector', 'Call Trace', 'refcount_t', 'RIP:'))]
    return bad, out


def insmod(ko, *params):
    sh('insmod', ko, *params)


def rmmod():
    sh('rmmod', 'toa')


def unload():
    """rmmod when the module is loaded; nothing otherwise."""
    if os.path.exists('/sys/module/toa'):
        rmmod()


# --------------------------------------------------------------------------
# functional checks
def t_basic(l4, l6, ld):
    c, addr, _ = handshake(l4, False, ack_opts=toa_opt(200, '203.0.113.7', 4242))
    check('v4 TOA kind 200 on ACK: accept()', addr == ('203.0.113.7', 4242), str(addr))
    check('v4 TOA kind 200 on ACK: getpeername()', peer(c) == ('203.0.113.7', 4242), str(peer(c)))
    c.close()
    for kind in (253, 254):
        c, addr, _ = handshake(l6, True, ack_opts=toa_opt(kind, '2001:db8:7::7', 4343))
        check('v6 TOA kind %d: getpeername()' % kind, peer(c) == ('2001:db8:7::7', 4343),
              str(peer(c)))
        check('v6 TOA kind %d: accept()' % kind, addr[:2] == ('2001:db8:7::7', 4343), str(addr))
        c.close()
    c, addr, _ = handshake(ld, False, ack_opts=toa_opt(200, '203.0.113.8', 4444))
    check('v4 TOA on dual-stack listener -> ::ffff:', peer(c) == ('::ffff:203.0.113.8', 4444),
          str(peer(c)))
    c.close()


def t_rejections(l4, l6, ld):
    s0 = stats()
    c, _, sp = handshake(l4, False, ack_opts=toa_opt(253, '2001:db8:7::9', 1))
    check('v6 TOA on AF_INET socket ignored', peer(c) == (P4, sp), str(peer(c)))
    c.close()
    check('rejected_family counted', stats()['rejected_family'] == s0['rejected_family'] + 1)

    s0 = stats()
    bad = b'\x05\x00' + toa_opt(200, '203.0.113.7', 1)      # zero-length option first
    try:
        c, _, sp = handshake(l4, False, ack_opts=bad)
    except socket.timeout:
        # Some kernels (seen on Ubuntu 24.04's 6.8) drop such a segment
        # before a socket exists: nothing for the module to do.
        skip('malformed options ignored', 'the kernel itself dropped the segment')
    else:
        check('malformed options ignored', peer(c) == (P4, sp), str(peer(c)))
        c.close()
        check('rejected_malformed counted',
              stats()['rejected_malformed'] == s0['rejected_malformed'] + 1)

    # A client's own TOA in front of the one the proxy appends: neither counts.
    s0 = stats()
    two = toa_opt(200, '198.51.100.66', 6666) + toa_opt(200, '203.0.113.7', 7)
    c, _, sp = handshake(l4, False, ack_opts=two)
    check('two TOA options: neither honoured', peer(c) == (P4, sp), str(peer(c)))
    c.close()
    check('rejected_multiple counted',
          stats()['rejected_multiple'] == s0['rejected_multiple'] + 1)

    # kind 254 length 8 with the TFO magic is never TOA, even when 254 is a v4 kind
    setp('ipv4_kinds', '200,254')
    c, _, sp = handshake(l4, False, ack_opts=b'\xfe\x08\xf9\x89\x0a\x00\x00\x01')
    check('254/8 with TFO magic not TOA', peer(c) == (P4, sp), str(peer(c)))
    c.close()
    c, _, sp = handshake(l4, False, ack_opts=toa_opt(254, '203.0.113.9', 9))
    check('254/8 TOA once configured', peer(c) == ('203.0.113.9', 9), str(peer(c)))
    c.close()
    setp('ipv4_kinds', '200')
    c, _, sp = handshake(l4, False, ack_opts=toa_opt(254, '203.0.113.9', 9))
    check('254/8 ignored with ipv4_kinds=200', peer(c) == (P4, sp), str(peer(c)))
    c.close()


def t_params(l4, l6, ld):
    err = setp('trusted_cidrs', '10.0.0.0/8,bogus/99')
    check('trusted_cidrs rejects bad token', err is not None, str(err))
    check('bad token named in dmesg', 'bogus/99' in sh('dmesg').stdout)
    err = setp('ipv4_kinds', '1')
    check('ipv4_kinds rejects NOP', err is not None, str(err))
    check('ipv4_kinds unchanged after bad write', getp('ipv4_kinds') == '200', getp('ipv4_kinds'))

    s0 = stats()
    setp('trusted_cidrs', '10.0.0.0/8, 2001:db8:ffff::/48')
    check('trusted_cidrs normalised', getp('trusted_cidrs') == '10.0.0.0/8,2001:db8:ffff::/48',
          getp('trusted_cidrs'))
    c, _, sp = handshake(l4, False, ack_opts=toa_opt(200, '203.0.113.7', 1))
    check('untrusted v4 source ignored', peer(c) == (P4, sp), str(peer(c)))
    c.close()
    c, _, sp = handshake(l6, True, ack_opts=toa_opt(253, '2001:db8:7::7', 1))
    check('untrusted v6 source ignored', peer(c)[:2] == (P6, sp), str(peer(c)))
    c.close()
    check('rejected_untrusted counted',
          stats()['rejected_untrusted'] == s0['rejected_untrusted'] + 2)
    setp('trusted_cidrs', '192.0.2.2/32,2001:db8::/64')
    c, _, _ = handshake(l4, False, ack_opts=toa_opt(200, '203.0.113.7', 2))
    check('trusted v4 source honoured', peer(c) == ('203.0.113.7', 2), str(peer(c)))
    c.close()
    c, _, _ = handshake(l6, True, ack_opts=toa_opt(253, '2001:db8:7::7', 2))
    check('trusted v6 source honoured', peer(c)[:2] == ('2001:db8:7::7', 2), str(peer(c)))
    c.close()
    setp('trusted_cidrs', '')
    check('trusted_cidrs cleared', getp('trusted_cidrs') == '')

    setp('enabled', '0')
    c, _, sp = handshake(l4, False, ack_opts=toa_opt(200, '203.0.113.7', 3))
    check('enabled=0 leaves address alone', peer(c) == (P4, sp), str(peer(c)))
    c.close()
    setp('enabled', '1')

    # SYN TOA: off by default (the seed's proxies put it in the ACK)
    check('syn_toa is off by default', getp('syn_toa') == 'N', getp('syn_toa'))
    c, _, sp = handshake(l4, False, syn_opts=toa_opt(200, '203.0.113.10', 10))
    check('syn_toa=0 ignores SYN TOA', peer(c) == (P4, sp), str(peer(c)))
    c.close()
    setp('syn_toa', '1')
    c, _, _ = handshake(l4, False, syn_opts=toa_opt(200, '203.0.113.10', 10))
    check('TOA in SYN only (syn_toa=1)', peer(c) == ('203.0.113.10', 10), str(peer(c)))
    c.close()
    c, _, _ = handshake(l4, False, syn_opts=toa_opt(200, '203.0.113.12', 12),
                        ack_opts=toa_opt(200, '203.0.113.12', 12))
    check('SYN and ACK TOA that agree', peer(c) == ('203.0.113.12', 12), str(peer(c)))
    c.close()
    s0 = stats()
    c, _, sp = handshake(l4, False, syn_opts=toa_opt(200, '203.0.113.11', 11),
                         ack_opts=toa_opt(200, '203.0.113.12', 12))
    check('SYN and ACK TOA that disagree: neither', peer(c) == (P4, sp), str(peer(c)))
    c.close()
    check('rejected_syn_mismatch counted',
          stats()['rejected_syn_mismatch'] == s0['rejected_syn_mismatch'] + 1)
    st = stats()
    check('SYN stash empty after use', st['syn_stash_live'] == 0, str(st['syn_stash_live']))

    # The limit of this (non-initial) namespace is netns_max_entries;
    # the initial namespace has max_entries, none by default.
    check('max_entries: no limit by default', getp('max_entries') == '0', getp('max_entries'))
    check('initial namespace unlimited', stats(INIT_STATS)['entries_limit'] == 0)
    s0 = stats()
    setp('netns_max_entries', '3')
    check('entries_limit shows this namespace\'s limit', stats()['entries_limit'] == 3)
    held = [handshake(l4, False, ack_opts=toa_opt(200, '203.0.113.20', 20 + i))[0]
            for i in range(6)]
    rewritten = sum(1 for c in held if peer(c)[0] == '203.0.113.20')
    st = stats()
    check('netns_max_entries bounds the namespace', rewritten == 3 and st['entries_live'] <= 3,
          'rewritten=%d live=%d' % (rewritten, st['entries_live']))
    check('entries_dropped_full counted',
          st['entries_dropped_full'] - s0['entries_dropped_full'] == 3)
    check('global_entries_dropped_full counted in the initial namespace',
          stats(INIT_STATS)['global_entries_dropped_full'] >= 3)
    for c in held:
        c.close()
    setp('netns_max_entries', '65536')


# --------------------------------------------------------------------------
# network namespaces: counters, quotas and the SYN stash are per namespace
CLONE_NEWUSER = 0x10000000
SETNS_NET = P.CLONE_NEWNET


def _ns_setup(where, init_ns_fd):
    """In a forked child: move to @where ('init', 'new', 'user') and give it
    the same TUN and addresses this test uses, so 4-tuples collide."""
    global tun_fd
    libc = P.libc()
    if where == 'init':
        if libc.setns(init_ns_fd, SETNS_NET) != 0:
            raise OSError(ctypes.get_errno(), 'setns')
    elif where == 'user':
        # an unprivileged user builds its own user + network namespace
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        libc.prctl(4, 1, 0, 0, 0)   # PR_SET_DUMPABLE: /proc/self stays ours
        P.unshare(CLONE_NEWUSER | P.CLONE_NEWNET)
        for name, text in (('setgroups', 'deny'), ('uid_map', '0 65534 1'),
                           ('gid_map', '0 65534 1')):
            with open('/proc/self/' + name, 'w') as f:
                f.write(text)
    else:
        P.unshare(P.CLONE_NEWNET)
    tun = 'toat0' if where != 'init' else 'toai0'
    tun_fd = P.open_tun(tun)
    sh('ip', 'link', 'set', 'lo', 'up')
    sh('ip', 'addr', 'add', L4 + '/24', 'dev', tun)
    sh('ip', 'link', 'set', tun, 'up')


def in_netns(where, init_ns_fd, fn, *args):
    """Run fn(*args) in a child in another namespace; return its result.
    The child signals readiness on a pipe and waits for a byte on another
    before it returns, so its sockets can be kept open while the parent
    does something else: in_netns returns (result, release)."""
    import json
    r_res, w_res = os.pipe()
    r_go, w_go = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r_res)
        os.close(w_go)
        try:
            _ns_setup(where, init_ns_fd)
            res = fn(*args)
        except Exception as e:      # report, do not hide
            res = {'error': '%s: %s' % (type(e).__name__, e)}
        os.write(w_res, (json.dumps(res) + '\n').encode())
        os.read(r_go, 1)
        os._exit(0)
    os.close(w_res)
    os.close(r_go)
    line = b''
    while not line.endswith(b'\n'):
        chunk = os.read(r_res, 65536)
        if not chunk:
            break
        line += chunk
    os.close(r_res)

    def release():
        os.write(w_go, b'x')
        os.close(w_go)
        os.waitpid(pid, 0)
    return json.loads(line.decode() or '{"error": "child died"}'), release


def ns_hold(n, base_port, tag):
    """Listener + n TOA handshakes held open; how many were rewritten."""
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.bind((L4, PORT4))
    lst.listen(4096)
    held, ok = [], 0
    for i in range(n):
        c, _, _ = handshake(lst, False, ack_opts=toa_opt(200, tag, base_port + i))
        held.append(c)
        ok += peer(c) == (tag, base_port + i)
    st = stats()
    denied = setp('netns_max_entries', '0')
    ns_hold.keep = (lst, held)
    return {'ok': ok, 'n': n, 'dropped': st['entries_dropped_full'], 'live': st['entries_live'],
            'limit': st['entries_limit'], 'param_write': denied}


def ns_one(tag, port, sport=None, ack=True):
    """One handshake (TOA on the ACK unless ack is False); its peer."""
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.bind((L4, PORT4))
    lst.listen(16)
    if sport is not None:
        next_sport[0] = sport
    c, _, sp = handshake(lst, False, ack_opts=toa_opt(200, tag, port) if ack else b'')
    p = peer(c)
    st = stats()
    c.close()
    lst.close()
    return {'peer': list(p), 'sport': sp, 'accepted': st['accepted'],
            'options_seen': st['options_seen']}


def ns_plant(tag, sport):
    """A SYN carrying TOA whose handshake is never completed: a stash entry."""
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.bind((L4, PORT4))
    lst.listen(16)
    os.write(tun_fd, tcp_packet(P4, L4, sport, PORT4, 5, 0, 0x02,
                                b'\x02\x04\x05\xb4' + toa_opt(200, tag, 1)))
    read_synack(sport)
    st = stats()
    ns_plant.keep = lst
    return {'stashed': st['syn_stash_live']}


def t_netns(init_ns_fd):
    # counters: traffic in another namespace shows there only
    init0 = stats(INIT_STATS)
    own0 = stats()
    res, release = in_netns('new', init_ns_fd, ns_one, '203.0.113.50', 50)
    release()
    check('netns: TOA works in another namespace', res.get('peer') == ['203.0.113.50', 50], str(res))
    check('netns: its counters are its own', res.get('accepted') == 1 and res.get('options_seen') == 1,
          str(res))
    check('netns: the initial namespace did not count it',
          stats(INIT_STATS)['accepted'] == init0['accepted'])
    check('netns: this namespace did not count it', stats()['accepted'] == own0['accepted'])

    # exhaustion: an unprivileged user namespace fills its quota...
    setp('netns_max_entries', '20')
    att, release_att = in_netns('user', init_ns_fd, ns_hold, 40, 100, '198.51.100.9')
    check('userns: attacker capped at netns_max_entries',
          att.get('ok') == 20 and att.get('dropped') == 20 and att.get('limit') == 20, str(att))
    check('userns: attacker cannot change the module parameters',
          att.get('param_write') is not None, str(att.get('param_write')))
    # ... while the initial namespace still gets every address
    vic = []
    for i in range(3):
        v, rel = in_netns('init', init_ns_fd, ns_one, '203.0.113.60', 60 + i)
        rel()           # frees the TUN name for the next one
        vic.append(v)
    check('userns exhaustion: the initial namespace keeps TOA',
          all(v.get('peer') == ['203.0.113.60', 60 + i] for i, v in enumerate(vic)), str(vic))
    init_st = stats(INIT_STATS)
    check('userns exhaustion: nothing dropped in the initial namespace',
          init_st['entries_dropped_full'] == init0['entries_dropped_full'])
    check('userns exhaustion: the host sees the namespace\'s drops',
          init_st['global_entries_dropped_full'] - init0['global_entries_dropped_full'] >= 20)
    release_att()
    setp('netns_max_entries', '65536')

    # poisoning: a SYN stash entry planted in a user namespace for the very
    # 4-tuple of a later plain connection in the initial namespace
    setp('syn_toa', '1')
    sport = 41000
    planted, release_plant = in_netns('user', init_ns_fd, ns_plant, '198.51.100.66', sport)
    check('userns: stash entry planted in the attacker\'s namespace', planted.get('stashed') == 1,
          str(planted))
    vic, rel = in_netns('init', init_ns_fd, ns_one, '0.0.0.0', 0, sport, False)
    rel()
    check('userns poisoning: same 4-tuple in the initial namespace not rewritten',
          vic.get('peer') == [P4, sport], str(vic))
    release_plant()
    wait_live_zero()


# --------------------------------------------------------------------------
# SYN cookies and TCP Fast Open
def t_syncookies(l4):
    sh('sysctl', '-qw', 'net.ipv4.tcp_syncookies=2')      # a cookie for every SYN
    try:
        c, _, _ = handshake(l4, False, ack_opts=toa_opt(200, '203.0.113.70', 70))
        check('syncookies=2: ACK TOA', peer(c) == ('203.0.113.70', 70), str(peer(c)))
        c.close()
        setp('syn_toa', '1')
        c, _, _ = handshake(l4, False, syn_opts=toa_opt(200, '203.0.113.71', 71))
        check('syncookies=2: SYN TOA (syn_toa=1)', peer(c) == ('203.0.113.71', 71), str(peer(c)))
        c.close()
    finally:
        sh('sysctl', '-qw', 'net.ipv4.tcp_syncookies=0')


TCP_FASTOPEN = 23


def t_fastopen():
    # server Fast Open without cookies: data in the SYN makes the child
    sh('sysctl', '-qw', 'net.ipv4.tcp_fastopen=514')
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 16)
    lst.bind((L4, PORT_TFO))
    lst.listen(16)
    lst.settimeout(5)
    try:
        for opts, want, name in ((toa_opt(200, '203.0.113.80', 80), ('203.0.113.80', 80),
                                  'Fast Open SYN with TOA'),
                                 (b'', None, 'Fast Open SYN without TOA')):
            s0 = stats()
            sp = next_sport[0]
            next_sport[0] += 1
            syn = tcp_packet(P4, L4, sp, PORT_TFO, 1000, 0, 0x02,
                             b'\x02\x04\x05\xb4' + opts, payload=b'hello')
            os.write(tun_fd, syn)
            sa = read_synack(sp)
            c, _ = lst.accept()
            data = c.recv(16)
            p = peer(c)
            check(name + ': data in the SYN delivered', data == b'hello', repr(data))
            check(name + ': address', p == (want or (P4, sp)), str(p))
            if want is None:
                check('fastopen_without_toa counted',
                      stats()['fastopen_without_toa'] == s0['fastopen_without_toa'] + 1)
            # the client resets: the socket (and its entry) dies now
            os.write(tun_fd, tcp_packet(P4, L4, sp, PORT_TFO, 1006, sa + 1, 0x04))
            c.close()
    finally:
        lst.close()
        sh('sysctl', '-qw', 'net.ipv4.tcp_fastopen=1')


def wait_live_zero(timeout=5):
    end = time.time() + timeout
    while time.time() < end:
        if stats()['entries_live'] == 0:
            return True
        time.sleep(0.1)
    return False


def t_stale(l4, l6, ld, rounds, plain_per_round):
    """TOA sockets die, plain ones reuse their memory: none may be rewritten."""
    lo4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lo4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lo4.bind(('127.0.0.1', PORT_LO))
    lo4.listen(1024)
    lo6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    lo6.bind(('::1', PORT_LO))
    lo6.listen(1024)
    s0 = stats()
    bad = plain = toa_ok = toa_n = 0
    live_after_close = []
    for _round in range(rounds):
        for i in range(10):
            c, _, _ = handshake(l4 if i % 2 else ld, False,
                                ack_opts=toa_opt(200, '203.0.113.77', 7000 + i))
            toa_n += 1
            toa_ok += peer(c)[0] in ('203.0.113.77', '::ffff:203.0.113.77')
            c.close()
        live_after_close.append(stats()['entries_live'])
        for i in range(plain_per_round):
            lst, fam, host = (lo4, socket.AF_INET, '127.0.0.1') if i % 2 else \
                (lo6, socket.AF_INET6, '::1')
            cl = socket.socket(fam, socket.SOCK_STREAM)
            cl.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            cl.connect((host, PORT_LO))
            sv, addr = lst.accept()
            sv.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            want = cl.getsockname()[:2]
            if peer(sv) != want or addr[:2] != want:
                bad += 1
            plain += 1
            sv.close()
            cl.close()
    st = stats()
    check('TOA connections rewritten (stale test)', toa_ok == toa_n, '%d/%d' % (toa_ok, toa_n))
    check('entries die with their sockets', max(live_after_close) == 0,
          'entries_live after closing each batch: max %d' % max(live_after_close))
    check('no plain connection rewritten', bad == 0, '%d of %d plain connections rewritten'
          % (bad, plain))
    check('no rewrite on plain connections (counter)',
          st['getname_rewrites'] - s0['getname_rewrites'] == 2 * toa_n,
          'rewrites %d for %d TOA connections'
          % (st['getname_rewrites'] - s0['getname_rewrites'], toa_n))
    print('MEASURE stale: %d TOA connections opened/closed, %d plain connections, %d rewritten, '
          'getname_stale=%d' % (toa_n, plain, bad, st['getname_stale'] - s0['getname_stale']))
    lo4.close()
    lo6.close()


def t_balance():
    ok = wait_live_zero()
    time.sleep(0.5)     # let call_rcu callbacks run
    st = stats()
    check('counters balance when idle', ok and st['entries_alloc'] == st['entries_free'],
          'alloc=%d free=%d live=%d' % (st['entries_alloc'], st['entries_free'],
                                         st['entries_live']))
    check('SYN stash balances', st['syn_stashed'] == st['syn_stash_free'] + st['syn_stash_live'],
          'stashed=%d free=%d live=%d' % (st['syn_stashed'], st['syn_stash_free'],
                                           st['syn_stash_live']))
    missed = {k: v for k, v in st.items() if k.startswith('missed_') and v}
    check('no missed probes', not missed, str(missed))


def rate(n, lst, fam, host, extra_getpeername=0):
    t0 = time.time()
    for _ in range(n):
        cl = socket.socket(fam, socket.SOCK_STREAM)
        cl.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        cl.connect((host, PORT_LO + 1))
        sv, _ = lst.accept()
        sv.getpeername()
        sv.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        sv.close()
        cl.close()
    return n / (time.time() - t0)


def getpeername_rate(sock, n):
    t0 = time.time()
    for _ in range(n):
        sock.getpeername()
    return n / (time.time() - t0)


def t_overhead(ko, l4, n):
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(('127.0.0.1', PORT_LO + 1))
    lst.listen(1024)
    cl = socket.socket()
    cl.connect(('127.0.0.1', PORT_LO + 1))
    sv, _ = lst.accept()
    res = {}
    for label in ('without', 'with', 'with+live'):
        if label == 'with':
            insmod(ko)
        held = None
        if label == 'with+live':     # a live entry disables the getname fast exit
            held, _, _ = handshake(l4, False, ack_opts=toa_opt(200, '203.0.113.5', 5))
        rate(200, lst, socket.AF_INET, '127.0.0.1')     # warm up
        res[label] = (rate(n, lst, socket.AF_INET, '127.0.0.1'), getpeername_rate(sv, 20 * n))
        if held:
            held.close()
    for label, (cps, gps) in res.items():
        print('MEASURE overhead %-9s module: %.0f conn/s (connect+accept+getpeername), '
              '%.0f getpeername/s' % (label, cps, gps))
    sv.close()
    cl.close()
    lst.close()


def tun_rate(lst, n, ack_opts=b''):
    """Crafted handshakes per second through the TUN (accept + getpeername)."""
    t0 = time.time()
    for _ in range(n):
        conn, _, _ = handshake(lst, False, ack_opts=ack_opts)
        conn.getpeername()
        conn.close()
    return n / (time.time() - t0)


def hold_many(l4, n):
    """n TOA connections held open (entries when the module is loaded)."""
    return [handshake(l4, False, ack_opts=toa_opt(200, '203.0.113.4', 1 + i % 60000))[0]
            for i in range(n)]


def bpf_route(bpf, *args):
    """The eBPF route's loader (bpf = (loader, object)): load, unload or status."""
    if args[0] == 'load':
        with open('/root/toa-bench-bpf.json', 'w') as f:
            f.write('{"enabled": true, "trusted_cidrs": []}\n')
        args += ('--object', bpf[1], '--config', '/root/toa-bench-bpf.json')
    if args[0] == 'status':     # JSON on stdout; bpftool's warnings go to stderr
        return json.loads(subprocess.run(['python3', bpf[0], 'status'], check=True,
                                         stdout=subprocess.PIPE, universal_newlines=True).stdout)
    return sh('python3', bpf[0], *args)


def t_bench(ko, l4, reps, n, live=0, kprobe=False, bpf=None):
    """Rates without the module, with it, and without it again (an A/A
    control: how far two identical runs land apart on this machine).

    Each repetition runs the three blocks in turn, forwards in even and
    backwards in odd repetitions, so slow drift of the machine falls on all
    of them alike.  Every block starts with a warm-up after the (un)load: an
    emulated guest retranslates code whose text changed, and that first
    cost belongs to neither side.  With the module loaded a TOA connection
    is held open, as on a server behind a proxy, so the lookups of every
    hook run their full path instead of the "no entries" shortcut.
    With live > 0 every block also holds that many TOA connections open (as
    entries when the module is loaded, as plain sockets when not, so both
    sides have the same sockets in the kernel's tables).  With kprobe, a
    fourth block loads the module with hook_mode=kprobe: the two hook
    classes side by side in one run.  With bpf (loader, object), a block
    'with ebpf' attaches the eBPF route's programs instead (no module
    loaded): the route against the module and against nothing, in one run."""
    if live:
        import resource
        want = live + 4096
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(('127.0.0.1', PORT_LO + 1))
    lst.listen(1024)
    cl = socket.socket()
    cl.connect(('127.0.0.1', PORT_LO + 1))
    sv, _ = lst.accept()
    blocks = ('without', 'with') + (('with kprobe',) if kprobe else ()) + \
        (('with ebpf',) if bpf else ()) + ('without again',)
    loaded = ('with', 'with kprobe', 'with ebpf')
    runs = {}
    n_tun = max(50, n // 5)
    opt = toa_opt(200, '203.0.113.6', 6)
    for r in range(reps):
        for block in (blocks if r % 2 == 0 else blocks[::-1]):
            unload()
            if bpf:
                bpf_route(bpf, 'unload')
            held = None
            if block in ('with', 'with kprobe'):
                insmod(ko, *(['hook_mode=kprobe'] if block == 'with kprobe' else []))
            elif block == 'with ebpf':
                bpf_route(bpf, 'load')
            if block in loaded:
                held, _, _ = handshake(l4, False, ack_opts=toa_opt(200, '203.0.113.5', 5))
                if peer(held) != ('203.0.113.5', 5):
                    raise RuntimeError('bench: block %r does not rewrite: %s' % (block, peer(held)))
            if block not in ('with', 'with kprobe') and os.path.exists('/sys/module/toa'):
                raise RuntimeError('bench: the module is loaded in block %r' % block)
            if bpf and block != 'with ebpf' and bpf_route(bpf, 'status')['loaded']:
                raise RuntimeError('bench: the eBPF programs are loaded in block %r' % block)
            many = hold_many(l4, live)
            if block in ('with', 'with kprobe') and live:
                runs.setdefault('entries live ' + block, []).append(stats()['entries_live'])
            rate(max(200, n // 10), lst, socket.AF_INET, '127.0.0.1')     # warm-up
            tun_rate(l4, 20)
            runs.setdefault('conn/s ' + block, []).append(
                rate(n, lst, socket.AF_INET, '127.0.0.1'))
            runs.setdefault('getpeername/s plain ' + block, []).append(
                getpeername_rate(sv, 20 * n))
            runs.setdefault('TUN conn/s ' + block, []).append(tun_rate(l4, n_tun))
            if held:
                runs.setdefault('getpeername/s TOA socket ' + block, []).append(
                    getpeername_rate(held, 20 * n))
                held.close()
                runs.setdefault('TUN conn/s TOA ' + block, []).append(tun_rate(l4, n_tun, opt))
            for c in many:
                c.close()
    # runs are listed by repetition: the i-th of each block ran in the same
    # repetition, so their ratio cancels slow drift of the machine
    for k, v in runs.items():
        print('MEASURE bench %-30s median %.0f  (runs: %s)'
              % (k, sorted(v)[len(v) // 2], ', '.join('%.0f' % x for x in v)))
    sv.close()
    cl.close()
    lst.close()
    if bpf:
        bpf_route(bpf, 'unload')


def t_rmmod_live(ko, l4, l6, ld):
    held = []
    for i in range(20):
        held.append(handshake(l4, False, ack_opts=toa_opt(200, '203.0.113.30', 3000 + i))[0])
        held.append(handshake(l6, True, ack_opts=toa_opt(253, '2001:db8:7::30', 3000 + i))[0])
        held.append(handshake(ld, False, syn_opts=toa_opt(200, '203.0.113.31', 3000 + i))[0])
    # a SYN whose handshake never completes leaves a stash entry behind
    sp = next_sport[0]
    next_sport[0] += 1
    os.write(tun_fd, tcp_packet(P4, L4, sp, PORT4, 5, 0, 0x02,
                                b'\x02\x04\x05\xb4' + toa_opt(200, '203.0.113.32', 1)))
    read_synack(sp)
    st = stats()
    check('live entries before rmmod', st['entries_live'] == 60,
          'live=%d alloc=%d free=%d' % (st['entries_live'], st['entries_alloc'],
                                        st['entries_free']))
    check('alloc - free == live', st['entries_alloc'] - st['entries_free'] == st['entries_live'])
    check('stash holds the pending SYN', st['syn_stash_live'] == 1, str(st['syn_stash_live']))
    rewritten = sum(1 for c in held if peer(c)[0].endswith(('203.0.113.30', '2001:db8:7::30',
                                                            '203.0.113.31')))
    check('live connections rewritten before rmmod', rewritten == 60, str(rewritten))
    rmmod()
    after = [peer(c) for c in held]
    check('after rmmod the real peer is reported',
          all(p[0] in (P4, P6, '::ffff:' + P4) for p in after), str(after[:3]))
    for c in held:
        c.close()
    bad, _ = dmesg_bad()
    check('dmesg clean after rmmod with live connections', not bad, '; '.join(bad[:3]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--ko', required=True)
    ap.add_argument('--rounds', type=int, default=30)
    ap.add_argument('--plain', type=int, default=200)
    ap.add_argument('--rate-n', type=int, default=1500)
    ap.add_argument('--bench', type=int, default=0, metavar='REPS',
                    help='only measure overhead, REPS alternating runs')
    ap.add_argument('--bench-live', type=int, default=0, metavar='N',
                    help='--bench with N TOA connections held open in every block')
    ap.add_argument('--bench-kprobe', action='store_true',
                    help='--bench also with hook_mode=kprobe (both hook classes in one run)')
    ap.add_argument('--bench-bpf', nargs=2, metavar=('LOADER', 'OBJECT'),
                    help='--bench also with the eBPF route attached by LOADER (toa-bpf) from '
                    'OBJECT, no module loaded')
    a = ap.parse_args()
    ko = os.path.abspath(a.ko)

    unload()
    dmesg_mark()
    init_ns_fd = os.open('/proc/self/ns/net', os.O_RDONLY)
    enter_netns()
    l4, l6, ld = listeners()
    if a.bench:
        t_bench(ko, l4, a.bench, a.rate_n, a.bench_live, a.bench_kprobe, a.bench_bpf)
        unload()
        return 0

    t_overhead(ko, l4, a.rate_n)            # loads the module
    st = stats()
    check('/proc/net/toa_stats readable', 'options_seen' in st and 'missed_syn_recv_v4' in st)
    check('hooks are ftrace (cannot miss)', st.get('hooks_ftrace') == 1, str(st.get('hooks_ftrace')))
    check('all hooks registered', all(v == 1 for k, v in st.items() if k.startswith('hook_')),
          str({k: v for k, v in st.items() if k.startswith('hook_')}))
    t_basic(l4, l6, ld)
    t_rejections(l4, l6, ld)
    t_params(l4, l6, ld)
    t_netns(init_ns_fd)
    t_syncookies(l4)
    t_fastopen()
    setp('syn_toa', '1')       # the unload test below stashes SYN TOA
    t_stale(l4, l6, ld, a.rounds, a.plain)
    t_balance()
    bad, _ = dmesg_bad()
    check('dmesg clean while loaded', not bad, '; '.join(bad[:3]))
    t_rmmod_live(ko, l4, l6, ld)

    # load with parameters, then a bad parameter must fail the load cleanly
    insmod(ko, 'trusted_cidrs=192.0.2.0/24', 'ipv4_kinds=200,254', 'netns_max_entries=100')
    check('load-time parameters applied', getp('trusted_cidrs') == '192.0.2.0/24'
          and getp('ipv4_kinds') == '200,254', getp('trusted_cidrs') + ' ' + getp('ipv4_kinds'))
    c, _, _ = handshake(l4, False, ack_opts=toa_opt(254, '203.0.113.40', 40))
    check('load-time kinds honoured', peer(c) == ('203.0.113.40', 40), str(peer(c)))
    c.close()
    rmmod()
    r = subprocess.run(['insmod', ko, 'ipv4_kinds=200', 'trusted_cidrs=nonsense'],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    check('insmod with a bad CIDR fails', r.returncode != 0 and not os.path.exists('/sys/module/toa'),
          r.stdout.strip())
    bad, _ = dmesg_bad()
    check('dmesg clean at the end', not bad, '; '.join(bad[:3]))
    print('RESULT %s (%d failed, %d skipped)' % ('FAIL' if failures else 'PASS', len(failures),
                                                 len(skipped)))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
