#!/usr/bin/env python3
"""In-guest functional test of the eBPF route (run as root inside a test VM).

  vm_bpf_test.py --object /root/toa.bpf.o --loader /root/toa-bpf

Loads the programs with the loader (bpftool underneath), attaches them to
the cgroup2 root, then plays the layer-4 proxy exactly as the module's test
does (tests/kmod/vm_toa_test.py, imported for its packet helpers: a TUN
device in a private network namespace, crafted SYN / final ACK segments
with TOA options) from a process moved into a child cgroup, and checks what
accept() and getpeername() report and what the counters say.  Ends by
detaching: held sockets and new connections must show the real peer.

Prints one PASS/FAIL line per check; exits non-zero when a check fails.
The toa kernel module must not be loaded (it would answer instead).
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vm_toa_test as K   # noqa: E402  (packet helpers of the module's test)

CGROUP = '/sys/fs/cgroup'
TEST_CGROUP = CGROUP + '/toa-bpf-test'
CONF = '/root/toa-bpf-test.json'
PORT_SYN, PORT_LOOP, PORT_TFO = 83, 91, 84
args = None


def ctl(cmd, **cfg):
    """Run the loader; load and config write the configuration file first
    (cfg over the defaults: ctl('config') goes back to the defaults)."""
    if cmd in ('load', 'config'):
        with open(CONF, 'w') as f:
            json.dump(cfg, f)
    r = subprocess.run(['python3', args.loader, cmd, '--object', args.object, '--config', CONF],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if r.returncode != 0:
        raise RuntimeError('toa-bpf %s: %s' % (cmd, r.stderr))
    return json.loads(r.stdout)


def counters():
    return ctl('status')['counters']


def bumped(before, name, by=1):
    now = counters()[name]
    return now == before[name] + by, '%s %d -> %d' % (name, before[name], now)


def hs(listener, v6, **kw):
    c, addr, sp = K.handshake(listener, v6, **kw)
    return c, addr[:2], sp


def t_refuses_other_object():
    """The role writes OBJECT.sha256 from the build record; the loader must
    refuse an object that does not match it, and load nothing."""
    bad = '/root/toa-tampered.bpf.o'
    with open(args.object, 'rb') as f:
        data = bytearray(f.read())
    data[-1] ^= 1
    with open(bad, 'wb') as f:
        f.write(data)
    with open(args.object + '.sha256', 'rb') as f:
        good_sum = f.read()
    with open(bad + '.sha256', 'wb') as f:
        f.write(good_sum)
    r = subprocess.run(['python3', args.loader, 'load', '--object', bad, '--config', CONF],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    K.check('loader refuses an object whose sha256 is not the recorded one',
            r.returncode != 0 and 'not loading it' in r.stderr and
            not os.path.exists('/sys/fs/bpf/toa'), r.stderr.strip())
    os.unlink(bad)
    os.unlink(bad + '.sha256')


def t_load():
    K.check('toa kernel module not loaded', not os.path.exists('/sys/module/toa'))
    ctl('unload')
    with open(CONF, 'w') as f:
        json.dump({}, f)
    t_refuses_other_object()
    r = ctl('load')
    K.check('load: changed', r['changed'] is True, str(r))
    st = ctl('status')
    K.check('load: sock_ops, getpeername4, getpeername6 attached to the cgroup2 root',
            all(st['attached'].values()) and len(st['attached']) == 3, str(st['attached']))
    K.check('load: counters start at 0', st['counters'] and not any(st['counters'].values()),
            str(st['counters']))
    r = ctl('load')
    K.check('second load: nothing changed', r['changed'] is False, str(r))
    show = json.loads(subprocess.check_output(['bpftool', '-j', 'cgroup', 'show', CGROUP]).strip() or b'[]')
    ours = set(ctl('status')['programs'].values())
    # by id: a 5.10 kernel keeps 15 characters of a name (toa_getpeername, twice)
    K.check('second load: each of the three programs attached once',
            len(ours) == 3 and sorted(p['id'] for p in show if p['id'] in ours) == sorted(ours),
            str(show))


def enter_child_cgroup():
    """A container's situation: a child cgroup and (below) its own network namespace."""
    os.makedirs(TEST_CGROUP, exist_ok=True)
    with open(TEST_CGROUP + '/cgroup.procs', 'w') as f:
        f.write(str(os.getpid()))
    with open('/proc/self/cgroup') as f:
        K.check('test runs in a child cgroup', '/toa-bpf-test' in f.read())


def leave_child_cgroup():
    with open(CGROUP + '/cgroup.procs', 'w') as f:
        f.write(str(os.getpid()))
    os.rmdir(TEST_CGROUP)


def t_basic(l4, l6, ld):
    c0 = counters()
    c, addr, _ = hs(l4, False, ack_opts=K.toa_opt(200, '203.0.113.7', 4242))
    K.check('v4 TOA kind 200 on ACK: accept()', addr == ('203.0.113.7', 4242), str(addr))
    p = K.peer(c)      # exactly one getpeername() here: the counter is checked below
    K.check('v4 TOA kind 200 on ACK: getpeername()', p == ('203.0.113.7', 4242), str(p))
    c.close()
    ok, why = bumped(c0, 'accepted')
    K.check('accepted counted', ok, why)
    ok, why = bumped(c0, 'getname_rewrites', 2)
    K.check('getname_rewrites counted (accept + getpeername)', ok, why)
    for kind in (253, 254):
        c, addr, _ = hs(l6, True, ack_opts=K.toa_opt(kind, '2001:db8:7::7', 4343))
        K.check('v6 TOA kind %d: accept()' % kind, addr == ('2001:db8:7::7', 4343), str(addr))
        K.check('v6 TOA kind %d: getpeername()' % kind, K.peer(c) == ('2001:db8:7::7', 4343),
                str(K.peer(c)))
        c.close()
    c, addr, _ = hs(ld, False, ack_opts=K.toa_opt(200, '203.0.113.8', 4444))
    K.check('v4 TOA on dual-stack listener -> ::ffff: (accept)',
            addr == ('::ffff:203.0.113.8', 4444), str(addr))
    K.check('v4 TOA on dual-stack listener -> ::ffff: (getpeername)',
            K.peer(c) == ('::ffff:203.0.113.8', 4444), str(K.peer(c)))
    c.close()
    c, addr, sp = hs(l4, False)
    K.check('no TOA: real peer', K.peer(c) == (K.P4, sp), str(K.peer(c)))
    c.close()


def refused(name, listener, v6, opts, real, counter, counted):
    """A handshake whose ACK carries opts: the peer must stay the real one
    (real(source_port)) and counter must grow by one; both are checks."""
    c0 = counters()
    c, _, sp = hs(listener, v6, ack_opts=opts)
    K.check(name, K.peer(c) == real(sp), str(K.peer(c)))
    c.close()
    ok, why = bumped(c0, counter)
    K.check(counted, ok, why)


def t_rejections(l4, l6, ld):
    def real4(sp):
        return (K.P4, sp)

    refused('v6 TOA on AF_INET socket ignored', l4, False,
            K.toa_opt(253, '2001:db8:7::9', 1), real4,
            'rejected_family', 'rejected_family counted')

    c0 = counters()
    bad = b'\x05\x00' + K.toa_opt(200, '203.0.113.7', 1)      # zero-length option first
    try:
        c, _, sp = hs(l4, False, ack_opts=bad)
    except socket.timeout:
        K.skip('malformed options ignored', 'the kernel itself dropped the segment')
    else:
        K.check('malformed options ignored', K.peer(c) == (K.P4, sp), str(K.peer(c)))
        c.close()
        ok, why = bumped(c0, 'rejected_malformed')
        K.check('rejected_malformed counted', ok, why)

    refused('TOA naming 0.0.0.0 ignored', l4, False, K.toa_opt(200, '0.0.0.0', 5), real4,
            'rejected_malformed', 'zero address counted as malformed')
    refused('two TOA options: neither honoured', l4, False,
            K.toa_opt(200, '198.51.100.66', 6666) + K.toa_opt(200, '203.0.113.7', 7), real4,
            'rejected_multiple', 'rejected_multiple counted')
    refused('a v6 and a v4 TOA: neither honoured', ld, False,
            K.toa_opt(254, '2001:db8:9::9', 9) + K.toa_opt(200, '203.0.113.7', 7),
            lambda sp: ('::ffff:' + K.P4, sp),
            'rejected_multiple', 'rejected_multiple counted (v6 + v4)')

    # kind and length: a configured kind with another length is another option
    c, _, sp = hs(l4, False, ack_opts=b'\xc8\x06\x00\x01\x02\x03')
    K.check('kind 200 length 6 is not TOA', K.peer(c) == (K.P4, sp), str(K.peer(c)))
    c.close()
    # a TOA behind other options, NOPs and a timestamp-like option, is found
    ts = b'\x01\x01\x08\x0a' + b'\x00' * 8
    c, _, sp = hs(l4, False, ack_opts=ts + K.toa_opt(200, '203.0.113.11', 11))
    K.check('TOA after NOPs and another option', K.peer(c) == ('203.0.113.11', 11),
            str(K.peer(c)))
    c.close()

    # kind 254 length 8 with the TFO magic is never TOA, even when 254 is a v4 kind
    ctl('config', ipv4_kinds=[200, 254])
    c, _, sp = hs(l4, False, ack_opts=b'\xfe\x08\xf9\x89\x0a\x00\x00\x01')
    K.check('254/8 with TFO magic not TOA', K.peer(c) == (K.P4, sp), str(K.peer(c)))
    c.close()
    c, _, sp = hs(l4, False, ack_opts=K.toa_opt(254, '203.0.113.9', 9))
    K.check('254/8 TOA once ipv4_kinds has 254', K.peer(c) == ('203.0.113.9', 9), str(K.peer(c)))
    c.close()
    ctl('config')
    c, _, sp = hs(l4, False, ack_opts=K.toa_opt(254, '203.0.113.9', 9))
    K.check('254/8 ignored with ipv4_kinds=200', K.peer(c) == (K.P4, sp), str(K.peer(c)))
    c.close()
    ctl('config', ipv6_kinds=[253])
    c, _, _ = hs(l6, True, ack_opts=K.toa_opt(254, '2001:db8:7::7', 4343))
    K.check('v6 kind 254 ignored with ipv6_kinds=253', K.peer(c)[0] == K.P6, str(K.peer(c)))
    c.close()
    ctl('config')


def t_trusted(l4, l6, ld):
    ctl('config', trusted_cidrs=['198.51.100.0/24', '2001:db8:ffff::/48'])
    c0 = counters()
    c, _, sp = hs(l4, False, ack_opts=K.toa_opt(200, '203.0.113.20', 20))
    K.check('trusted_cidrs without the proxy: v4 TOA refused', K.peer(c) == (K.P4, sp),
            str(K.peer(c)))
    c.close()
    c, _, _ = hs(l6, True, ack_opts=K.toa_opt(253, '2001:db8:7::20', 20))
    K.check('trusted_cidrs without the proxy: v6 TOA refused', K.peer(c)[0] == K.P6,
            str(K.peer(c)))
    c.close()
    ok, why = bumped(c0, 'rejected_untrusted', 2)
    K.check('rejected_untrusted counted', ok, why)

    ctl('config', trusted_cidrs=['192.0.2.2/32', '2001:db8::/64'])
    c, _, _ = hs(l4, False, ack_opts=K.toa_opt(200, '203.0.113.21', 21))
    K.check('trusted proxy (v4 /32): honoured', K.peer(c) == ('203.0.113.21', 21), str(K.peer(c)))
    c.close()
    c, _, _ = hs(l6, True, ack_opts=K.toa_opt(253, '2001:db8:7::21', 21))
    K.check('trusted proxy (v6 /64): honoured', K.peer(c) == ('2001:db8:7::21', 21),
            str(K.peer(c)))
    c.close()
    c, _, _ = hs(ld, False, ack_opts=K.toa_opt(200, '203.0.113.22', 22))
    K.check('trusted v4 proxy on the dual-stack listener: honoured',
            K.peer(c) == ('::ffff:203.0.113.22', 22), str(K.peer(c)))
    c.close()

    # an IPv6 CIDR never trusts an IPv4 source (families are kept apart)
    ctl('config', trusted_cidrs=['::/0'])
    c, _, sp = hs(ld, False, ack_opts=K.toa_opt(200, '203.0.113.23', 23))
    K.check('::/0 does not trust an IPv4 proxy', K.peer(c) == ('::ffff:' + K.P4, sp),
            str(K.peer(c)))
    c.close()
    ctl('config')
    c, _, _ = hs(l4, False, ack_opts=K.toa_opt(200, '203.0.113.24', 24))
    K.check('empty trusted_cidrs trusts every source again', K.peer(c) == ('203.0.113.24', 24),
            str(K.peer(c)))
    c.close()


def t_syn(l4):
    a = K.toa_opt(200, '203.0.113.30', 30)
    b = K.toa_opt(200, '203.0.113.31', 31)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((K.L4, PORT_SYN))
    ls.listen(64)
    c, _, sp = hs(ls, False, syn_opts=a)
    K.check('syn_toa off: SYN TOA ignored', K.peer(c) == (K.P4, sp), str(K.peer(c)))
    c.close()
    ls.close()

    ctl('config', syn_toa=True)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)   # listen() after syn_toa
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((K.L4, PORT_SYN))
    ls.listen(64)
    try:
        c, _, _ = hs(ls, False, syn_opts=a)
        K.check('syn_toa on: SYN TOA honoured', K.peer(c) == ('203.0.113.30', 30), str(K.peer(c)))
        c.close()
        c, _, _ = hs(ls, False, syn_opts=a, ack_opts=a)
        K.check('syn_toa on: SYN and ACK agree', K.peer(c) == ('203.0.113.30', 30), str(K.peer(c)))
        c.close()
        c0 = counters()
        c, _, sp = hs(ls, False, syn_opts=a, ack_opts=b)
        K.check('syn_toa on: SYN and ACK disagree -> neither', K.peer(c) == (K.P4, sp),
                str(K.peer(c)))
        c.close()
        ok, why = bumped(c0, 'rejected_syn_mismatch')
        K.check('rejected_syn_mismatch counted', ok, why)
        ctl('config', syn_toa=True, trusted_cidrs=['198.51.100.0/24'])
        c0 = counters()
        c, _, sp = hs(ls, False, syn_opts=a)
        K.check('syn_toa on: untrusted SYN TOA refused', K.peer(c) == (K.P4, sp), str(K.peer(c)))
        c.close()
        ok, why = bumped(c0, 'rejected_untrusted')
        K.check('untrusted SYN TOA counted', ok, why)
        ctl('config', syn_toa=True)
        # a listener opened before syn_toa was on has no saved SYN
        c0 = counters()
        c, _, sp = hs(l4, False, syn_opts=a)
        K.check('listener older than syn_toa: SYN TOA not seen', K.peer(c) == (K.P4, sp),
                str(K.peer(c)))
        c.close()
        ok, why = bumped(c0, 'syn_not_saved')
        K.check('syn_not_saved counted', ok, why)
    finally:
        ctl('config')
        ls.close()


def t_syncookies(l4):
    K.sh('sysctl', '-qw', 'net.ipv4.tcp_syncookies=2')      # a cookie for every SYN
    try:
        c, _, _ = hs(l4, False, ack_opts=K.toa_opt(200, '203.0.113.70', 70))
        K.check('syncookies=2: ACK TOA', K.peer(c) == ('203.0.113.70', 70), str(K.peer(c)))
        c.close()
    finally:
        K.sh('sysctl', '-qw', 'net.ipv4.tcp_syncookies=0')


def t_fastopen():
    K.sh('sysctl', '-qw', 'net.ipv4.tcp_fastopen=514')      # no cookie needed
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.IPPROTO_TCP, 23, 16)               # TCP_FASTOPEN
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((K.L4, PORT_TFO))
    lst.listen(16)
    lst.settimeout(5)
    try:
        for opts, want, name in ((K.toa_opt(200, '203.0.113.80', 80), ('203.0.113.80', 80),
                                  'Fast Open SYN with TOA'),
                                 (b'', None, 'Fast Open SYN without TOA')):
            c0 = counters()
            sp = K.next_sport[0]
            K.next_sport[0] += 1
            os.write(K.tun_fd, K.tcp_packet(K.P4, K.L4, sp, PORT_TFO, 1000, 0, 0x02,
                                            b'\x02\x04\x05\xb4' + opts, payload=b'hello'))
            sa = K.read_synack(sp)
            c, _ = lst.accept()
            data = c.recv(16)
            K.check(name + ': data in the SYN delivered', data == b'hello', repr(data))
            K.check(name + ': address', K.peer(c) == (want or (K.P4, sp)), str(K.peer(c)))
            if want is None:
                ok, why = bumped(c0, 'fastopen_without_toa')
                K.check('fastopen_without_toa counted', ok, why)
            os.write(K.tun_fd, K.tcp_packet(K.P4, K.L4, sp, PORT_TFO, 1006, sa + 1, 0x04))
            c.close()
    finally:
        lst.close()
        K.sh('sysctl', '-qw', 'net.ipv4.tcp_fastopen=1')


def t_enabled(l4):
    c, _, _ = hs(l4, False, ack_opts=K.toa_opt(200, '203.0.113.40', 40))
    ctl('config', enabled=False)
    try:
        K.check('enabled=false: stored address not reported', K.peer(c)[0] == K.P4, str(K.peer(c)))
        c2, _, sp = hs(l4, False, ack_opts=K.toa_opt(200, '203.0.113.41', 41))
        K.check('enabled=false: new TOA not taken', K.peer(c2) == (K.P4, sp), str(K.peer(c2)))
        c2.close()
    finally:
        ctl('config')
    K.check('enabled again: stored address back', K.peer(c) == ('203.0.113.40', 40),
            str(K.peer(c)))
    c.close()


def t_no_stale(l4, rounds=3, toa_per_round=50, plain_per_round=300):
    """Socket storage dies with its socket: plain connections reusing the
    memory of closed TOA sockets must never be rewritten."""
    lo = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lo.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lo.bind(('127.0.0.1', PORT_LOOP))
    lo.listen(1024)
    wrong = total = 0
    try:
        for _ in range(rounds):
            for i in range(toa_per_round):
                c, _, _ = hs(l4, False, ack_opts=K.toa_opt(200, '203.0.113.50', 5000 + i))
                c.close()
            for _ in range(plain_per_round):
                cl = socket.create_connection(('127.0.0.1', PORT_LOOP))
                sv, addr = lo.accept()
                total += 1
                if addr != cl.getsockname() or sv.getpeername() != cl.getsockname():
                    wrong += 1
                cl.close()
                sv.close()
    finally:
        lo.close()
    K.check('no stale data: %d plain connections after %d TOA ones all report their real peer'
            % (total, rounds * toa_per_round), wrong == 0, '%d wrong' % wrong)


def t_detach(l4, ld):
    c, _, sp = hs(l4, False, ack_opts=K.toa_opt(200, '203.0.113.60', 60))
    cd, _, spd = hs(ld, False, ack_opts=K.toa_opt(200, '203.0.113.61', 61))
    K.check('before unload: held sockets rewritten',
            K.peer(c) == ('203.0.113.60', 60) and K.peer(cd) == ('::ffff:203.0.113.61', 61),
            '%s %s' % (K.peer(c), K.peer(cd)))
    t0 = time.time()
    r = ctl('unload')
    K.check('unload: changed', r['changed'] is True, str(r))
    print('MEASURE unload (detach + unpin): %.1f s' % (time.time() - t0))
    K.check('after unload: held v4 socket shows the real peer', K.peer(c) == (K.P4, sp),
            str(K.peer(c)))
    K.check('after unload: held dual-stack socket shows the real peer',
            K.peer(cd) == ('::ffff:' + K.P4, spd), str(K.peer(cd)))
    c.close()
    cd.close()
    c, addr, sp = hs(l4, False, ack_opts=K.toa_opt(200, '203.0.113.62', 62))
    K.check('after unload: new TOA connection shows the real peer',
            addr == (K.P4, sp) and K.peer(c) == (K.P4, sp), '%s %s' % (addr, K.peer(c)))
    c.close()
    show = json.loads(subprocess.check_output(['bpftool', '-j', 'cgroup', 'show', CGROUP]).strip() or b'[]')
    K.check('after unload: nothing of ours attached',
            not [p for p in show if p.get('name', '').startswith('toa_')], str(show))
    K.check('after unload: no pins left', not os.path.exists('/sys/fs/bpf/toa'))
    r = ctl('unload')
    K.check('second unload: nothing changed', r['changed'] is False, str(r))


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument('--object', required=True)
    ap.add_argument('--loader', required=True)
    ap.add_argument('--keep', action='store_true', help='leave the programs attached')
    args = ap.parse_args()
    print('kernel %s, bpftool %s' % (os.uname().release,
                                     subprocess.check_output(['bpftool', 'version'],
                                                             universal_newlines=True)
                                     .splitlines()[0]))
    t0 = time.time()
    K.dmesg_mark()
    t_load()
    print('MEASURE load + verify + attach (twice): %.1f s' % (time.time() - t0))
    enter_child_cgroup()
    K.enter_netns()
    l4, l6, ld = K.listeners()
    try:
        t_basic(l4, l6, ld)
        t_rejections(l4, l6, ld)
        t_trusted(l4, l6, ld)
        t_syn(l4)
        t_syncookies(l4)
        t_fastopen()
        t_enabled(l4)
        t_no_stale(l4)
        print('counters: %s' % json.dumps(counters(), sort_keys=True))
        if not args.keep:
            t_detach(l4, ld)
    finally:
        leave_child_cgroup()
    bad, _ = K.dmesg_bad()
    K.check('dmesg clean', not bad, '; '.join(bad[:5]))
    n_fail = len(K.failures)
    print('RESULT %s: %d failed, %d skipped' % ('FAIL' if n_fail else 'PASS', n_fail,
                                                len(K.skipped)))
    return 1 if n_fail else 0


if __name__ == '__main__':
    sys.exit(main())
