#!/usr/bin/env python3
"""In-guest abuse test of toa.ko (run as root inside a test VM, next to vm_toa_test.py).

Three phases, each ends with a dmesg check against what dmesg held before:

  fuzz    --segments N crafted segments (seeded, reproducible with --seed):
          SYNs and handshake-completing ACKs with random, malformed, truncated,
          duplicated and oversized (doff 15) option areas, TOA kinds with wrong
          lengths (0/1/2/7/9/255...), zero addresses, TFO magic; then in-window,
          out-of-order, old and bad-ACK segments with junk options to the
          established sockets, and stray segments (odd flags, header shorter
          than doff, bad checksums) to the listeners.  Every accepted socket's
          getpeername() must equal what a Python model of the documented
          parser rules predicts, before and after the junk.  Afterwards the
          kernel must still serve, and the entry counters balance.
  spoof   trusted_cidrs names one proxy address; TOA from a second address
          (same subnet, through the TUN) is ignored and counted, from the
          trusted one honoured; then trust is swapped at runtime.
  unload  --cycles times: insmod, --hold TOA connections held open, a thread
          opening new TOA connections and a thread calling getpeername() on
          the held ones while `rmmod toa` runs; afterwards every held socket
          reports its real peer.  Leak check: counters before each rmmod; the
          module's own slab cache (toa_sk_entry) in /proc/slabinfo while
          loaded and gone after each rmmod (kmem_cache_destroy reports any
          object left as a BUG, which the dmesg check catches).

  vm_abuse.py --ko ./toa.ko [--seed S] [--segments N] [--cycles C] [--hold H]

Prints PASS/FAIL lines and MEASURE lines; exits non-zero when a check fails.
"""
import argparse
import fcntl
import ipaddress
import os
import random
import resource
import select
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vm_toa_test as T  # noqa: E402  (packets, netns/TUN setup, check())

K4, K6 = (200,), (253, 254)
BAD_WORDS = ('BUG', 'WARNING', 'Oops', 'KASAN', 'UBSAN', 'general protection',
             'stack-protector', 'Call Trace', 'refcount_t', 'RIP:', 'list_add corruption',
             'list_del corruption', 'kernel BUG', 'double free', 'use-after-free',
             'soft lockup', 'hard LOCKUP', 'rcu_sched self-detected', 'rcu: INFO')
P4B, P6B = '192.0.2.3', '2001:db8::3'     # the second (spoofing) proxy address


# --------------------------------------------------------------------------
# helpers
def dmesg_lines():
    return T.sh('dmesg').stdout.splitlines()


def dmesg_new_bad(before):
    now = dmesg_lines()
    # dmesg is not cleared by this test: new lines are those past the old count
    new = now[len(before):] if now[:len(before)] == before else now
    return [ln for ln in new if any(w in ln for w in BAD_WORDS)], len(new)


def next_port():
    p = T.next_sport[0]
    T.next_sport[0] = p + 1 if p < 63000 else 10000    # stay below 63881 (TFO magic)
    return p


def drain(want, quiet=0.25, limit=5.0):
    """Read the TUN until every source port in @want has a SYN-ACK or the
    TUN stays quiet for @quiet s.  Returns {port: server ISN}."""
    got = {}
    end = time.time() + limit
    while time.time() < end and not (want and len(got) >= len(want)):
        r, _, _ = select.select([T.tun_fd], [], [], quiet)
        if not r:
            break
        while True:
            try:
                pkt = os.read(T.tun_fd, 65536)
            except BlockingIOError:
                break
            pkt = T.P.parse_packet(pkt)
            if pkt and pkt['flags'] & 0x12 == 0x12 and pkt['dport'] in want:
                got.setdefault(pkt['dport'], pkt['seq'])
    return got


def accept_all(lsocks, quiet=0.25, expect=None):
    """Accept from every listener until @expect sockets or @quiet s of silence."""
    out = []
    while expect is None or len(out) < expect:
        r, _, _ = select.select(lsocks, [], [], quiet)
        if not r:
            break
        for ls in r:
            try:
                c, a = ls.accept()
            except BlockingIOError:
                continue
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            out.append((c, a))
    return out


def rb(r, n):
    """@n seeded random bytes (a generator of randrange() calls is slow under TCG)."""
    return r.getrandbits(8 * n).to_bytes(n, 'big') if n > 0 else b''


def same_peer(p, q):
    return ipaddress.ip_address(p[0]) == ipaddress.ip_address(q[0]) and p[1] == q[1]


# --------------------------------------------------------------------------
# packets: like T.tcp_packet, but with the options as given, a free doff,
# truncation and bad sums
def seg(src, dst, sport, dport, seq, ack, flags, opts=b'', payload=b'',
        doff=None, cut=0, badsum=False):
    s, d = T.P.pack_address(src)[1], T.P.pack_address(dst)[1]
    tcp = T.P.tcp_header(sport, dport, seq, ack, flags, options=opts, data_offset=doff) + payload
    if cut:
        tcp = tcp[:max(0, len(tcp) - cut)]
    tcp = T.P.with_tcp_checksum(s, d, tcp, spoil=0x5a5a if badsum else 0)
    return T.P.ip_header(s, d, len(tcp)) + tcp


# --------------------------------------------------------------------------
# the model: toa_opt.c's documented rules, written again in Python
def model_parse(o):
    """None (no TOA), 'M' (malformed), 'X' (more than one TOA: none is
    honoured) or (fam, address, port) of the one TOA."""
    i, n, res = 0, len(o), None
    while i < n:
        k = o[i]
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        if n - i < 2:
            return 'M'
        ol = o[i + 1]
        if ol < 2 or ol > n - i:
            return 'M'
        is4, is6 = k in K4, k in K6
        tfo = k == 254 and ol >= 4 and o[i + 2] == 0xF9 and o[i + 3] == 0x89
        if (is4 or is6) and not tfo:
            a = None
            if is4 and ol == 8:
                fam, a = 4, ipaddress.IPv4Address(bytes(o[i + 4:i + 8]))
            elif is6 and ol == 20:
                fam, a = 6, ipaddress.IPv6Address(bytes(o[i + 4:i + 20]))
            if a is not None:
                if int(a) == 0:
                    return 'M'
                if res is not None:
                    return 'X'
                res = (fam, a, struct.unpack('!H', bytes(o[i + 2:i + 4]))[0])
        i += ol
    return res


def model_peer(ep):
    """What getpeername() must say for an episode whose ACK made the socket."""
    ackr = model_parse(ep['ack_area'])
    synr = model_parse(ep['syn_area'])
    if synr in ('M', 'X'):
        synr = None         # never stashed
    if ackr in ('M', 'X'):
        toa = None          # the completing segment vetoes, no SYN fallback
    elif ackr:
        toa = ackr if synr in (None, ackr) else None    # SYN and ACK must agree
    else:
        toa = synr
    inet = ep['lst'] == 'l4'
    if toa and toa[0] == 6 and inet:
        toa = None          # rejected_family
    if not toa:
        return (ep['src'] if ep['lst'] != 'ld' else '::ffff:' + ep['src'], ep['sport']), False
    fam, a, port = toa
    if inet:
        return (str(a), port), True
    return ((('::ffff:%s' % a) if fam == 4 else str(a)), port), True


# --------------------------------------------------------------------------
# option generators
class Gen:
    def __init__(self, rng):
        self.r = rng

    def toa4(self, port, zero=False):
        a = b'\0\0\0\0' if zero else bytes([198, 18, self.r.randrange(256), self.r.randrange(1, 255)])
        return T.P.encode_toa_option(200, T.P.unpack_address(a), port)

    def toa6(self, port, zero=False):
        a = bytes(16) if zero else (bytes.fromhex('20010db8000f') + rb(self.r, 10))
        return T.P.encode_toa_option(self.r.choice((253, 254)), T.P.unpack_address(a), port)

    def atom(self, port, room):
        """One option (or junk) of at most @room bytes."""
        r = self.r
        c = r.randrange(100)
        if c < 12 and room >= 8:
            return self.toa4(port, zero=r.random() < 0.05)
        if c < 20 and room >= 20:
            return self.toa6(port, zero=r.random() < 0.05)
        if c < 32:          # a TOA kind with a wrong (or hostile) length byte
            k = r.choice((200, 253, 254))
            ln = r.choice((0, 1, 2, 3, 7, 9, 19, 21, 255, r.randrange(256)))
            body = rb(r, max(0, min(ln, room) - 2))
            return bytes([k, ln]) + body if room >= 2 else bytes([k])
        if c < 36 and room >= 8:    # experimental TFO magic in kind 254
            return b'\xfe\x08\xf9\x89' + rb(r, 4)
        if c < 44 and room >= 4:
            return struct.pack('!BBH', 2, 4, r.randrange(65536))           # MSS
        if c < 48 and room >= 3:
            return bytes([3, 3, r.randrange(32)])                           # window scale
        if c < 51:
            return b'\x04\x02'                                              # SACK permitted
        if c < 56 and room >= 10:
            n = r.randrange(1, min(4, (room - 2) // 8) + 1)
            return bytes([5, 2 + 8 * n]) + rb(r, 8 * n)
        if c < 62 and room >= 10:
            return bytes([8, 10]) + rb(r, 8)  # timestamps
        if c < 66:
            return b'\x01' * r.randrange(1, 4)                                # NOPs
        if c < 68:
            return b'\x00'                                                  # EOL
        if c < 80:          # a random kind with a random, possibly lying length
            k = r.randrange(2, 256)
            ln = r.randrange(256) if r.random() < 0.3 else r.randrange(2, 12)
            body = rb(r, max(0, min(ln, room) - 2))
            return bytes([k, ln]) + body
        if c < 86 and room >= 16:   # two TOA options: neither may be honoured
            t = self.toa4(port) if r.random() < 0.7 else self.toa6(port)
            return t + (t if r.random() < 0.5 else self.toa4(port))
        return rb(r, r.randrange(1, 8))   # raw junk

    def area(self, port):
        """An option area of 0..40 bytes (multiple of 4); 1/8 are exactly 40."""
        r = self.r
        if r.random() < 0.1:
            return b''
        target = 40 if r.random() < 0.125 else r.randrange(1, 41)
        o = b''
        while len(o) < target:
            o += self.atom(port, 40 - len(o))
        o = o[:40]              # cutting the last atom: a truncated option
        pad = -len(o) % 4
        if pad:
            o = (b'\x01' * pad + o) if r.random() < 0.5 else (o + b'\0' * pad)
        return o


# --------------------------------------------------------------------------
# phase 1: fuzz
def t_fuzz(ls, nseg, seed, batch=48, est_per_conn=10):
    r = random.Random(seed)
    g = Gen(r)
    lmap = {'l4': (ls[0], False, T.P4, T.L4), 'l6': (ls[1], True, T.P6, T.L6),
            'ld': (ls[2], False, T.P4, T.L4)}
    sent = {'syn': 0, 'syn_dup': 0, 'ack': 0, 'est': 0, 'stray': 0, 'rst': 0}
    res = {'episodes': 0, 'no_synack': 0, 'no_child': 0, 'abandoned': 0, 'sockets': 0,
           'rewritten': 0, 'real': 0, 'mismatch': 0, 'changed_after_junk': 0, 'unmatched': 0}
    mism = []
    s0 = T.stats()
    t0 = time.time()

    def w(pkt, kind):
        os.write(T.tun_fd, pkt)
        sent[kind] += 1

    def total():
        return sum(sent.values())

    while total() < nseg:
        eps = []
        for _ in range(batch):
            lname = r.choice(('l4', 'l6', 'ld'))
            lst, v6, src, dst = lmap[lname]
            sp = next_port()
            ep = {'lst': lname, 'v6': v6, 'src': src, 'dst': dst, 'sport': sp,
                  'dport': lst.getsockname()[1], 'isn': r.randrange(1 << 32)}
            ep['syn_area'] = g.area(sp)
            pay = rb(r, r.randrange(1, 64)) \
                if r.random() < 0.1 else b''
            w(seg(src, dst, sp, ep['dport'], ep['isn'], 0, 0x02, ep['syn_area'], pay), 'syn')
            if r.random() < 0.2:     # a retransmitted SYN (whichever one the kernel
                #                          takes, the stash sees the same options)
                w(seg(src, dst, sp, ep['dport'], ep['isn'], 0, 0x02, ep['syn_area'], pay),
                  'syn_dup')
            eps.append(ep)
            # a stray segment at the listener: odd flags, short header, bad sum
            v6s = r.random() < 0.4
            fl = r.choice((0x10, 0x04, 0x11, 0x03, 0x06, 0x18, 0x20, 0x00, 0xff, 0x29, 0x01))
            w(seg(T.P6 if v6s else T.P4, T.L6 if v6s else T.L4, next_port(),
                  T.PORT4, r.randrange(1 << 32), r.randrange(1 << 32), fl, g.area(0),
                  payload=rb(r, r.randrange(0, 30)),
                  doff=r.choice((None, None, None, 15, r.randrange(16))),
                  cut=r.choice((0, 0, 0, r.randrange(1, 30))), badsum=r.random() < 0.1),
              'stray')
        res['episodes'] += len(eps)
        isns = drain({e['sport'] for e in eps})
        byport = {}
        acked = []
        for ep in eps:
            if ep['sport'] not in isns:
                res['no_synack'] += 1
                continue
            ep['sisn'] = isns[ep['sport']]
            ep['seq'] = ep['isn'] + 1
            if r.random() < 0.05:        # abandon the half-open connection
                w(seg(ep['src'], ep['dst'], ep['sport'], ep['dport'], ep['seq'], 0,
                      0x04), 'rst')
                res['abandoned'] += 1
                continue
            ep['ack_area'] = g.area(ep['sport'])
            pay = rb(r, r.randrange(1, 100)) \
                if r.random() < 0.2 else b''
            w(seg(ep['src'], ep['dst'], ep['sport'], ep['dport'], ep['seq'],
                  ep['sisn'] + 1, 0x18 if pay else 0x10, ep['ack_area'], pay), 'ack')
            ep['seq'] += len(pay)
            ep['want'], ep['toa'] = model_peer(ep)
            byport.setdefault((str(ipaddress.ip_address(ep['want'][0])), ep['want'][1]),
                              []).append(ep)
            acked.append(ep)
        conns = accept_all(list(ls), expect=len(acked))
        matched = []
        for c, a in conns:
            res['sockets'] += 1
            p = c.getpeername()[:2]
            key = (str(ipaddress.ip_address(p[0])), p[1])
            cands = byport.get(key, [])
            if len(cands) != 1 or not same_peer(a[:2], p):
                res['unmatched'] += 1
                if len(mism) < 5:
                    mism.append('socket %s accept %s: no episode predicts it' % (p, a[:2]))
                c.close()
                continue
            ep = cands[0]
            ep['conn'] = c
            ep['peer'] = p
            res['rewritten' if ep['toa'] else 'real'] += 1
            matched.append(ep)
        for ep in acked:
            if 'conn' not in ep:      # the kernel dropped the ACK: drop the request
                res['no_child'] += 1
                w(seg(ep['src'], ep['dst'], ep['sport'], ep['dport'], ep['seq'], 0,
                      0x04), 'rst')
        # junk to the established sockets
        for ep in matched:
            for _ in range(est_per_conn):
                k = r.randrange(10)
                pay = rb(r, r.randrange(0, 200))
                seq, ack, fl = ep['seq'], ep['sisn'] + 1, 0x10
                if k < 4 and pay:                # in order: accepted
                    fl = 0x18
                    ep['seq'] += len(pay)
                elif k < 6:                      # out of order, within the window
                    seq += r.randrange(1, 20000)
                elif k < 7:                      # old data
                    seq -= r.randrange(1, 3000)
                elif k < 8:                      # acks data never sent
                    ack += r.randrange(1, 1 << 20)
                    pay = b''
                elif k < 9:                      # a SYN on the established tuple
                    fl, pay = 0x02, b''
                else:                            # RST far outside the window
                    fl, pay, seq = 0x04, b'', seq + (1 << 31)
                opts = g.area(ep['sport'])
                w(seg(ep['src'], ep['dst'], ep['sport'], ep['dport'], seq, ack, fl,
                      opts, pay, doff=15 if (r.random() < 0.05) else None,
                      cut=r.randrange(1, 30) if r.random() < 0.03 else 0), 'est')
            drain(set(), quiet=0)       # keep the TUN queue short
        for ep in matched:
            p = ep['conn'].getpeername()[:2]
            if not same_peer(p, ep['want']):
                res['mismatch'] += 1
                if len(mism) < 5:
                    mism.append('port %d: %s want %s (syn %s ack %s)' % (
                        ep['sport'], p, ep['want'], ep['syn_area'].hex(), ep['ack_area'].hex()))
            if p != ep['peer']:
                res['changed_after_junk'] += 1
            ep['conn'].close()
        drain(set(), quiet=0)
    # late children (ACKs processed after the wait): accept and count as unmatched
    late = accept_all(list(ls), quiet=0.5)
    for c, _ in late:
        c.close()
    dt = time.time() - t0
    ok_live = wait_live_zero(10)
    time.sleep(0.5)
    st = T.stats()
    d = {k: st[k] - s0[k] for k in st if not k.startswith('hook_')}
    print('MEASURE fuzz: seed %d, %d segments in %.1f s (%s); %s' % (
        seed, total(), dt, ', '.join('%s %d' % kv for kv in sent.items()),
        ', '.join('%s %d' % kv for kv in res.items())))
    print('MEASURE fuzz counters (delta): %s' % ', '.join(
        '%s %d' % (k, v) for k, v in sorted(d.items()) if v))
    T.check('fuzz: >= requested segments sent', total() >= nseg, str(total()))
    T.check('fuzz: every socket is what the model predicts', not res['unmatched'] and
            not res['mismatch'] and not late, '; '.join(mism) or 'late %d' % len(late))
    T.check('fuzz: most handshakes completed (the test exercised sockets)',
            res['sockets'] > res['episodes'] // 2, '%d of %d' % (res['sockets'], res['episodes']))
    T.check('fuzz: both rewritten and plain sockets seen (each > 5 % of episodes)',
            min(res['rewritten'], res['real']) > res['episodes'] // 20,
            'rewritten %d real %d' % (res['rewritten'], res['real']))
    T.check('fuzz: junk on established sockets changes no peer', not res['changed_after_junk'])
    T.check('fuzz: accepted == sockets the model says are rewritten',
            d['accepted'] == res['rewritten'], 'accepted %d rewritten %d'
            % (d['accepted'], res['rewritten']))
    T.check('fuzz: entries balance (alloc == free, live 0)',
            ok_live and st['entries_alloc'] == st['entries_free'],
            'alloc %d free %d live %d' % (st['entries_alloc'], st['entries_free'],
                                          st['entries_live']))
    T.check('fuzz: SYN stash balances', st['syn_stashed'] == st['syn_stash_free'] +
            st['syn_stash_live'], 'stashed %d free %d live %d' % (
                st['syn_stashed'], st['syn_stash_free'], st['syn_stash_live']))
    T.check('fuzz: no stale or replaced entry, no missed probe',
            not d['getname_stale'] and not d['entries_replaced'] and
            not any(v for k, v in d.items() if k.startswith('missed_')))
    return total(), dt


def wait_live_zero(timeout):
    end = time.time() + timeout
    while time.time() < end:
        if T.stats()['entries_live'] == 0:
            return True
        time.sleep(0.1)
    return False


def still_serves(label, with_module=True):
    """Plain loopback connection and a clean TOA handshake still behave."""
    lo = socket.socket()
    lo.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lo.bind(('127.0.0.1', T.PORT_LO + 2))
    lo.listen(8)
    cl = socket.create_connection(('127.0.0.1', T.PORT_LO + 2), timeout=5)
    sv, a = lo.accept()
    ok_plain = sv.getpeername() == cl.getsockname() == a
    sv.close()
    cl.close()
    lo.close()
    c, a, sp = T.handshake(LS[0], False, ack_opts=T.toa_opt(200, '203.0.113.99', 9999))
    want = ('203.0.113.99', 9999) if with_module else (T.P4, sp)
    ok_toa = T.peer(c) == want and a == want
    c.close()
    T.check('%s: kernel still serves (plain loopback + crafted TOA handshake)' % label,
            ok_plain and ok_toa, 'plain %s toa %s want %s' % (ok_plain, a, want))


# --------------------------------------------------------------------------
# phase 2: spoofing
def t_spoof(ls, n):
    l4, l6, ld = ls
    s0 = T.stats()
    T.setp('trusted_cidrs', '%s,%s' % (T.P4, T.P6))
    bad = []
    want_rej = 0
    honoured = ignored = 0
    for i in range(n):
        for trusted in (True, False):
            src4, src6 = (T.P4, T.P6) if trusted else (P4B, P6B)
            mode = i % 3           # 0: TOA on the ACK, 1: on the SYN only, 2: on both
            for lst, v6, src in ((l4, False, src4), (l6, True, src6)):
                addr = '203.0.113.%d' % (i % 250 + 1) if not v6 else '2001:db8:7::%x' % (i + 1)
                kind = 253 if v6 else 200
                o = T.toa_opt(kind, addr, 5000 + i)
                c, a, sp = T.handshake(lst, v6, syn_opts=o if mode else b'',
                                       ack_opts=o if mode != 1 else b'', src=src)
                p = T.peer(c)
                want = (addr, 5000 + i) if trusted else (src, sp)
                if p[:2] != want or a[:2] != want:
                    bad.append('%s mode %d: %s want %s' % (src, mode, p, want))
                if trusted:
                    honoured += 1
                else:
                    ignored += 1
                    want_rej += 2 if mode == 2 else 1
                c.close()
    st = T.stats()
    rej = st['rejected_untrusted'] - s0['rejected_untrusted']
    T.check('spoof: TOA from %s/%s ignored, from trusted %s/%s honoured' % (P4B, P6B, T.P4, T.P6),
            not bad, '; '.join(bad[:3]))
    T.check('spoof: rejected_untrusted counts each untrusted TOA segment', rej == want_rej,
            'counted %d expected %d' % (rej, want_rej))
    # swap trust at runtime: now only the second address is a proxy
    T.setp('trusted_cidrs', '%s/32' % P4B)
    c, _, sp = T.handshake(l4, False, ack_opts=T.toa_opt(200, '203.0.113.5', 5), src=T.P4)
    c2, _, _ = T.handshake(l4, False, ack_opts=T.toa_opt(200, '203.0.113.6', 6), src=P4B)
    T.check('spoof: runtime trust swap takes effect at once',
            T.peer(c) == (T.P4, sp) and T.peer(c2) == ('203.0.113.6', 6),
            '%s %s' % (T.peer(c), T.peer(c2)))
    c.close()
    c2.close()
    T.setp('trusted_cidrs', '')
    print('MEASURE spoof: %d honoured, %d ignored, rejected_untrusted +%d' % (honoured, ignored, rej))


# --------------------------------------------------------------------------
# phase 3: unload under load
def slab_objs():
    """Active objects of the module's entry cache; None when it does not exist."""
    with open('/proc/slabinfo') as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] == 'toa_sk_entry':
                return int(parts[1])
    return None


def open_many(ls, n, chunk=100):
    """@n TOA connections, mixed: v4 on the ACK, v6 on the ACK, v4 in the SYN
    (dual-stack listener).  Returns [(sock, toa peer, real peer)]."""
    out = []
    kinds = ((ls[0], False, T.P4, T.L4), (ls[1], True, T.P6, T.L6), (ls[2], False, T.P4, T.L4))
    while len(out) < n:
        eps = []
        for i in range(min(chunk, n - len(out))):
            lst, v6, src, dst = kinds[(len(out) + i) % 3]
            sp = next_port()
            dport = lst.getsockname()[1]
            if v6:
                toa, want = T.toa_opt(253, '2001:db8:9::%x' % sp, sp), ('2001:db8:9::%x' % sp, sp)
            else:
                a = '198.51.100.%d' % (sp % 250 + 1)
                toa = T.toa_opt(200, a, sp)
                want = (a, sp) if lst is ls[0] else ('::ffff:' + a, sp)
            in_syn = lst is ls[2]
            os.write(T.tun_fd, T.tcp_packet(src, dst, sp, dport, 1000, 0, 0x02,
                                            b'\x02\x04\x05\xb4' + (toa if in_syn else b'')))
            real = ('::ffff:' + src if lst is ls[2] else src, sp)
            eps.append((sp, src, dst, dport, b'' if in_syn else toa, want, real))
        isns = drain({e[0] for e in eps}, quiet=1.0, limit=20)
        for sp, src, dst, dport, ack_opts, _, _ in eps:
            if sp in isns:
                os.write(T.tun_fd, T.tcp_packet(src, dst, sp, dport, 1001, isns[sp] + 1,
                                                0x10, ack_opts))
        byport = {e[0]: e for e in eps}
        for c, _ in accept_all(list(ls), quiet=1.0, expect=len(isns)):
            e = byport.get(c.getpeername()[1])
            if e is None:
                c.close()
                continue
            out.append((c, e[5], e[6]))
        if not isns:
            raise RuntimeError('no SYN-ACK at all while opening connections')
    return out


def churn(ls, stop, log):
    """Open TOA connections one after another until @stop; log each peer."""
    while not stop.is_set():
        try:
            a = '198.51.100.200'
            c, acc, sp = T.handshake(ls[0], False, ack_opts=T.toa_opt(200, a, 4000), src=T.P4)
        except Exception as e:      # noqa: BLE001  (reported, then the check fails)
            log.append(('error', repr(e), time.time()))
            continue
        log.append((T.peer(c), (a, 4000), (T.P4, sp), time.time()))
        c.close()


def hammer(held, stop, log):
    while not stop.is_set():
        for c, want, real in held:
            try:
                p = c.getpeername()[:2]
            except OSError as e:
                log.append(('error', repr(e)))
                continue
            if not (same_peer(p, want) or same_peer(p, real)):
                log.append(('bad', p, want, real))
            log[0] += 1
            if stop.is_set():
                break


def t_unload(ko, ls, cycles, hold):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, hold + 4096), max(hard, hold + 4096)))
    created = 0
    slab_seen, slab_left = [], []
    times = []
    for cyc in range(cycles):
        before = dmesg_lines()
        if not os.path.exists('/sys/module/toa'):
            T.insmod(ko, 'syn_toa=1')
        t0 = time.time()
        held = open_many(ls, hold)
        t_open = time.time() - t0
        rew = sum(1 for c, want, _ in held if same_peer(c.getpeername()[:2], want))
        # pending SYNs with TOA left in the stash
        pending = []
        for _ in range(20):
            sp = next_port()
            pending.append(sp)
            os.write(T.tun_fd, T.tcp_packet(T.P4, T.L4, sp, T.PORT4, 7, 0, 0x02,
                                            T.toa_opt(200, '198.51.100.250', sp)))
        drain(set(), quiet=0.2)
        st = T.stats()
        created += st['entries_alloc']
        slab_seen.append(slab_objs() or 0)
        with open('/sys/module/toa/refcnt') as f:
            refcnt = f.read().strip()
        T.check('unload %d: %d connections held, all rewritten' % (cyc + 1, len(held)),
                len(held) >= hold and rew == len(held), 'rewritten %d of %d' % (rew, len(held)))
        T.check('unload %d: counters before rmmod (alloc - free == live == held)' % (cyc + 1),
                st['entries_alloc'] - st['entries_free'] == st['entries_live'] == len(held)
                and st['syn_stash_live'] >= 20,
                'alloc %d free %d live %d stash %d' % (st['entries_alloc'], st['entries_free'],
                                                       st['entries_live'], st['syn_stash_live']))
        stop = threading.Event()
        clog, hlog = [], [0]
        th = [threading.Thread(target=churn, args=(ls, stop, clog)),
              threading.Thread(target=hammer, args=(held, stop, hlog))]
        for t in th:
            t.start()
        time.sleep(1.0)
        t1 = time.time()
        r = T.sh('rmmod', 'toa', ok_codes=(0, 1))
        t_rm = time.time() - t1
        t_rm_end = time.time()
        slab_left.append(slab_objs())
        time.sleep(1.0)
        stop.set()
        for t in th:
            t.join(30)
        times.append((t_open, t_rm))
        after = [(c.getpeername()[:2], real) for c, _, real in held]
        real_ok = sum(1 for p, real in after if same_peer(p, real))
        errs = [x for x in clog if x[0] == 'error']
        cbad = [x for x in clog if x[0] != 'error' and not (same_peer(x[0], x[1])
                                                           or same_peer(x[0], x[2]))]
        cpost = [x for x in clog if x[0] != 'error' and x[3] > t_rm_end + 0.05]
        cpost_bad = [x for x in cpost if not same_peer(x[0], x[2])]
        hbad = [x for x in hlog[1:]]
        T.check('unload %d: rmmod succeeded under load (refcnt %s)' % (cyc + 1, refcnt),
                r.returncode == 0 and not os.path.exists('/sys/module/toa'), r.stdout.strip())
        T.check('unload %d: every held socket reports its real peer after rmmod' % (cyc + 1),
                real_ok == len(held), '%d of %d' % (real_ok, len(held)))
        T.check('unload %d: connections opened during rmmod sane, after it real' % (cyc + 1),
                not errs and not cbad and not cpost_bad and len(cpost) > 0,
                'opened %d (after rmmod %d), errors %s, bad %s' % (
                    len(clog), len(cpost), errs[:2], (cbad + cpost_bad)[:2]))
        T.check('unload %d: getpeername() hammer saw only TOA or real peers' % (cyc + 1),
                not hbad and hlog[0] > 0, 'calls %d bad %s' % (hlog[0], hbad[:2]))
        for c, _, _ in held:
            c.close()
        for sp in pending:      # free the listener's request queue
            os.write(T.tun_fd, T.tcp_packet(T.P4, T.L4, sp, T.PORT4, 8, 0, 0x04))
        drain(set(), quiet=0.1)
        bad, nnew = dmesg_new_bad(before)
        T.check('unload %d: dmesg clean' % (cyc + 1), not bad, '; '.join(bad[:3]))
        print('MEASURE unload %d: %d held opened in %.1f s, rmmod took %.2f s with %d live '
              'entries; %d churn connections (%d after rmmod), %d getpeername calls during '
              'the cycle; %d new dmesg lines' % (cyc + 1, len(held), t_open, t_rm,
                                                 st['entries_live'], len(clog), len(cpost),
                                                 hlog[0], nnew))
    # after the last unload: old and new sockets are plain
    still_serves('after unload', with_module=False)
    time.sleep(2)     # freed sockets and RCU callbacks settle
    T.check('unload: the entry cache held the live entries while loaded',
            len(slab_seen) == cycles and all(n >= hold for n in slab_seen), str(slab_seen))
    T.check('unload: the entry cache is gone after every rmmod', not any(slab_left),
            str(slab_left))
    print('MEASURE unload: %d cycles, toa_sk_entry objects before each rmmod %s, '
          '%d entries created' % (cycles, slab_seen, created))


LS = None


def main():
    global LS
    ap = argparse.ArgumentParser()
    ap.add_argument('--ko', required=True)
    ap.add_argument('--seed', type=int, default=None)
    ap.add_argument('--segments', type=int, default=100000)
    ap.add_argument('--cycles', type=int, default=5)
    ap.add_argument('--hold', type=int, default=2000)
    ap.add_argument('--spoof', type=int, default=30, help='rounds of the spoofing phase')
    ap.add_argument('--phases', default='fuzz,spoof,unload')
    a = ap.parse_args()
    ko = os.path.abspath(a.ko)
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), 'big')
    print('MEASURE abuse: kernel %s, seed %d (rerun with --seed %d)'
          % (os.uname().release, seed, seed))
    phases = a.phases.split(',')

    T.unload()
    T.enter_netns()
    fcntl.fcntl(T.tun_fd, fcntl.F_SETFL, fcntl.fcntl(T.tun_fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    # Ubuntu 16.04's somaxconn is 128: room for a batch plus pending requests
    T.sh('sysctl', '-qw', 'net.core.somaxconn=4096', ok_codes=(0, 1, 255))
    LS = ls = T.listeners()
    for s in ls:
        s.setblocking(False)
    T.insmod(ko, 'syn_toa=1')
    t_all = time.time()
    if 'fuzz' in phases:
        before = dmesg_lines()
        t_fuzz(ls, a.segments, seed)
        bad, nnew = dmesg_new_bad(before)
        T.check('fuzz: dmesg clean (%d new lines)' % nnew, not bad, '; '.join(bad[:3]))
        still_serves('after fuzz')
    if 'spoof' in phases:
        before = dmesg_lines()
        t_spoof(ls, a.spoof)
        bad, _ = dmesg_new_bad(before)
        T.check('spoof: dmesg clean', not bad, '; '.join(bad[:3]))
    if 'unload' in phases:
        t_unload(ko, ls, a.cycles, a.hold)
    T.unload()
    print('MEASURE abuse: all phases %.0f s' % (time.time() - t_all))
    print('RESULT %s (%d failed)' % ('FAIL' if T.failures else 'PASS', len(T.failures)))
    return 1 if T.failures else 0


if __name__ == '__main__':
    sys.exit(main())
