#!/usr/bin/env python3
"""Benchmarks of the toa role and of TOA itself, each against its baseline in one run.

  python3 bench/bench.py [--reps 3] [--guest debian12] [--only first,hook,scale]

On fresh test-bed guests (testbed/toavm.py; a fresh guest is `down` + `up`, so
the base image's overlay is thrown away) it measures:

first     the role's first converge (playbooks/site.yml, toa_strategy=module)
          against bench/baseline.sh (headers, build, load, autoload file over
          one ssh connection), alternating which goes first, --reps times each;
          after every converge the rerun (time, changed=) and the reboots
          (/proc/sys/kernel/random/boot_id before the first run and after the rerun)
scale     playbooks/verify.yml over 1, 10 and 100 inventory aliases of one
          guest (distinct names, same address, port and key), and the controller's
          CPU seconds, in all and per host; --scale-compare REF runs REF's
          verify.yml too, the two taking turns
hook      accept + getpeername() rates on loopback with TOA unloaded, loaded, and
          unloaded again (an A/A control of the noise), and proxied handshakes with a
          TOA option on every connection (tests/kmod/vm_toa_test.py --bench, in the
          guest), on two time bases: the wall clock of the converged guest (host load
          shows up as noise), and a fresh one-vCPU guest whose clock counts executed
          instructions (QEMU -icount), where runs repeat to within a few tenths of a
          percent and a ratio is a ratio of instructions spent

With --prebuilt, the module route with a prebuilt toa-kmod package joins the
first converge (toa_module_source=prebuilt: no compiler, headers or DKMS on the
guest) in the same alternation, against baseline.sh; playbooks/build.yml builds
the package for the guest's kernel once, before the first of these converges
and outside their timing, as a fleet's mirror would already have it.

With --ebpf, the eBPF route (toa_strategy=ebpf) joins both: its first converge
and rerun on fresh guests of the same kind, in the same alternation, against
the module route's; and a block with its programs attached (no module) in the
hook bench, against unloaded and against the module, on both time bases.

Prints a table (min / median / max over the runs, the ratio of medians to the
baseline and the target) and writes results.json, results.md and every log to
$TOA_CACHE/bench/<UTC time>/.  It asserts nothing about time: a missed target
is a row in the table, not a failure.  At most one guest of its own runs at a
time, and it is always taken down at the end.
"""
import argparse
import datetime
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOAVM = os.path.join(ROOT, 'testbed', 'toavm.py')
BASELINE = os.path.join(ROOT, 'bench', 'baseline.sh')
VM_TEST = os.path.join(ROOT, 'tests', 'kmod', 'vm_toa_test.py')
PACKET = os.path.join(ROOT, 'module_utils', 'toa_packet.py')
BPF_FILES = os.path.join(ROOT, 'roles', 'toa', 'files', 'toa-bpf')
PARTS = ('first', 'scale', 'hook')
# QEMU -icount shift: each guest instruction advances the guest clock by
# 2**shift ns (4 ns: about what this host emulates per instruction)
ICOUNT_SHIFT = 2

# (key, label, unit, target ratio, 'max' if the ratio must stay at or below the
# target, 'min' if at or above it)
TARGETS = {
    'first': (1.3, 'max'),
    'rerun': (0.15, 'max'),
    'hook_conn': (0.97, 'min'),
    'hook_toa': (0.97, 'min'),
    'first_ebpf': (0.2, 'max'),
    'first_prebuilt': (0.25, 'max'),
    'hook_ebpf': (0.98, 'min'),
    'scale100': (3.0, 'max'),
    # issue 17: the controller's CPU per host at 100 aliases within 1.5x of that at 10
    'ctl_per_host100': (1.5, 'max'),
}


# --------------------------------------------------------------------------
# pure logic (unit-tested in tests/unit/test_bench.py)

def summarize(values):
    """min / median / max / n of a list of numbers; None for an empty list."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    return {'min': min(vals), 'median': statistics.median(vals), 'max': max(vals), 'n': len(vals)}


def ratio(value, base):
    """value / base on the medians of two summaries; None when either is missing."""
    if not value or not base or not base['median']:
        return None
    return value['median'] / base['median']


def verdict(value, target):
    """'yes' / 'no' for a ratio against a (limit, 'max'|'min') target, '-' without one."""
    if value is None or target is None:
        return '-'
    limit, how = target
    if how == 'max':
        return 'yes' if value <= limit else 'no'
    return 'yes' if value >= limit else 'no'


def parse_recap(output):
    """PLAY RECAP counters per host: {'host': {'ok': 3, 'changed': 0, ...}}."""
    recap = {}
    seen = False
    for line in output.splitlines():
        if line.startswith('PLAY RECAP'):
            seen = True
            continue
        if not seen:
            continue
        m = re.match(r'^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$', line.strip())
        if m:
            recap[m.group(1)] = {k: int(v) for k, v in re.findall(r'(\w+)=(\d+)', m.group(2))}
    return recap


def parse_measures(output):
    """vm_toa_test.py --bench lines -> {'conn/s without': [runs...], ...}."""
    out = {}
    for line in output.splitlines():
        m = re.match(r'^MEASURE bench (.+?)\s+median [\d.]+\s+\(runs: ([\d., ]*)\)\s*$', line)
        if m:
            out[m.group(1)] = [float(x) for x in m.group(2).split(',') if x.strip()]
    return out


def host_key_args(state):
    """ssh options that check the guest's host key strictly against the
    known_hosts testbed/toavm.py recorded when it started the guest.  Every
    alias reaches the same [127.0.0.1]:PORT, so one file serves them all."""
    known_hosts = state.get('known_hosts')
    if not known_hosts:
        raise ValueError('guest %s has no recorded host key (started by an older toavm.py?): '
                         'recreate it' % state.get('name', '?'))
    if any(c.isspace() for c in known_hosts):
        raise ValueError('unusable known_hosts path %r' % known_hosts)
    return ('-o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null '
            '-o StrictHostKeyChecking=yes' % known_hosts)


def alias_inventory(state, count, prefix, control_dir=None):
    """Inventory (dict, YAML/JSON-ready) of @count distinct names for one guest.

    With @control_dir every alias gets its own ssh ControlPath there, as
    distinct hosts would: otherwise all aliases share one master connection
    (same address, port and user) and sshd's MaxSessions (10) caps the forks.
    """
    if count < 1:
        raise ValueError('alias count must be at least 1, got %d' % count)
    width = len(str(count))
    hosts = {}
    for i in range(1, count + 1):
        name = '%s%0*d' % (prefix, width, i)
        args = host_key_args(state)
        if control_dir:
            args += ' -o ControlPath=%s/%d' % (control_dir, i)
        hosts[name] = {
            'ansible_host': '127.0.0.1',
            'ansible_port': state['port'],
            'ansible_user': 'root',
            'ansible_ssh_private_key_file': state['key'],
            'ansible_ssh_common_args': args,
            'ansible_python_interpreter': state.get('python', '/usr/bin/python3'),
        }
    return {'all': {'hosts': hosts}}


def cpu_busy_seconds(stat_text, hz=100):
    """Busy CPU seconds (all CPUs) from the first line of /proc/stat."""
    for line in stat_text.splitlines():
        fields = line.split()
        if fields and fields[0] == 'cpu':
            ticks = [int(x) for x in fields[1:]]
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)   # idle + iowait
            # guest and guest_nice (9th, 10th) are already counted in user and nice
            return (sum(ticks[:8]) - idle) / float(hz)
    raise ValueError('no "cpu" line in /proc/stat output')


def arm_order(rep, reps, arms=()):
    """The order of the first-converge arms in repetition @rep of @reps:
    baseline and role alternate, the last repetition ending with the role (so
    scale and hook can use its guest); each extra arm goes first in odd
    repetitions and between the two in even ones."""
    order = ('baseline', 'role') if (reps - rep) % 2 == 0 else ('role', 'baseline')
    for arm in arms:
        order = (arm,) + order if rep % 2 else order[:1] + (arm,) + order[1:]
    return order


def build_rows(res):
    """Table rows from the raw results: (figure, runs summary, baseline summary,
    ratio, target, met, note)."""
    rows = []

    def row(figure, unit, value, base, key, note=''):
        target = TARGETS.get(key)
        r = ratio(value, base)
        rows.append({'figure': figure, 'unit': unit, 'value': value, 'baseline': base,
                     'ratio': r, 'target': target, 'met': verdict(r, target), 'note': note})

    def pair_row(figure, pairs, key, note=''):
        """Ratios of runs that ran side by side (same repetition): their
        median is the ratio, judged against the target of @key."""
        s = summarize(pairs)
        if s:
            target = TARGETS.get(key)
            rows.append({'figure': figure, 'unit': 'ratio', 'value': s, 'baseline': None,
                         'ratio': s['median'], 'target': target,
                         'met': verdict(s['median'], target), 'note': note})

    first = res.get('first', {})
    # Each repetition's runs ran back to back on the same machine: when the
    # machine's load changes between repetitions, their ratios are the fairer view.
    by_rep = first.get('by_rep', {})
    base = summarize(first.get('baseline_s', []))
    role = summarize(first.get('role_s', []))
    if base or role:
        row('first converge: baseline.sh', 's', base, None, None)
        row('first converge: role (module route)', 's', role, base, 'first')
        pair_row('first converge: role / baseline.sh of each repetition',
                 [v['role'] / v['baseline'] for _, v in sorted(by_rep.items())
                  if v.get('role') and v.get('baseline')], 'first')
    prebuilt = summarize(first.get('prebuilt_s', []))
    if prebuilt:
        row('first converge: role (module route, prebuilt package)', 's', prebuilt, base,
            'first_prebuilt', 'against baseline.sh (which compiles on the host)')
        pair_row('first converge: prebuilt / baseline.sh of each repetition',
                 [v['prebuilt'] / v['baseline'] for _, v in sorted(by_rep.items())
                  if v.get('prebuilt') and v.get('baseline')], 'first_prebuilt')
        prebuilt_rerun = summarize(first.get('prebuilt_rerun_s', []))
        if prebuilt_rerun:
            row('rerun: role (prebuilt package)', 's', prebuilt_rerun, prebuilt, 'rerun',
                'changed=%s' % ','.join(str(c) for c in first.get('prebuilt_rerun_changed', [])))
    ebpf = summarize(first.get('ebpf_s', []))
    if ebpf:
        row('first converge: role (eBPF route)', 's', ebpf, role, 'first_ebpf',
            'against the module route\'s first converge')
        pair_row('first converge: eBPF route / module route of each repetition',
                 [v['ebpf'] / v['role'] for _, v in sorted(by_rep.items())
                  if v.get('ebpf') and v.get('role')], 'first_ebpf')
        ebpf_rerun = summarize(first.get('ebpf_rerun_s', []))
        if ebpf_rerun:
            row('rerun: role (eBPF route)', 's', ebpf_rerun, ebpf, 'rerun',
                'changed=%s' % ','.join(str(c) for c in first.get('ebpf_rerun_changed', [])))
    rerun = summarize(first.get('rerun_s', []))
    if rerun:
        changed = first.get('rerun_changed', [])
        row('rerun: role', 's', rerun, role, 'rerun',
            'changed=%s' % ','.join(str(c) for c in changed))
    reboots = first.get('reboots', [])
    if reboots:
        row('reboots per host (module route)', 'count', summarize(reboots), None, None,
            'target 0; package/kernel routes: 1 by the role\'s logic, not measured here')
    for res_key, clock in (('hook_icount', 'instruction clock'), ('hook', 'wall clock')):
        hook = res.get(res_key, {})
        if not hook:
            continue

        def rates(key, hook=hook):
            return summarize(hook.get(key, []))

        def pairs(with_key, without_key, hook=hook):
            # the i-th run of each block ran in the same repetition
            return [w / wo for w, wo in zip(hook.get(with_key, []), hook.get(without_key, []))
                    if wo]

        h = 'hook, %s: ' % clock
        if hook.get('entries live with'):
            row(h + 'TOA entries live while loaded (--hook-live)', 'entries',
                rates('entries live with'), None, None)
        if hook.get('conn/s with kprobe'):
            without = rates('conn/s without')
            row(h + 'loopback accept+getpeername, TOA loaded with kprobes', 'conn/s',
                rates('conn/s with kprobe'), without, None)
            row(h + 'proxied handshake, TOA option on every one, kprobes', 'conn/s',
                rates('TUN conn/s TOA with kprobe'), rates('TUN conn/s without'), None)
            row(h + '`getpeername()` loop on a socket with TOA data, kprobes', 'calls/s',
                rates('getpeername/s TOA socket with kprobe'),
                rates('getpeername/s plain without'), None)
        without = rates('conn/s without')
        row(h + 'loopback accept+getpeername, TOA unloaded', 'conn/s', without, None, None)
        row(h + 'same, TOA loaded', 'conn/s', rates('conn/s with'), without, 'hook_conn')
        row(h + 'same, unloaded again (A/A control)', 'conn/s', rates('conn/s without again'),
            without, None, 'how far two identical runs land apart')
        pair_row(h + 'loopback, loaded / unloaded of each repetition',
                 pairs('conn/s with', 'conn/s without'), 'hook_conn')
        pair_row(h + 'loopback, unloaded again / unloaded (noise)',
                 pairs('conn/s without again', 'conn/s without'), None)
        tun_without = rates('TUN conn/s without')
        row(h + 'proxied handshake, TOA unloaded', 'conn/s', tun_without, None, None)
        row(h + 'proxied handshake, TOA loaded, no option', 'conn/s',
            rates('TUN conn/s with'), tun_without, None)
        row(h + 'proxied handshake, TOA option on every one', 'conn/s',
            rates('TUN conn/s TOA with'), tun_without, 'hook_toa')
        pair_row(h + 'TOA option on every handshake / unloaded, each repetition',
                 pairs('TUN conn/s TOA with', 'TUN conn/s without'), 'hook_toa')
        if hook.get('conn/s with ebpf'):
            row(h + 'same, eBPF route attached (no module)', 'conn/s', rates('conn/s with ebpf'),
                without, 'hook_ebpf')
            pair_row(h + 'loopback, eBPF route / unloaded of each repetition',
                     pairs('conn/s with ebpf', 'conn/s without'), 'hook_ebpf')
            pair_row(h + 'loopback, eBPF route / module of each repetition',
                     pairs('conn/s with ebpf', 'conn/s with'), None)
            row(h + 'proxied handshake, TOA option on every one, eBPF route', 'conn/s',
                rates('TUN conn/s TOA with ebpf'), tun_without, 'hook_ebpf')
            pair_row(h + 'TOA option on every handshake, eBPF route / unloaded, each repetition',
                     pairs('TUN conn/s TOA with ebpf', 'TUN conn/s without'), 'hook_ebpf')
            pair_row(h + 'TOA option on every handshake, eBPF route / module, each repetition',
                     pairs('TUN conn/s TOA with ebpf', 'TUN conn/s TOA with'), None)
            row(h + 'getpeername() loop on a TOA socket, eBPF route', 'calls/s',
                rates('getpeername/s TOA socket with ebpf'),
                rates('getpeername/s plain without'), None)
        gp_without = rates('getpeername/s plain without')
        row(h + 'getpeername() loop, TOA unloaded', 'calls/s', gp_without, None, None)
        row(h + 'getpeername() loop, TOA loaded', 'calls/s',
            rates('getpeername/s plain with'), gp_without, None)
        row(h + 'getpeername() loop on a TOA socket', 'calls/s',
            rates('getpeername/s TOA socket with'), gp_without, None)
    scale_rows(row, res, '')
    ref = res.get('config', {}).get('scale_compare')
    if ref:
        scale_rows(row, res, '_ref', ' of %s' % ref)
    return rows


def scale_rows(row, res, arm, of=''):
    """The scale part's rows for the tree under test (@arm '') or the compared ref
    (@arm '_ref', @of ' of REF'): wall time, the controller's CPU, and that per host."""
    scale = res.get('scale' + arm, {})
    busy = res.get('scale%s_guest_busy' % arm, {})
    ctl = res.get('scale%s_controller_cpu' % arm, {})
    one = summarize(scale.get('1', []))
    ctl_one = summarize(ctl.get('1', []))

    def aliases(count):
        return '%s alias%s' % (count, '' if count == '1' else 'es')
    for count in sorted(scale, key=int):
        s = summarize(scale[count])
        b = summarize(busy.get(count, []))
        row('verify.yml%s over %s' % (of, aliases(count)), 's', s,
            None if count == '1' else one, 'scale100' if count == '100' and not arm else None,
            'forks %s%s' % (res.get('config', {}).get('forks_for', {}).get(count, '?'),
                            '; guest CPU busy %s s (median)' % _num(b['median']) if b else ''))
    # what the controller itself spends: the part that does not shrink when
    # every alias is a host of its own
    for count in sorted(ctl, key=int):
        row('controller CPU, verify.yml%s over %s' % (of, aliases(count)),
            'CPU s', summarize(ctl[count]), None if count == '1' else ctl_one, None,
            'ansible-playbook and its forks on this machine')
    # and per host, against 10 aliases: what grows with the fleet
    per_host = dict((count, [v / int(count) for v in values]) for count, values in ctl.items())
    ten = summarize(per_host.get('10', []))
    for count in sorted(per_host, key=int):
        row('controller CPU per host, verify.yml%s over %s' % (of, aliases(count)), 'CPU s',
            summarize(per_host[count]), ten if int(count) > 10 else None,
            'ctl_per_host100' if count == '100' else None, 'ratio: to 10 aliases')


def _num(v):
    if v is None:
        return '-'
    if v >= 100:
        return '%.0f' % v
    return '%.1f' % v if v >= 10 else '%.2f' % v


def render_markdown(rows):
    """The results table as Markdown."""
    lines = ['| figure | unit | n | min | median | max | ratio to baseline | target | met | note |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        v = r['value'] or {}
        # ratios in the 0.9x range need their third digit
        fmt = (lambda x: '-' if x is None else '%.3f' % x) if r['unit'] == 'ratio' else _num
        target = '-'
        if r['target']:
            target = ('<= %g' if r['target'][1] == 'max' else '>= %g') % r['target'][0]
        lines.append('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
            r['figure'], r['unit'], v.get('n', 0), fmt(v.get('min')), fmt(v.get('median')),
            fmt(v.get('max')), '-' if r['ratio'] is None else '%.3f' % r['ratio'], target,
            r['met'], r['note']))
    return '\n'.join(lines) + '\n'


# --------------------------------------------------------------------------
# the run

class Bench:
    def __init__(self, args, outdir):
        self.a = args
        self.out = outdir
        self.res = {'config': {'reps': args.reps, 'scale_reps': args.scale_reps,
                               'guest': args.guest, 'aliases': args.aliases,
                               'forks': args.forks, 'hook_reps': args.hook_reps,
                               'rate_n': args.rate_n, 'forks_for': {},
                               'scale_compare': args.scale_compare or None},
                    'first': {'baseline_s': [], 'role_s': [], 'rerun_s': [], 'rerun_changed': [],
                              'reboots': [], 'boots_s': []},
                    'errors': []}
        self.guest = args.use_running or args.prefix + 'g'
        self.state = None
        if args.use_running:
            path = os.path.join(args.cache, 'run', args.use_running, 'state.json')
            if not os.path.exists(path):
                sys.exit('bench: no running guest %s (no %s): start it with testbed/toavm.py up'
                         % (args.use_running, path))
            with open(path) as f:
                self.state = json.load(f)
        self.nlog = 0
        self.kmod_vars_file = None
        self.last_cpu = 0.0      # CPU seconds of the last run() and its descendants
        # per-alias ssh control sockets; short, as a unix socket path has at most 107 bytes
        self.control_dir = '/tmp/toabench-cp.%d' % os.getpid()

    def log(self, msg):
        print('[%s] %s' % (time.strftime('%H:%M:%S'), msg), flush=True)

    def run(self, argv, tag, timeout=3600, env=None, stdin=None):
        """Run a command, keep its output in a log file; return (rc, output, seconds)."""
        self.nlog += 1
        path = os.path.join(self.out, '%02d-%s.log' % (self.nlog, tag))
        t0 = time.monotonic()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            # stdin from /dev/null: ansible-playbook refuses a non-blocking stdin
            # (which a backgrounded bench would pass on)
            p = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=timeout, env=env,
                               **({'input': stdin} if stdin is not None
                                  else {'stdin': subprocess.DEVNULL}))
            rc, text = p.returncode, p.stdout
        except subprocess.TimeoutExpired as exc:
            text = exc.stdout or ''
            if isinstance(text, bytes):
                text = text.decode('utf-8', 'replace')
            rc, text = 124, text + '\n[bench] timed out after %d s\n' % timeout
        secs = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU of the command and of every descendant it waited for (the
        # forks, their ssh clients; not the ssh masters, which detach)
        self.last_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        with open(path, 'w') as f:
            f.write('$ %s\n%s\n[bench] rc=%d in %.1f s, %.1f CPU s on this machine\n'
                    % (shlex.join(argv), text, rc, secs, self.last_cpu))
        return rc, text, secs

    def error(self, what, text):
        tail = '\n'.join(text.strip().splitlines()[-15:])
        self.res['errors'].append('%s: %s' % (what, tail))
        self.log('ERROR %s (see the logs in %s)\n%s' % (what, self.out, tail))

    # guests ------------------------------------------------------------------
    def down(self):
        self.run([sys.executable, TOAVM, 'down', self.guest], 'down', timeout=300)
        self.state = None

    def fresh_guest(self, icount=None):
        """A new guest from the base image; with @icount (a shift), one whose
        clock counts instructions instead (one vCPU: QEMU's instruction
        counting does not bring up a second one here)."""
        self.down()
        argv = [sys.executable, TOAVM, 'up', self.guest, '--guest', self.a.guest,
                '--boot-timeout', str(self.a.boot_timeout)]
        argv += ['--smp', '1', '--icount', str(icount)] if icount is not None \
            else ['--smp', str(self.a.smp)]
        rc, text, secs = self.run(argv, 'up', timeout=self.a.boot_timeout + 300)
        if rc != 0:
            raise RuntimeError('toavm up %s failed:\n%s' % (self.guest, text[-2000:]))
        self.state = json.loads(text.strip().splitlines()[-1])
        self.res['first']['boots_s'].append(round(secs, 1))
        self.log('guest %s up in %.0f s (port %s)' % (self.guest, secs, self.state['port']))

    def ssh(self, cmd, tag, timeout=600):
        return self.run([sys.executable, TOAVM, 'ssh', self.guest, '--', cmd], tag,
                        timeout=timeout)

    def boot_id(self):
        rc, text, _ = self.ssh('cat /proc/sys/kernel/random/boot_id', 'boot-id', timeout=120)
        return text.strip().splitlines()[-1] if rc == 0 and text.strip() else None

    def inventory(self, count, prefix):
        path = os.path.join(self.out, 'inventory-%d.json' % count)
        os.makedirs(self.control_dir, mode=0o700, exist_ok=True)
        with open(path, 'w') as f:
            json.dump(alias_inventory(self.state, count, prefix, self.control_dir), f, indent=1)
        return path

    def guest_busy(self):
        """Busy CPU seconds of the guest so far (None if unreadable)."""
        for attempt in range(3):
            # right after the sshd reload a new connection may be reset: try again
            if attempt:
                time.sleep(3)
            rc, text, _ = self.ssh('head -1 /proc/stat', 'guest-cpu', timeout=120)
            if rc != 0:
                continue
            try:
                return cpu_busy_seconds(text)
            except ValueError:
                continue
        return None

    def playbook(self, playbook, inventory, tag, extra=(), forks=None, root=ROOT):
        """A playbook of the tree at @root (this one, or --scale-compare's), with its
        ansible.cfg (whose library, module_utils and roles paths are relative to it)."""
        argv = [os.path.join(self.a.venv, 'bin', 'ansible-playbook'), '-i', inventory,
                os.path.join(root, 'playbooks', playbook)] + list(extra)
        if forks:
            argv += ['--forks', str(forks)]
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(root, 'ansible.cfg'),
                   ANSIBLE_NOCOLOR='1',
                   # TASKTIME lines at the end of each log: where the time went
                   ANSIBLE_CALLBACK_PLUGINS=os.path.join(ROOT, 'bench', 'callback_plugins'),
                   ANSIBLE_CALLBACKS_ENABLED='task_times')
        return self.run(argv, tag, env=env)

    # figures -----------------------------------------------------------------
    def one_baseline(self, rep):
        self.fresh_guest()
        rc, text, secs = self.run(['bash', BASELINE, str(self.state['port']), self.state['key'],
                                   self.state['known_hosts']],
                                  'baseline-%d' % rep)
        if rc != 0:
            self.error('baseline.sh, repetition %d' % rep, text)
            return
        self.res['first']['baseline_s'].append(round(secs, 2))
        self.res['first'].setdefault('by_rep', {}).setdefault(str(rep), {})['baseline'] = secs
        self.log('baseline.sh: %.1f s' % secs)

    def one_role(self, rep):
        self.fresh_guest()
        inv = self.inventory(1, self.a.prefix + 'host')
        before = self.boot_id()
        extra = ['-e', 'toa_strategy=module']
        rc, text, secs = self.playbook('site.yml', inv, 'converge-%d' % rep, extra)
        if rc != 0:
            self.error('first converge, repetition %d' % rep, text)
            return
        self.res['first']['role_s'].append(round(secs, 2))
        self.res['first'].setdefault('by_rep', {}).setdefault(str(rep), {})['role'] = secs
        rc2, text2, secs2 = self.playbook('site.yml', inv, 'rerun-%d' % rep, extra)
        if rc2 != 0:
            self.error('rerun, repetition %d' % rep, text2)
            return
        changed = sum(h.get('changed', 0) for h in parse_recap(text2).values())
        self.res['first']['rerun_s'].append(round(secs2, 2))
        self.res['first']['rerun_changed'].append(changed)
        after = self.boot_id()
        if before and after:
            self.res['first']['reboots'].append(0 if before == after else 1)
        self.log('role: first converge %.1f s, rerun %.1f s (changed=%d), boot_id %s'
                 % (secs, secs2, changed, 'unchanged' if before == after else 'CHANGED'))

    def kmod_vars(self):
        """The fleet variables of a prebuilt toa-kmod package for the running
        guest's kernel, built (once per run) by playbooks/build.yml into the test
        bed's mirror; not timed: a fleet's mirror has it before the converge."""
        if self.kmod_vars_file:
            return self.kmod_vars_file
        rc, text, _ = self.ssh('uname -r', 'uname', timeout=120)
        release = text.strip().splitlines()[-1] if rc == 0 and text.strip() else ''
        if not release:
            raise RuntimeError('cannot read the guest\'s kernel release:\n' + text[-500:])
        path = os.path.join(self.out, 'kmod-vars.yml')
        argv = [os.path.join(self.a.venv, 'bin', 'ansible-playbook'),
                '-i', os.path.join(ROOT, 'inventories', 'local', 'toavm_guests.py'),
                os.path.join(ROOT, 'playbooks', 'build.yml'),
                '-e', json.dumps({'toa_build_kmod_releases': [release]}),
                '-e', 'toa_build_vars_file=' + path]
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
        rc, text, secs = self.run(argv, 'build-kmod', env=env)
        if rc != 0 or not os.path.exists(path):
            raise RuntimeError('build.yml for %s failed:\n%s' % (release, text[-2000:]))
        self.res['first']['kmod_build_s'] = round(secs, 1)
        self.log('build.yml: toa-kmod-%s in %.0f s (not timed as part of a converge)'
                 % (release, secs))
        self.kmod_vars_file = path
        return path

    def one_prebuilt(self, rep):
        """The module route from a prebuilt package, first converge and rerun,
        on a fresh guest of the same kind."""
        self.fresh_guest()
        self.route_arm(rep, 'prebuilt', 'prebuilt package',
                       ['-e', 'toa_strategy=module', '-e', 'toa_module_source=prebuilt',
                        '-e', '@' + self.kmod_vars()],
                       must_say='installing the prebuilt TOA module package')

    def one_ebpf(self, rep):
        """The eBPF route's first converge and rerun on a fresh guest of the same kind."""
        self.fresh_guest()
        self.route_arm(rep, 'ebpf', 'eBPF route', ['-e', 'toa_strategy=ebpf'])

    def route_arm(self, rep, key, label, extra, must_say=None):
        """First converge and rerun of one extra arm on the guest just started:
        times under first[KEY_s] and by_rep[rep][KEY], the rerun under
        first[KEY_rerun_s] and its changed= under first[KEY_rerun_changed].
        With @must_say, the converge's output must contain it (the path taken)."""
        inv = self.inventory(1, self.a.prefix + 'host')
        rc, text, secs = self.playbook('site.yml', inv, 'converge-%s-%d' % (key, rep), extra)
        if rc != 0:
            self.error('first converge (%s), repetition %d' % (label, rep), text)
            return
        if must_say and must_say not in ' '.join(text.split()):
            self.error('first converge (%s), repetition %d' % (label, rep),
                       'the converge did not take the expected path: no "%s"' % must_say)
            return
        first = self.res['first']
        first.setdefault(key + '_s', []).append(round(secs, 2))
        first.setdefault('by_rep', {}).setdefault(str(rep), {})[key] = secs
        rc2, text2, secs2 = self.playbook('site.yml', inv, 'rerun-%s-%d' % (key, rep), extra)
        if rc2 != 0:
            self.error('rerun (%s), repetition %d' % (label, rep), text2)
            return
        changed = sum(h.get('changed', 0) for h in parse_recap(text2).values())
        first.setdefault(key + '_rerun_s', []).append(round(secs2, 2))
        first.setdefault(key + '_rerun_changed', []).append(changed)
        self.log('%s: first converge %.1f s, rerun %.1f s (changed=%d)'
                 % (label, secs, secs2, changed))

    def part_first(self):
        arms = [arm for arm in ('prebuilt', 'ebpf') if getattr(self.a, arm)]
        for rep in range(1, self.a.reps + 1):
            for kind in arm_order(rep, self.a.reps, arms):
                try:
                    getattr(self, 'one_' + kind)(rep)
                except RuntimeError as exc:
                    self.error('%s repetition %d' % (kind, rep), str(exc))
                self.save()

    def ensure_converged(self):
        """A guest with the role converged on it (the last one, or a fresh one)."""
        if self.state:
            rc, _, _ = self.ssh('grep -q "^toa " /proc/modules && test -e /etc/modules-load.d/toa.conf'
                                ' && dkms status toa | grep -q installed', 'check-converged')
            if rc == 0:
                return True
        if not self.a.use_running:
            self.fresh_guest()
        return self.converge('converge-for-scale')

    def converge(self, tag):
        inv = self.inventory(1, self.a.prefix + 'host')
        rc, text, _ = self.playbook('site.yml', inv, tag, ['-e', 'toa_strategy=module'])
        if rc != 0:
            self.error('converge before scale/hook (%s)' % tag, text)
            return False
        return True

    def part_scale(self):
        # One guest stands in for up to 100 hosts: let its sshd take as many
        # connections at once as the forks open (the defaults drop new ones
        # beyond 10 starting and cap sessions per connection at 10).
        rc, text, _ = self.ssh(
            'printf "MaxStartups 200:30:400\\nMaxSessions 200\\n" '
            '>/etc/ssh/sshd_config.d/toabench.conf && sshd -t && systemctl reload ssh',
            'sshd-limits')
        if rc != 0:
            self.error('raise the guest sshd limits for the scale part', text)
        arms = [('', ROOT)]
        if self.a.scale_compare:
            ref = self.ref_tree()
            if ref is None:
                return
            arms.append(('_ref', ref))
        for rep in range(1, self.a.scale_reps + 1):
            for count in self.a.aliases:
                # side by side: the two trees take turns going first
                for arm, root in (arms if rep % 2 else arms[::-1]):
                    self.one_scale(rep, count, arm, root)
                    self.save()

    def one_scale(self, rep, count, arm, root):
        """verify.yml of the tree at @root over @count aliases, under the keys scale@arm,
        scale@arm_guest_busy and scale@arm_controller_cpu."""
        forks = min(count, self.a.forks)
        self.res['config']['forks_for'][str(count)] = forks
        inv = self.inventory(count, self.a.prefix + 'alias')
        label = 'verify.yml%s over %d aliases' % (' of ' + self.a.scale_compare if arm else '', count)
        before = self.guest_busy()
        rc, text, secs = self.playbook('verify.yml', inv, 'verify%s-%d-%d' % (arm, count, rep),
                                       forks=forks, root=root)
        ctl = self.last_cpu
        after = self.guest_busy()
        if before is not None and after is not None:
            self.res.setdefault('scale%s_guest_busy' % arm, {}).setdefault(str(count), []).append(
                round(after - before, 1))
        recap = parse_recap(text)
        bad = [h for h, c in recap.items() if c.get('failed') or c.get('unreachable')]
        if rc != 0 or len(recap) != count or bad:
            self.error('%s, repetition %d (%d hosts in the recap, failed or unreachable: %s)'
                       % (label, rep, len(recap), bad[:5]), text)
            return
        self.res.setdefault('scale' + arm, {}).setdefault(str(count), []).append(round(secs, 2))
        self.res.setdefault('scale%s_controller_cpu' % arm, {}).setdefault(
            str(count), []).append(round(ctl, 1))
        busy = self.res.get('scale%s_guest_busy' % arm, {}).get(str(count), ['?'])[-1]
        self.log('%s (forks %d): %.1f s, guest CPU busy %s s, controller CPU %.1f s'
                 % (label, forks, secs, busy, ctl))

    def ref_tree(self):
        """A detached worktree of --scale-compare's ref in the results directory (removed
        at the end); None, with the error recorded, when git cannot make one."""
        path = os.path.join(self.out, 'ref-tree')
        if os.path.isdir(path):
            return path
        rc, text, _ = self.run(['git', '-C', ROOT, 'worktree', 'add', '--detach', path,
                                self.a.scale_compare + '^{commit}'], 'ref-tree', timeout=300)
        if rc != 0:
            self.error('git worktree of %s for --scale-compare' % self.a.scale_compare, text)
            return None
        rc, text, _ = self.run(['git', '-C', path, 'rev-parse', 'HEAD'], 'ref-commit', timeout=60)
        self.res['config']['scale_compare_commit'] = text.strip().splitlines()[-1] if rc == 0 else '?'
        return path

    def part_hook(self, clock):
        """The hook bench on the guest converged by the role: 'wall' on the
        current guest, 'icount' on a fresh one with an instruction clock."""
        key, n = ('hook', self.a.rate_n) if clock == 'wall' else ('hook_icount', self.a.icount_n)
        if clock == 'icount':
            try:
                self.fresh_guest(icount=ICOUNT_SHIFT)
            except RuntimeError as exc:
                self.error('instruction-clock guest', str(exc))
                return
            if not self.converge('converge-for-icount-hook'):
                return
        # vm_toa_test.py imports the packet code from beside itself in the guest.
        for source, name in ((VM_TEST, 'vm_toa_test.py'), (PACKET, 'toa_packet.py')):
            rc, text, _ = self.run([sys.executable, TOAVM, 'copy-to', self.guest, source,
                                    '/root/' + name], 'copy-vm-test')
            if rc != 0:
                self.error('copy ' + name, text)
                return
        bpf = ''
        if self.a.ebpf:
            # the route's committed object and loader, the distribution's bpftool
            for name in ('toa.bpf.o', 'toa-bpf'):
                rc, text, _ = self.run([sys.executable, TOAVM, 'copy-to', self.guest,
                                        os.path.join(BPF_FILES, name), '/root/' + name],
                                       'copy-bpf')
                if rc != 0:
                    self.error('copy ' + name, text)
                    return
            rc, text, _ = self.ssh('command -v bpftool >/dev/null || { apt-get update -qq && '
                                   'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq '
                                   'bpftool; }', 'install-bpftool')
            if rc != 0:
                self.error('install bpftool', text)
                return
            bpf = ' --bench-bpf /root/toa-bpf /root/toa.bpf.o'
        cmd = ('ko=$(modinfo -n toa) && nproc && python3 /root/vm_toa_test.py --ko "$ko" '
               '--bench %d --rate-n %d --bench-live %d%s%s; rc=$?; modprobe toa; exit $rc'
               % (self.a.hook_reps, n, self.a.hook_live,
                  ' --bench-kprobe' if self.a.hook_kprobe else '', bpf))
        rc, text, secs = self.ssh(cmd, 'hook-' + clock, timeout=3600)
        measures = parse_measures(text)
        if rc != 0 or not measures:
            self.error('hook bench (%s clock)' % clock, text)
            return
        self.res[key] = measures
        self.res['config']['guest_vcpus_' + clock] = text.strip().splitlines()[0]
        self.log('hook bench (%s clock): %.0f s' % (clock, secs))

    def save(self):
        rows = build_rows(self.res)
        with open(os.path.join(self.out, 'results.json'), 'w') as f:
            json.dump({'results': self.res, 'rows': rows}, f, indent=1)
        md = render_markdown(rows)
        with open(os.path.join(self.out, 'results.md'), 'w') as f:
            f.write(md)
        return md

    def main(self):
        t0 = time.monotonic()
        try:
            if 'first' in self.a.only:
                self.part_first()
            wall = 'hook' in self.a.only and self.a.hook_clock in ('wall', 'both')
            if ('scale' in self.a.only or wall) and self.ensure_converged():
                if wall:      # the quick one first
                    self.part_hook('wall')
                if 'scale' in self.a.only:
                    self.part_scale()
            # last: it replaces the guest with one of its own
            if 'hook' in self.a.only and self.a.hook_clock in ('icount', 'both'):
                self.part_hook('icount')
        finally:
            if not self.a.keep and not self.a.use_running:
                self.down()
            self.res['config']['wall_s'] = round(time.monotonic() - t0, 1)
            md = self.save()
            if os.path.isdir(os.path.join(self.out, 'ref-tree')):
                self.run(['git', '-C', ROOT, 'worktree', 'remove', '--force',
                          os.path.join(self.out, 'ref-tree')], 'ref-tree-remove', timeout=300)
            # the per-alias ssh control sockets (their masters expire by themselves)
            shutil.rmtree(self.control_dir, ignore_errors=True)
        print('\n' + md)
        print('bench: %.0f s in all; results and logs in %s' % (time.monotonic() - t0, self.out))
        if self.res['errors']:
            print('bench: %d step(s) failed, see above and the logs' % len(self.res['errors']))
            return 1
        return 0


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--reps', type=int, default=3, help='repetitions of each timed figure (3)')
    ap.add_argument('--guest', default='debian12', help='toavm.py guest recipe (debian12)')
    ap.add_argument('--smp', type=int, default=2, help='vCPUs of the guest (2)')
    ap.add_argument('--boot-timeout', type=int, default=1200,
                    help='seconds a guest may take to boot (1200: TCG on a busy machine is slow)')
    ap.add_argument('--prefix', default='toabench-', help='name prefix of the guest and aliases')
    ap.add_argument('--aliases', default='1,10,100',
                    help='comma-separated inventory sizes for verify.yml (1,10,100)')
    ap.add_argument('--scale-reps', type=int, default=0,
                    help='repetitions of each verify.yml run (default: --reps)')
    ap.add_argument('--scale-compare', default='', metavar='REF',
                    help='scale: also run verify.yml of git REF (a detached worktree of it, with '
                         'its own ansible.cfg, roles and modules) over the same aliases, the two '
                         'taking turns; rows "... of REF"')
    ap.add_argument('--forks', type=int, default=20,
                    help='upper bound on forks for verify.yml (20, as in ansible.cfg; every '
                         'alias has its own ssh connection)')
    ap.add_argument('--prebuilt', action='store_true',
                    help='first: also the module route from a prebuilt toa-kmod package')
    ap.add_argument('--ebpf', action='store_true',
                    help='also the eBPF route: its first converge (fresh guests, alternating) '
                    'against the module route\'s, and a block with its programs attached in '
                    'the hook bench (against unloaded and against the module)')
    ap.add_argument('--hook-reps', type=int, default=5, help='alternating runs of the hook bench (5)')
    ap.add_argument('--hook-kprobe', action='store_true',
                    help='hook bench: also the module with hook_mode=kprobe, side by side')
    ap.add_argument('--hook-live', type=int, default=0, metavar='N',
                    help='TOA connections held open in every block of the hook bench, as '
                         'entries when loaded (a realistic table); 0: one')
    ap.add_argument('--rate-n', type=int, default=6000,
                    help='connections per hook bench run (6000: a few seconds each on an idle '
                         'emulated guest; shorter runs are mostly noise)')
    ap.add_argument('--hook-clock', default='both', choices=('both', 'icount', 'wall'),
                    help='time base of the hook bench: an instruction-counted guest clock '
                         '(a fresh one-vCPU guest whose timings do not depend on host load), '
                         'the wall clock of the converged guest, or both (both)')
    ap.add_argument('--icount-n', type=int, default=2000,
                    help='connections per hook bench run on the instruction clock (2000: runs '
                         'repeat to within 0.3%% there)')
    ap.add_argument('--only', default=','.join(PARTS), help='parts to run: first,scale,hook')
    ap.add_argument('--out', default='', help='results directory ($TOA_CACHE/bench/<time>)')
    ap.add_argument('--keep', action='store_true', help='leave the last guest running')
    ap.add_argument('--use-running', default='', metavar='NAME',
                    help='measure scale and hook on this running guest (converged or not) '
                         'instead of a fresh one; it is left running. Not with the part first')
    a = ap.parse_args(argv)
    problems = []
    if a.reps < 1:
        problems.append('--reps must be at least 1')
    a.scale_reps = a.scale_reps or a.reps
    if a.scale_reps < 1:
        problems.append('--scale-reps must be at least 1')
    try:
        a.aliases = [int(x) for x in a.aliases.split(',') if x.strip()]
    except ValueError:
        problems.append('--aliases takes comma-separated whole numbers, e.g. 1,10,100')
        a.aliases = []
    if any(n < 1 for n in a.aliases):
        problems.append('--aliases: every count must be at least 1')
    a.only = [x.strip() for x in a.only.split(',') if x.strip()]
    unknown = [x for x in a.only if x not in PARTS]
    if unknown:
        problems.append('--only: unknown part(s) %s; choose from %s' % (', '.join(unknown),
                                                                      ', '.join(PARTS)))
    if a.use_running and 'first' in a.only:
        problems.append('--use-running measures only scale and hook: add --only scale,hook')
    if a.use_running and 'hook' in a.only and a.hook_clock != 'wall':
        problems.append('--use-running cannot change the running guest\'s clock: '
                        'add --hook-clock wall')
    if a.forks < 1:
        problems.append('--forks must be at least 1')
    if a.icount_n < 100 or a.rate_n < 100:
        problems.append('--icount-n must be at least 100 and --rate-n too: fewer connections '
                        'measure mostly the start of a run')
    if problems:
        ap.error('; '.join(problems))
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    cache = os.environ.get('TOA_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'toa-fleet')
    a.cache = cache
    a.venv = os.environ.get('TOA_VENV') or os.path.join(cache, 'venv')
    if not os.path.exists(os.path.join(a.venv, 'bin', 'ansible-playbook')):
        sys.exit('bench: no ansible-playbook in %s: run scripts/setup.sh or set TOA_VENV' % a.venv)
    out = a.out or os.path.join(cache, 'bench', datetime.datetime.utcnow().strftime('%Y%m%dT%H%M%SZ'))
    os.makedirs(out, exist_ok=True)
    return Bench(a, out).main()


if __name__ == '__main__':
    sys.exit(main())
