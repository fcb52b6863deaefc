"""Host integration test of library/toa_probe.py: runs the real probe on this machine.

Needs root, /dev/net/tun, `ip` and network namespaces; skipped otherwise. The host has no
TOA module, so every probe must see the real proxy address and expect=rewritten must fail:
a probe that fakes its answer cannot pass. After every run (including forced timeouts) no
TUN device, named netns, namespace-holding process or probe process may remain.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(ROOT, 'library', 'toa_probe.py')
CACHE = os.environ.get('TOA_CACHE', os.path.expanduser('~/.cache/toa-fleet'))
VENV = os.environ.get('TOA_VENV', os.path.join(CACHE, 'venv'))
VENV_LEGACY = os.environ.get('TOA_VENV_LEGACY', os.path.join(CACHE, 'venv-legacy'))
MARKERS = ('toa_probe', 'toaprobe')


def _skip_reason():
    if not sys.platform.startswith('linux'):
        return 'the probe needs Linux'
    if os.geteuid() != 0:
        return 'the probe needs root (network namespace + TUN device); run the host tests as root'
    if not os.path.exists('/dev/net/tun'):
        return '/dev/net/tun is missing (no TUN support here): cannot run the probe'
    if not shutil.which('ip'):
        return 'the ip command (iproute2) is missing'
    if shutil.which('unshare'):
        check = subprocess.run(['unshare', '-n', 'true'], capture_output=True, text=True)
        if check.returncode != 0:
            return 'network namespaces are not available here: %s' % check.stderr.strip()
    return None


SKIP = _skip_reason()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or '')


def _read(path, mode='r'):
    try:
        with open(path, mode) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def toa_module_loaded():
    """A loaded or built-in TOA module shows up in /sys/module (also without /proc/modules)."""
    if os.path.isdir('/sys/module/toa'):
        return True
    text = _read('/proc/modules') or ''
    return any(line.split()[0] == 'toa' for line in text.splitlines() if line.strip())


needs_no_toa = pytest.mark.skipif(
    SKIP is None and toa_module_loaded(),
    reason='a toa kernel module is loaded on this host; the no-module assertions do not apply')


# ---------------------------------------------------------------------------
# leftovers
# ---------------------------------------------------------------------------

def _processes():
    """pid -> (cmdline, ppid, netns link) of every live process."""
    found = {}
    for entry in glob.glob('/proc/[0-9]*'):
        pid = int(os.path.basename(entry))
        raw = _read(os.path.join(entry, 'cmdline'), 'rb')
        stat = _read(os.path.join(entry, 'stat'))
        if raw is None or stat is None:
            continue
        try:
            netns = os.readlink(os.path.join(entry, 'ns', 'net'))
        except OSError:
            netns = None
        ppid = int(stat.rsplit(')', 1)[1].split()[1])
        state = stat.rsplit(')', 1)[1].split()[0]
        found[pid] = (raw.replace(b'\0', b' ').decode('utf-8', 'replace').strip(), ppid, netns, state)
    return found


def snapshot():
    links = subprocess.run(['ip', '-o', 'link', 'show'], capture_output=True, text=True,
                           check=True).stdout
    netns = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout
    procs = _processes()
    return {
        'links': sorted(line.split(':')[1].strip() for line in links.splitlines()),
        'named_netns': sorted(netns.split()),
        'procs': procs,
        'netns_inodes': set(info[2] for info in procs.values() if info[2]),
    }


def ours(info):
    cmdline, ppid = info[0], info[1]
    return ppid == os.getpid() or any(marker in cmdline for marker in MARKERS)


def assert_nothing_left(before, settle=2.0):
    """No TUN device, named netns, probe process or probe-held netns appeared since before."""
    deadline = time.time() + settle
    while True:
        after = snapshot()
        problems = []
        new_links = sorted(set(after['links']) - set(before['links']))
        if [name for name in new_links if 'toaprobe' in name] or any(
                'toaprobe' in name for name in after['links']):
            problems.append('TUN device left on the host: %s' % new_links)
        if after['named_netns'] != before['named_netns']:
            problems.append('named netns changed: %s -> %s' % (before['named_netns'], after['named_netns']))
        stray = dict((pid, info) for pid, info in after['procs'].items()
                     if pid != os.getpid() and pid not in before['procs'] and ours(info))
        if stray:
            problems.append('probe processes left: %s' % stray)
        new_ns = after['netns_inodes'] - before['netns_inodes']
        holders = dict((pid, info) for pid, info in after['procs'].items()
                       if info[2] in new_ns and ours(info))
        if holders:
            problems.append('new network namespaces held by probe processes: %s' % holders)
        if not problems or time.time() > deadline:
            break
        time.sleep(0.1)
    assert not problems, '; '.join(problems)


@pytest.fixture
def clean_host():
    before = snapshot()
    yield before
    assert_nothing_left(before)


# ---------------------------------------------------------------------------
# running the module
# ---------------------------------------------------------------------------

# The module imports ansible.module_utils.toa_packet, which ansiballz ships with it on a
# real run. Run as a plain file, module_utils/toa_packet.py is registered under that name
# first (a Python 3 prologue: the Python 2.7 run goes through Ansible).
REGISTER_MODULE_UTILS = textwrap.dedent('''
    import importlib.util, os, sys
    import ansible.module_utils

    def register_module_utils(root):
        for short in ('toa_packet', 'toa_child', 'toa_probe_run'):
            name = 'ansible.module_utils.' + short
            spec = importlib.util.spec_from_file_location(
                name, os.path.join(root, 'module_utils', short + '.py'))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[name] = module
            setattr(ansible.module_utils, short, module)
''')
RUN_MODULE = REGISTER_MODULE_UTILS + textwrap.dedent('''
    import runpy
    register_module_utils(%r)
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name='__main__')
''') % ROOT


def run_direct(args, python=None, timeout=60):
    """Run the module file as Ansible would on the target, with a JSON args file."""
    python = python or sys.executable
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, handle)
    try:
        proc = subprocess.run([python, '-c', RUN_MODULE, MODULE, handle.name], capture_output=True,
                              text=True, timeout=timeout, cwd=ROOT)
    finally:
        os.unlink(handle.name)
    assert proc.stdout.strip(), 'no module output; stderr: %s' % proc.stderr
    result = json.loads(proc.stdout)
    result['_rc'] = proc.returncode
    result['_stderr'] = proc.stderr
    return result


def run_ansible(args, venv=VENV, interpreter=None, check=False, env_extra=None):
    """Run the module through `ansible localhost -m toa_probe`, return the host's result."""
    ansible = os.path.join(venv, 'bin', 'ansible')
    if not os.path.exists(ansible):
        pytest.skip('no ansible at %s (run scripts/setup.sh)' % ansible)
    interpreter = interpreter or os.path.join(venv, 'bin', 'python')
    cmd = [ansible, 'all', '-i', 'localhost,', '-c', 'local', '-m', 'toa_probe',
           '-e', 'ansible_python_interpreter=%s' % interpreter,
           '-a', ' '.join('%s=%s' % item for item in sorted(args.items()))]
    if check:
        cmd.append('--check')
    env = dict(os.environ, ANSIBLE_LIBRARY=os.path.join(ROOT, 'library'),
               ANSIBLE_LOAD_CALLBACK_PLUGINS='1', ANSIBLE_STDOUT_CALLBACK='default',
               ANSIBLE_CALLBACK_RESULT_FORMAT='json', ANSIBLE_NOCOLOR='1')
    env.update(env_extra or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    # default callback with JSON results: "localhost | SUCCESS => {...}" (no deprecated oneline)
    try:
        start = proc.stdout.index('localhost | ')
        status, payload = proc.stdout[start:].split(' => ', 1)
        result = json.JSONDecoder().raw_decode(payload.lstrip())[0]
        result['failed'] = 'FAILED' in status
        return result
    except (ValueError, IndexError):
        raise AssertionError('unexpected ansible output (rc=%s):\n%s\n%s'
                             % (proc.returncode, proc.stdout, proc.stderr))


def python27():
    candidates = [os.environ.get('TOA_PYTHON27', ''), '/usr/bin/python2.7']
    candidates += sorted(glob.glob(os.path.expanduser('~/.pyenv/versions/2.7*/bin/python2.7')))
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    return None


EXPECTED_REAL_PEER = {
    'ipv4': '192.0.2.2',
    'ipv6': '2001:db8::2',
    'ipv4_on_ipv6': '::ffff:192.0.2.2',
}
TOA_SEEN = {
    'ipv4': '203.0.113.7 port 4242',
    'ipv6': '2001:db8:7::7 port 4242',
    'ipv4_on_ipv6': '::ffff:203.0.113.7 port 4242',
}


def assert_real_peer(result, family, proxy=None):
    real = proxy or EXPECTED_REAL_PEER[family]
    assert result.get('failed') is not True, result.get('msg')
    assert result['changed'] is False
    assert result['peer_address'] == real and result['accept_address'] == real
    assert result['peer_port'] == result['accept_port'] == result['proxy_port']
    assert result['peer_port'] != result['toa_port']
    assert result['rewritten'] is False and result['matches'] is True
    assert result['peer_state'] == result['accept_state'] == 'unrewritten'
    assert result['payload_ok'] is True, 'the crafted data segment did not arrive intact'
    assert result['family'] == family
    # The reported duration is a real one: more than nothing, within the default 10 s timeout.
    assert isinstance(result['elapsed_ms'], int) and 0 < result['elapsed_ms'] < 10000, \
        result['elapsed_ms']


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------

@needs_no_toa
@pytest.mark.parametrize('family', ['ipv4', 'ipv6', 'ipv4_on_ipv6'])
def test_without_toa_module_the_real_proxy_is_seen(family, clean_host):
    result = run_direct({'family': family, 'expect': 'unrewritten'})
    assert result['_rc'] == 0, result.get('msg', result)
    assert_real_peer(result, family)


@needs_no_toa
@pytest.mark.parametrize('family', ['ipv4', 'ipv6', 'ipv4_on_ipv6'])
def test_expect_rewritten_fails_without_toa_module(family, clean_host):
    result = run_direct({'family': family})
    assert result['_rc'] != 0 and result['failed'] is True
    assert result['msg'].startswith('TOA did not rewrite the peer: expected the TOA address %s'
                                    % TOA_SEEN[family]), result['msg']
    assert 'getpeername() returned %s port %d' % (EXPECTED_REAL_PEER[family], result['proxy_port']) \
        in result['msg']
    assert 'no TOA module rewrote the peer' in result['msg']
    assert result['rewritten'] is False and result['matches'] is False
    assert result['peer_address'] == EXPECTED_REAL_PEER[family]


@needs_no_toa
@pytest.mark.parametrize('option_in', ['syn', 'both', 'data', 'all'])
def test_every_option_placement_completes(option_in, clean_host):
    for family in ('ipv4', 'ipv6'):
        result = run_direct({'family': family, 'option_in': option_in, 'expect': 'unrewritten'})
        assert result['_rc'] == 0, result.get('msg', result)
        assert_real_peer(result, family)
        assert result['option_in'] == option_in


@needs_no_toa
def test_untrusted_proxy_and_other_kinds(clean_host):
    result = run_direct({'proxy_address': '198.51.100.9', 'expect': 'unrewritten'})
    assert_real_peer(result, 'ipv4', proxy='198.51.100.9')
    result = run_direct({'family': 'ipv6', 'kind': 253, 'proxy_address': '2001:db8:99::9',
                         'expect': 'unrewritten'})
    assert_real_peer(result, 'ipv6', proxy='2001:db8:99::9')
    assert result['kind'] == 253
    result = run_direct({'family': 'ipv4', 'kind': 254, 'expect': 'any'})
    assert_real_peer(result, 'ipv4')


@needs_no_toa
def test_through_ansible_in_check_mode(clean_host):
    result = run_ansible({'family': 'ipv4', 'expect': 'unrewritten'}, check=True)
    assert_real_peer(result, 'ipv4')
    result = run_ansible({'family': 'ipv6'})
    assert result['failed'] is True
    assert result['msg'].startswith('TOA did not rewrite the peer')


@needs_no_toa
def test_legacy_ansible_on_python27(clean_host):
    interpreter = python27()
    if interpreter is None:
        pytest.skip('no python2.7 found (set TOA_PYTHON27) for the Python 2.7 target check')
    for family in ('ipv4', 'ipv6', 'ipv4_on_ipv6'):
        result = run_ansible({'family': family, 'expect': 'unrewritten'}, venv=VENV_LEGACY,
                             interpreter=interpreter)
        assert_real_peer(result, family)


def test_tiny_timeouts_kill_the_probe_cleanly(clean_host):
    """Kill the real probe at whatever stage it reached; each must fail cleanly or pass."""
    outcomes = []
    for timeout in (0.002, 0.01, 0.02, 0.04, 0.08):
        result = run_direct({'timeout': timeout, 'expect': 'any'})
        if result['_rc'] != 0:
            # Either the parent killed the child, or the child's own deadline (80% of the
            # timeout) fired first and it reported where it was.
            assert ('timed out after %s s while at stage' % timeout in result['msg']
                    or 'within the deadline' in result['msg']), result['msg']
        outcomes.append(result.get('stage'))
        assert_nothing_left(clean_host)
    assert any(stage != 'done' for stage in outcomes), \
        'no tiny timeout interrupted the probe: %s' % outcomes


STALL_SCRIPT = REGISTER_MODULE_UTILS + textwrap.dedent('''
    import json, os, subprocess, sys, threading, time
    sys.path.insert(0, sys.argv[1])
    register_module_utils(os.path.dirname(sys.argv[1]))
    from ansible.module_utils import toa_probe_run as tp  # the probe itself

    class Module(object):
        def run_command(self, cmd, check_rc=False):
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = proc.communicate()
            return proc.returncode, out.decode(), err.decode()

    mode = sys.argv[2]
    if mode == 'hang':      # the child hangs after netns, TUN and listener exist
        def hang(*args, **kwargs):
            time.sleep(600)
        tp.mss_option = hang
    else:                   # the child never recognises a SYN-ACK: its own deadline fires
        tp.parse_packet = lambda raw: None

    seen = {}
    me = os.getpid()

    def watch():
        time.sleep(0.8)
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % pid) as handle:
                    ppid = int(handle.read().rsplit(')', 1)[1].split()[1])
                if ppid != me:
                    continue
                with open('/proc/%s/net/dev' % pid) as handle:
                    seen['devices'] = handle.read()
                seen['pid'] = int(pid)
                seen['netns'] = os.readlink('/proc/%s/ns/net' % pid)
            except (IOError, OSError, ValueError, IndexError):
                pass

    thread = threading.Thread(target=watch)
    thread.start()
    plan = tp.resolve_params({'family': sys.argv[3], 'timeout': float(sys.argv[4])})
    plan['ip_bin'] = sys.argv[5]
    outcome = tp.run_in_child(Module(), plan)
    thread.join()
    seen['host_netns'] = os.readlink('/proc/self/ns/net')
    print(json.dumps({'outcome': outcome, 'seen': seen}))
''')


def run_stalled(mode, family, timeout):
    with tempfile.NamedTemporaryFile('w', suffix='_toa_probe_stall.py', delete=False) as handle:
        handle.write(STALL_SCRIPT)
    try:
        started = time.time()
        proc = subprocess.run([sys.executable, handle.name, os.path.join(ROOT, 'library'), mode,
                               family, str(timeout), shutil.which('ip')],
                              capture_output=True, text=True, timeout=60)
        wall = time.time() - started
    finally:
        os.unlink(handle.name)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), wall


@pytest.mark.parametrize('family', ['ipv4', 'ipv6'])
def test_forced_timeout_kills_child_and_namespace(family, clean_host):
    data, wall = run_stalled('hang', family, 1.5)
    outcome, seen = data['outcome'], data['seen']
    # While it hung, the child really was in its own namespace with the TUN device up.
    assert 'pid' in seen, 'the stalled probe child was not observed'
    assert 'toaprobe0' in seen['devices'] and seen['netns'] != seen['host_netns']
    assert outcome['error'] == ('the probe timed out after 1.5 s while at stage "syn"; '
                                'the child was killed')
    assert 1.4 <= wall < 10
    assert not os.path.exists('/proc/%d' % seen['pid']), 'the killed child was not reaped'
    holders = [pid for pid, info in _processes().items() if info[2] == seen['netns']]
    assert not holders, 'the probe namespace is still held by %s' % holders


def test_child_deadline_reports_missing_synack(clean_host):
    data, wall = run_stalled('deaf', 'ipv4', 1.0)
    outcome = data['outcome']
    assert outcome['stage'] == 'synack'
    assert outcome['error'].startswith('no SYN-ACK from the listener 192.0.2.1 port')
    assert 0.7 <= wall < 10


CAPTURE_SCRIPT = REGISTER_MODULE_UTILS + textwrap.dedent('''
    import binascii, json, socket, subprocess, sys
    sys.path.insert(0, sys.argv[1])
    register_module_utils(os.path.dirname(sys.argv[1]))
    from ansible.module_utils import toa_probe_run as tp  # the probe itself

    class Module(object):
        def run_command(self, cmd, check_rc=False):
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = proc.communicate()
            return proc.returncode, out.decode(), err.decode()

    capture = {}
    open_tun = tp._open_tun
    child_probe = tp._child_probe

    def tapped_open_tun(name):
        fd = open_tun(name)
        # A packet socket on the TUN device sees what the kernel receives from it.
        tap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
        tap.bind((name, 0))
        capture['tap'] = tap
        return fd

    def tapped_probe(module, plan, report):
        observed = child_probe(module, plan, report)
        tap = capture['tap']
        tap.setblocking(False)
        packets = []
        errors = []
        while len(errors) < 3:
            # The device is gone by now: the first read reports ENETDOWN, then the queue.
            try:
                data, address = tap.recvfrom(65535)
            except (socket.error, OSError) as exc:
                errors.append(str(exc))
                continue
            packets.append([binascii.hexlify(data).decode('ascii'), address[2]])
        observed['capture_errors'] = errors
        observed['captured'] = packets
        return observed

    tp._open_tun = tapped_open_tun
    tp._child_probe = tapped_probe
    plan = tp.resolve_params(json.loads(sys.argv[2]))
    plan['ip_bin'] = sys.argv[3]
    print(json.dumps(tp.run_in_child(Module(), plan)))
''')

PACKET_HOST = 0  # received by the host: what the crafted side wrote into the TUN device


def run_captured(args):
    with tempfile.NamedTemporaryFile('w', suffix='_toa_probe_tap.py', delete=False) as handle:
        handle.write(CAPTURE_SCRIPT)
    try:
        proc = subprocess.run([sys.executable, handle.name, os.path.join(ROOT, 'library'),
                               json.dumps(args), shutil.which('ip')],
                              capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(handle.name)
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)
    assert 'result' in outcome, outcome
    return outcome['result']


@pytest.mark.parametrize('family,option_in,carriers', [
    ('ipv4', 'ack', {'ack'}),
    ('ipv4', 'syn', {'syn'}),
    ('ipv4', 'both', {'syn', 'ack'}),
    ('ipv4', 'data', {'ack', 'data'}),
    ('ipv6', 'all', {'syn', 'ack', 'data'}),
    ('ipv4_on_ipv6', 'ack', {'ack'}),
])
def test_kernel_receives_the_option_where_asked(family, option_in, carriers, clean_host):
    """What the kernel received from the TUN device carries the exact TOA bytes where asked."""
    import socket
    import struct
    args = {'family': family, 'option_in': option_in}
    result = run_captured(args)
    v6 = family == 'ipv6'
    kind, length = (254, 20) if v6 else (200, 8)
    address = socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET,
                               '2001:db8:7::7' if v6 else '203.0.113.7')
    option = struct.pack('!BBH', kind, length, 4242) + address
    segments = {}
    for hexdata, pkttype in result['captured']:
        raw = bytes.fromhex(hexdata)
        if pkttype != PACKET_HOST:
            continue
        header = 40 if v6 else (raw[0] & 0x0F) * 4
        tcp = raw[header:]
        flags = tcp[13]
        options = tcp[20:(tcp[12] >> 4) * 4]
        payload = tcp[(tcp[12] >> 4) * 4:]
        name = 'syn' if flags & 0x02 else ('data' if payload else 'ack')
        segments.setdefault(name, []).append(option in options)
    assert set(segments) == {'syn', 'ack', 'data'}, segments
    for name, carried in segments.items():
        assert all(carried) if name in carriers else not any(carried), (name, segments)
    assert result['payload_ok'] is True
