#!/usr/bin/env python3
"""In-guest load test of toa.ko or the eBPF route (run as root inside a test VM, next to vm_toa_test.py).

The packets are made by toa_load_pump (C, compiled here with the guest's gcc):
one process per flow, each in its own network namespace with its own TUN
device, playing the proxy on the TUN side and the server on the socket side
(IPv4, IPv6 and dual-stack IPv6-taking-IPv4 listeners).  Every handshake
carries a TOA option with its own client address (198.18.0.0/15 and
2001:db8:7000::/64, ports varied, unique over all flows) and a payload naming
the handshake, so the accept thread knows exactly which address accept() and
getpeername() must report: the injected one (ok), the proxy's (missing) or
any other (wrong).  Beside that, in every flow and in the initial namespace,
plain loopback connections are checked never to be rewritten, and a thread
calls getpeername() in a tight loop on TOA sockets that must keep their
address.  This script loads the module, drives the phases and judges.

Phases (--phases, all by default):
  churn   --handshakes TOA handshakes over --flows flows, each accepted,
          checked and closed.
  hold    --hold TOA connections open at once, every one checked again,
          then all closed: entries_live must return to 0.
  rmmod   --rmmod-hold connections held open and handshakes flowing while
          `rmmod toa` runs; afterwards every held socket reports its real
          peer, connections after the unload are plain, the kernel log is
          clean, and the module loads and works again.

Pass: 0 missing, 0 wrong, no handshake lost, no plain connection rewritten,
every missed_* and every lost-address counter of the module 0 (in the
initial namespace and in each flow's namespace where the module has
per-namespace counters), entries back to 0, dmesg clean.

The same test drives the eBPF route (--bpf-loader, --bpf-object: the
programs are loaded and attached by the route's own loader, toa-bpf, and
"rmmod" is its unload, which detaches them under load).  Its counters are
host-wide, it has no missed_* (direct calls, not kprobes) and no entry table:
socket storage lives exactly as long as its socket, so there is no
entries_live to watch; those checks are reported as SKIP, never as passed.
What proves it is the same: every held and every churned socket checked.

  vm_load.py --ko ./toa.ko [--handshakes N] [--hold N] [--rmmod-hold N]
             [--flows F] [--window W] [--hammer K] [--phases churn,hold,rmmod]
  vm_load.py --bpf-loader ./toa-bpf --bpf-object ./toa.bpf.o [same options]

Prints PASS/FAIL and MEASURE lines; exits non-zero when a check fails.
"""
import argparse
import json
import os
import resource
import select
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vm_toa_test as T  # noqa: E402  (check(), sh(), insmod/unload)
from vm_abuse import dmesg_lines, dmesg_new_bad  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
INIT_STATS = '/proc/1/net/toa_stats'
# counters that mean a client address was lost (contract-toa2.md), besides missed_*
LOST = ('entries_dropped_full', 'entries_nomem', 'syn_stash_dropped_full',
        'global_entries_dropped_full', 'global_entries_nomem',
        'global_syn_stash_dropped_full', 'global_missed')
NO_TABLE = ('the eBPF route keeps each address in socket storage, freed with its socket: '
            'there is no entry table to count')
TALLY = ('n', 'ok', 'real', 'missing', 'wrong', 'stale', 'disagree', 'nodata', 'late', 'lost')


# --------------------------------------------------------------------------
# module counters
def read_stats(path):
    try:
        with open(path) as f:
            return {k: int(v) for k, v in (ln.split() for ln in f if ln.strip())}
    except FileNotFoundError:
        return None


def lost_counters(st):
    return {k: v for k, v in (st or {}).items()
            if v and (k in LOST or k.startswith('missed_'))}


def live(st):
    """Entries over all namespaces (the old module has one global table);
    None where there is no table (the eBPF route)."""
    if st is not None and 'global_entries_live' not in st and 'entries_live' not in st:
        return None
    return st.get('global_entries_live', st.get('entries_live', 0)) if st else 0


class KmodTarget:
    """toa.ko: insmod with parameters, rmmod, /proc/net/toa_stats per namespace."""
    unload_word = 'rmmod'
    has_table = True

    def __init__(self, a):
        self.ko = os.path.abspath(a.ko)
        self.params = list(a.param)

    def prepare(self, per_flow_hold):
        have = T.sh('modinfo', '-F', 'parm', self.ko).stdout
        if 'netns_max_entries:' in have and per_flow_hold > 65536 and \
                not any(p.startswith('netns_max_entries=') for p in self.params):
            # more per namespace than the default per-namespace quota
            self.params.append('netns_max_entries=0')

    def load(self):
        T.insmod(self.ko, *self.params)

    def unload_now(self):
        """Unload while the load runs: (ok, output)."""
        r = T.sh('rmmod', 'toa', ok_codes=(0, 1))
        return r.returncode == 0 and not os.path.exists('/sys/module/toa'), r.stdout.strip()

    def unload(self):
        T.unload()

    def stats(self):
        return read_stats(INIT_STATS)

    def ns_stats(self, pid):
        return read_stats('/proc/%d/net/toa_stats' % pid)

    def describe(self):
        st = self.stats() or {}
        version = T.sh('modinfo', '-F', 'version', self.ko).stdout.strip()
        srcv = T.sh('modinfo', '-F', 'srcversion', self.ko).stdout.strip()
        hooks = ('ftrace' if st.get('hooks_ftrace') else 'kprobes (no hooks_ftrace counter)'
                 if 'hooks_ftrace' not in st else 'kprobes')
        return 'module %s srcversion %s, hooks %s, insmod params: %s' % (
            version, srcv, hooks, ' '.join(self.params) or '(defaults)')


class BpfTarget:
    """The eBPF route through its own loader: load + attach, unload, status."""
    unload_word = 'detach (toa-bpf unload)'
    has_table = False

    def __init__(self, a):
        self.loader = os.path.abspath(a.bpf_loader)
        self.object = os.path.abspath(a.bpf_object)
        self.config = '/root/toa-load-bpf.json'
        cfg = {'enabled': True, 'syn_toa': False, 'ipv4_kinds': [200], 'ipv6_kinds': [253, 254],
               'trusted_cidrs': []}
        for p in a.param:
            k, v = p.split('=', 1)
            cfg[k] = json.loads(v)
        with open(self.config, 'w') as f:
            json.dump(cfg, f)
        self.cfg = cfg

    def run(self, *args, ok_codes=(0,)):
        return T.sh('python3', self.loader, *args, ok_codes=ok_codes)

    def status(self):
        """toa-bpf status (JSON on stdout; bpftool's warnings go to stderr)."""
        return json.loads(subprocess.run(['python3', self.loader, 'status'], check=True,
                                         stdout=subprocess.PIPE, universal_newlines=True).stdout)

    def prepare(self, per_flow_hold):
        # the module would take the connections first: it must not be there
        T.unload()

    def load(self):
        self.run('load', '--object', self.object, '--config', self.config)

    def unload_now(self):
        r = self.run('unload', ok_codes=(0, 1))
        st = self.status()
        return (r.returncode == 0 and not st['loaded'] and not any(st['attached'].values()),
                r.stdout.strip())

    def unload(self):
        self.run('unload')

    def stats(self):
        st = self.status()
        return st['counters'] if st['loaded'] else None

    def ns_stats(self, pid):
        return None     # one set of counters for the host

    def describe(self):
        sha = T.sh('sha256sum', self.object).stdout.split()[0]
        st = self.status()
        return 'eBPF route: object sha256 %s, programs %s, all attached %s, config %s' % (
            sha, st['programs'], all(st['attached'].values()), json.dumps(self.cfg))


class Pump:
    """One toa_load_pump process and its line protocol."""

    def __init__(self, binary, args, label):
        self.label = label
        self.p = subprocess.Popen([binary] + args, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, universal_newlines=True, bufsize=1)
        ready = self.read(60)
        self.pid = int(ready['pid'])

    def send(self, cmd):
        self.p.stdin.write(cmd + '\n')
        self.p.stdin.flush()

    def read(self, timeout):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        line = self.p.stdout.readline() if r else ''
        if not line:
            raise RuntimeError('%s: no answer within %d s (exit status %s)'
                               % (self.label, timeout, self.p.poll()))
        words = line.split()
        if words[0] not in ('done', 'ready'):
            raise RuntimeError('%s: %s' % (self.label, line.strip()))
        out = {'cmd': words[1] if words[0] == 'done' else 'ready'}
        for w in words[1:]:
            if '=' in w:
                k, v = w.split('=', 1)
                out[k] = int(v) if v.lstrip('-').isdigit() else (float(v) if k == 'secs' else v)
        return out

    def stop(self):
        if self.p.poll() is None:
            try:
                self.send('quit')
                self.p.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait()


def each(pumps, cmd, timeout, per=None):
    """Send @cmd (or per(i) for pump i) to every pump, then collect the answers."""
    for i, p in enumerate(pumps):
        p.send(per(i) if per else cmd)
    return [p.read(timeout) for p in pumps]


def total(answers):
    out = {k: sum(a.get(k, 0) for a in answers) for k in TALLY}
    out['first_bad'] = [a['first_bad'] for a in answers if a.get('first_bad', '-') != '-'][:3]
    out['secs'] = max(a.get('secs', 0) for a in answers)
    return out


def split(n, flows):
    return [n // flows + (1 if i < n % flows else 0) for i in range(flows)]


class Sampler(threading.Thread):
    """Peaks of entries_live and guest memory in use, every @period s."""

    def __init__(self, period, target):
        super().__init__(daemon=True)
        self.target = target
        self.period, self.stop_ev = period, threading.Event()
        self.peak_live = self.peak_mem = 0
        self.mem0 = mem_used()

    def run(self):
        while not self.stop_ev.wait(self.period):
            if self.target.has_table:
                self.peak_live = max(self.peak_live, live(self.target.stats()) or 0)
            self.peak_mem = max(self.peak_mem, mem_used())


def meminfo():
    with open('/proc/meminfo') as f:
        return {ln.split(':')[0]: int(ln.split()[1]) for ln in f}


def mem_used():
    m = meminfo()
    return m['MemTotal'] - m['MemAvailable']     # kB


# --------------------------------------------------------------------------
class Run:
    def __init__(self, a):
        self.a = a
        self.target = BpfTarget(a) if a.bpf_loader else KmodTarget(a)
        self.pumps = []
        self.plain_init = None
        self.rates = []
        self.before = None

    # ---- helpers
    def all_stats(self):
        """(initial namespace's counters, [each flow namespace's, or None])."""
        return self.target.stats(), [self.target.ns_stats(p.pid) for p in self.pumps]

    def summed(self, *names):
        """Per-namespace counters summed over the initial and every flow
        namespace (the old module's one file already counts them all)."""
        init, per_ns = self.all_stats()
        files = [init] + [st for st in per_ns if st is not None]
        return {k: sum(st.get(k, 0) for st in files) for k in names}

    def check_lost(self, label):
        init, per_ns = self.all_stats()
        bad = {'init': lost_counters(init)}
        for i, st in enumerate(per_ns):
            if st is not None:
                bad['flow%d' % i] = lost_counters(st)
        bad = {k: v for k, v in bad.items() if v}
        T.check('%s: no missed hook, no lost-address counter (init ns%s)'
                % (label, ' + %d flow namespaces' % sum(1 for s in per_ns if s is not None)
                   if any(s is not None for s in per_ns) else ' only: no per-namespace '
                   'counters'), init is not None and not bad, str(bad))
        return init, per_ns

    def judge(self, label, t, expect_real=False, allow_real=False):
        """Checks of one command's summed tally."""
        detail = ('n %(n)d ok %(ok)d real %(real)d missing %(missing)d wrong %(wrong)d '
                  'stale %(stale)d lost %(lost)d nodata %(nodata)d late %(late)d '
                  'accept/getpeername disagree %(disagree)d' % t)
        if t['first_bad']:
            detail += '; first: ' + ' | '.join(t['first_bad'])
        if expect_real:
            good = t['real'] == t['n'] and not t['wrong'] and not t['stale']
            T.check('%s: every socket reports its real peer' % label, good, detail)
        else:
            T.check('%s: 0 missing, 0 wrong' % label,
                    not t['missing'] and not t['wrong'] and not t['stale']
                    and (allow_real or not t['real']), detail)
        if 'lost' in t and t['n']:
            T.check('%s: every handshake completed and was identified' % label,
                    not t['lost'] and not t['nodata'] and
                    t['ok'] + t['real'] + t['missing'] + t['wrong'] + t['stale'] >= t['n'],
                    detail)

    def wait_live(self, timeout, per_flow=0):
        """Wait until each flow namespace holds @per_flow entries (all
        namespaces together flows * @per_flow); return what is live."""
        end = time.time() + timeout
        while True:
            init, per_ns = self.all_stats()
            lv = live(init)
            if lv is None:
                return None, []
            ns = [s['entries_live'] for s in per_ns if s is not None]
            if (lv == per_flow * len(self.pumps) and all(n == per_flow for n in ns)) \
                    or time.time() > end:
                return lv, ns
            time.sleep(0.5)

    # ---- setup
    def setup(self):
        a = self.a
        per_flow_hold = max(a.hold, a.rmmod_hold) // a.flows + 1
        nofile = per_flow_hold + a.hammer + 4096
        with open('/proc/sys/fs/nr_open') as f:
            nr_open = int(f.read())
        if nr_open < nofile:
            T.sh('sysctl', '-qw', 'fs.nr_open=%d' % nofile)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), max(hard, 4096)))
        src = a.pump_src or os.path.join(HERE, 'toa_load_pump.c')
        self.binary = '/root/toa_load_pump'
        T.sh('gcc', '-O2', '-Wall', '-pthread', '-o', self.binary, src)

        self.target.unload()
        self.dmesg0 = dmesg_lines()
        self.target.prepare(per_flow_hold)
        self.target.load()
        with open('/proc/sys/fs/file-max') as f:
            file_max = f.read().strip()
        m = meminfo()
        self.cpus = os.cpu_count()
        self.mem_total = m['MemTotal']
        print('MEASURE load: kernel %s, %d CPUs, MemTotal %d MB; %s'
              % (os.uname().release, self.cpus, m['MemTotal'] // 1024, self.target.describe()))
        print('MEASURE load: set fs.nr_open %d (was %d), RLIMIT_NOFILE %d per flow, fs.file-max '
              '%s (unchanged); per flow namespace: somaxconn 65535, tcp_max_syn_backlog 65536, '
              'tcp_syncookies 0, listen backlog 65535, TUN txqueuelen 20000, window %d '
              'handshakes in flight' % (max(nr_open, nofile), nr_open, nofile, file_max,
                                        a.window))
        sys.stdout.flush()
        for i in range(a.flows):
            self.pumps.append(Pump(self.binary, [
                '--flow', str(i), '--flows', str(a.flows), '--window', str(a.window),
                '--syn-every', str(a.syn_every), '--nofile', str(nofile),
                '--plain-sleep-us', str(a.plain_sleep_us),
                '--hammer-pause-us', str(a.hammer_pause_us),
                '--hammer-nice', str(a.hammer_nice),
                '--cpu', str(i % self.cpus if a.pin else -1)], 'flow %d' % i))
        self.plain_init = Pump(self.binary, ['--plain-only', '--plain-sleep-us',
                                             str(a.plain_sleep_us)], 'plain (init ns)')
        for p in self.pumps + [self.plain_init]:
            p.send('plain 1')
            p.read(30)
        if a.hammer:
            t = total(each(self.pumps, 'hammer %d' % a.hammer, 300))
            self.judge('hammer sockets opened', t)

    # ---- phases
    def churn(self):
        a = self.a
        names = ('options_seen', 'accepted', 'getname_rewrites')
        s0 = self.summed(*names)
        t0 = time.time()
        t = total(each(self.pumps, None, a.cmd_timeout,
                       per=lambda i: 'run %d' % split(a.handshakes, a.flows)[i]))
        dt = time.time() - t0
        s1 = self.summed(*names)
        self.rates.append(('churn', t['n'], dt))
        print('MEASURE churn: %d TOA handshakes over %d flows in %.1f s: %.0f handshakes/s '
              '(accepted, checked, closed); options_seen +%d, accepted +%d, '
              'getname_rewrites +%d' % (t['n'], a.flows, dt, t['n'] / dt,
                                        s1['options_seen'] - s0['options_seen'],
                                        s1['accepted'] - s0['accepted'],
                                        s1['getname_rewrites'] - s0['getname_rewrites']))
        self.judge('churn', t)
        self.check_lost('churn')

    def hold(self):
        a = self.a
        t0 = time.time()
        t = total(each(self.pumps, None, a.cmd_timeout,
                       per=lambda i: 'hold %d' % split(a.hold, a.flows)[i]))
        dt = time.time() - t0
        self.rates.append(('hold open', t['n'], dt))
        self.judge('hold: %d connections opened' % t['n'], t)
        tc = total(each(self.pumps, 'check', a.cmd_timeout))
        self.judge('hold: all %d held connections checked again' % tc['n'], tc)
        init, per_ns = self.check_lost('hold (all open)')
        want = a.hold + (a.hammer * a.flows if a.hammer else 0)
        got = live(init)
        ns_live = [s['entries_live'] for s in per_ns if s is not None]
        if got is None:
            T.skip('hold: entries_live counts every open TOA connection', NO_TABLE)
        else:
            T.check('hold: entries_live counts every open TOA connection (>= %d)' % want,
                    got >= want, 'entries_live %d%s' % (got, ', per namespace %s' % ns_live
                                                        if ns_live else ''))
        print('MEASURE hold: %d connections opened in %.1f s (%.0f handshakes/s), all %d '
              'checked in %.1f s; entries_live %s%s; guest memory in use %d MB'
              % (t['n'], dt, t['n'] / dt, tc['n'], tc['secs'], 'n/a' if got is None else got,
                 ' (per flow namespace %s)' % ns_live if ns_live else '', mem_used() // 1024))
        t0 = time.time()
        each(self.pumps, 'close', a.cmd_timeout)
        lv, ns = self.wait_live(120, a.hammer)
        dt = time.time() - t0
        want_after = a.hammer * a.flows
        if lv is None:
            T.skip('hold: entries back to the hammer sockets after close', NO_TABLE)
        else:
            T.check('hold: entries back to the hammer sockets\' %d after close' % want_after,
                    lv == want_after and all(n == a.hammer for n in ns),
                    'entries_live %d, per flow namespace %s, %.1f s after close' % (lv, ns, dt))
        print('MEASURE hold: closed in %.1f s, entries_live back to %s'
              % (dt, 'n/a' if lv is None else lv))
        self.check_lost('hold (after close)')

    def rmmod(self):
        a = self.a
        before = dmesg_lines()
        t0 = time.time()
        t = total(each(self.pumps, None, a.cmd_timeout,
                       per=lambda i: 'hold %d' % split(a.rmmod_hold, a.flows)[i]))
        dt = time.time() - t0
        self.rates.append(('rmmod hold open', t['n'], dt))
        self.judge('rmmod: %d connections held' % t['n'], t)
        each(self.pumps, 'bg', 60)
        time.sleep(a.bg_warm)
        # the counters' last reading, with handshakes flowing
        init, _ = self.check_lost('rmmod (under load, just before the unload)')
        live_before = live(init)
        each(self.pumps, 'mark 1', 60)
        t_rm = time.time()
        gone, output = self.target.unload_now()
        t_rm = time.time() - t_rm
        each(self.pumps, 'mark 2', 60)
        time.sleep(a.bg_warm)
        tb = total(each(self.pumps, 'bg-stop', a.cmd_timeout))
        reps = each(self.pumps, 'report', 60)
        T.check('rmmod: %s under load with %s live entries'
                % (self.target.unload_word, 'n/a' if live_before is None else live_before),
                gone, output)
        self.judge('rmmod: handshakes flowing across the unload (TOA before, real after)',
                   tb, allow_real=True)
        T.check('rmmod: handshakes went on after the unload', tb['real'] > 0,
                'real peers after/during unload %d' % tb['real'])
        tc = total(each(self.pumps, 'check', a.cmd_timeout))
        self.judge('rmmod: held connections after the unload', tc, expect_real=True)
        ham = {k: sum(x[k] for x in reps) for k in reps[0] if k.startswith('hammer_')
               and isinstance(reps[0][k], int)}
        T.check('rmmod: getpeername() loops saw only own TOA or real peers',
                not ham['hammer_missing'] and not ham['hammer_wrong']
                and not ham['hammer_stale'], str(ham))
        each(self.pumps, 'hammer-off', 60)
        each(self.pumps, 'close', a.cmd_timeout)
        self.rates.append(('during rmmod', tb['n'], tb['secs']))
        print('MEASURE rmmod: %d held connections, %s took %.2f s with %s live entries; '
              '%d handshakes across the unload in %.1f s (%d TOA, %d real), all held report '
              'their real peer: %s' % (t['n'], self.target.unload_word, t_rm,
                                       'n/a' if live_before is None else live_before,
                                       tb['n'], tb['secs'], tb['ok'], tb['real'],
                                       tc['real'] == tc['n']))
        bad, nnew = dmesg_new_bad(before)
        T.check('rmmod: dmesg clean (%d new lines)' % nnew, not bad, '; '.join(bad[:3]))
        # loads again and works
        self.target.load()
        each(self.pumps, 'mark 0', 60)
        tr = total(each(self.pumps, 'run %d' % a.after_run, a.cmd_timeout))
        self.judge('rmmod: after loading again, TOA handshakes', tr)

    def finish(self):
        a = self.a
        reps = each(self.pumps, 'report', 60)
        self.plain_init.send('report')
        rp = self.plain_init.read(60)
        plain = sum(x['plain'] for x in reps) + rp['plain']
        plain_bad = sum(x['plain_bad'] for x in reps) + rp['plain_bad']
        plain_err = sum(x['plain_err'] for x in reps) + rp['plain_err']
        firsts = [x['plain_first_bad'] for x in reps + [rp] if x['plain_first_bad'] != '-']
        T.check('plain loopback connections never rewritten (flows + initial namespace)',
                plain > 0 and not plain_bad, '%d connections, %d rewritten, %d errors%s'
                % (plain, plain_bad, plain_err, '; first: ' + firsts[0] if firsts else ''))
        if a.hammer and 'rmmod' not in a.phases.split(','):
            ham = {k: sum(x[k] for x in reps) for k in reps[0] if k.startswith('hammer_')
                   and isinstance(reps[0][k], int)}
            T.check('getpeername() loops kept their own TOA address',
                    ham['hammer_calls'] > 0 and not ham['hammer_missing']
                    and not ham['hammer_wrong'] and not ham['hammer_stale']
                    and not ham['hammer_real'], str(ham))
        return reps, rp, plain

    def main(self):
        a = self.a
        phases = a.phases.split(',')
        t_all = time.time()
        sampler = Sampler(a.sample, self.target)
        self.setup()
        sampler.start()
        hammer0 = None
        try:
            if 'churn' in phases:
                self.churn()
            if a.hammer:
                hammer0 = each(self.pumps, 'report', 60)
            if 'hold' in phases:
                self.hold()
            if a.hammer and 'rmmod' in phases:
                # the getpeername() loops until now: must all be their own TOA address
                reps = each(self.pumps, 'report', 60)
                ham = {k: sum(x[k] for x in reps) for k in reps[0] if k.startswith('hammer_')
                       and isinstance(reps[0][k], int)}
                T.check('getpeername() loops kept their own TOA address (churn + hold)',
                        ham['hammer_calls'] > 0 and not ham['hammer_missing']
                        and not ham['hammer_wrong'] and not ham['hammer_stale']
                        and not ham['hammer_real'], str(ham))
            if 'rmmod' in phases:
                self.rmmod()
            self.check_lost('end')
            reps, _, plain = self.finish()
        finally:
            sampler.stop_ev.set()
            for p in self.pumps + ([self.plain_init] if self.plain_init else []):
                p.stop()
        lv, _ = self.wait_live(30)
        if lv is None:
            T.skip('entries_live 0 at the end', NO_TABLE)
        else:
            T.check('entries_live 0 at the end', lv == 0, str(lv))
        dt = time.time() - t_all
        self.target.unload()
        bad, nnew = dmesg_new_bad(self.dmesg0)
        T.check('dmesg clean over the whole run (%d new lines)' % nnew, not bad,
                '; '.join(bad[:3]))
        calls = sum(x['hammer_calls'] for x in reps)
        for label, n, secs in self.rates:
            print('MEASURE rate %-16s %8d handshakes in %7.1f s: %6.0f/s'
                  % (label, n, secs, n / secs if secs else 0))
        print('MEASURE load: duration %.0f s; peak entries_live %s; guest memory in use '
              '%d MB before, peak %d MB (of %d MB); %d getpeername() calls in the loops '
              '(%d sockets per flow), %d plain connections checked%s'
              % (dt, sampler.peak_live if self.target.has_table else 'n/a',
                 sampler.mem0 // 1024, sampler.peak_mem // 1024,
                 self.mem_total // 1024, calls, a.hammer, plain,
                 '' if hammer0 is None else '; %d getpeername() calls during churn'
                 % sum(x['hammer_calls'] for x in hammer0)))
        print('RESULT %s (%d failed)' % ('FAIL' if T.failures else 'PASS', len(T.failures)))
        return 1 if T.failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument('--ko', help='toa.ko to load')
    what.add_argument('--bpf-loader', help='the eBPF route\'s loader (toa-bpf) instead of a module')
    ap.add_argument('--bpf-object', help='toa.bpf.o for --bpf-loader')
    ap.add_argument('--handshakes', type=int, default=1000000,
                    help='TOA handshakes in the churn phase, over all flows')
    ap.add_argument('--hold', type=int, default=200000,
                    help='TOA connections open at once in the hold phase')
    ap.add_argument('--rmmod-hold', type=int, default=None,
                    help='connections held open during rmmod (default: --hold)')
    ap.add_argument('--flows', type=int, default=4,
                    help='processes, each with its own network namespace and TUN')
    ap.add_argument('--window', type=int, default=256,
                    help='handshakes in flight per flow (a power of 2)')
    ap.add_argument('--hammer', type=int, default=16,
                    help='TOA sockets per flow under a tight getpeername() loop (0: none)')
    ap.add_argument('--hammer-pause-us', type=int, default=0,
                    help='pause after each sweep of the getpeername() loop')
    ap.add_argument('--hammer-nice', type=int, default=10,
                    help='nice value of the getpeername() loop threads (they spin: without it '
                    'they take a third of each CPU from the handshakes)')
    ap.add_argument('--plain-sleep-us', type=int, default=10000,
                    help='pause between plain loopback connections (per flow)')
    ap.add_argument('--syn-every', type=int, default=8,
                    help='every Nth handshake carries the same TOA in its SYN too (0: never)')
    ap.add_argument('--after-run', type=int, default=300,
                    help='TOA handshakes per flow after loading the module again')
    ap.add_argument('--bg-warm', type=float, default=3.0,
                    help='seconds of handshakes before and after the rmmod')
    ap.add_argument('--no-pin', dest='pin', action='store_false',
                    help='do not pin flow I to CPU I mod CPUs (pinned, a flow\'s threads wake '
                    'each other without cross-CPU interrupts, costly under emulation)')
    ap.add_argument('--param', action='append', default=[],
                    help='module parameter for insmod, or with --bpf-loader a configuration '
                    'key=JSON value (repeatable)')
    ap.add_argument('--phases', default='churn,hold,rmmod')
    ap.add_argument('--sample', type=float, default=1.0)
    ap.add_argument('--cmd-timeout', type=int, default=3600)
    ap.add_argument('--pump-src', help='toa_load_pump.c (default: beside this script)')
    a = ap.parse_args()
    if a.bpf_loader and not a.bpf_object:
        ap.error('--bpf-loader needs --bpf-object')
    if a.rmmod_hold is None:
        a.rmmod_hold = a.hold
    # a flow's proxy 4-tuples repeat after 2**22 handshakes (128 addresses x
    # 32768 ports): stay below, so no handshake meets a socket still open
    if (a.handshakes + a.hold + a.rmmod_hold) // a.flows + a.hammer + 100000 >= 1 << 22:
        ap.error('more than about 4 million handshakes per flow: use more --flows')
    return Run(a).main()


if __name__ == '__main__':
    sys.exit(main())
