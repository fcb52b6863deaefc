"""Unit tests for library/toa_probe.py and the probe it runs (module_utils/toa_probe_run.py):
parameters, verdicts, main(), its use of toa_child.

The packets it writes and reads are tested in test_toa_packet.py.

No root, namespace or network needed: the fork/netns part is replaced by a fake outcome.
"""

import contextlib
import json
import os
import sys
import time

import pytest

LIBRARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'library')
sys.path.insert(0, os.path.normpath(LIBRARY))

import toa_probe as tp  # noqa: E402
import toa_probe_run as run  # noqa: E402  (the probe itself, module_utils/toa_probe_run.py)
import toa_packet  # noqa: E402  (the same module as ansible.module_utils.toa_packet, see conftest.py)
from ansible.module_utils import basic  # noqa: E402

try:  # ansible-core >= 2.19
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core 2.16 (legacy venv)
    patch_module_args = None


# ---------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('family,kind,toa,proxy,listen', [
    ('ipv4', 200, '203.0.113.7', '192.0.2.2', '192.0.2.1'),
    ('ipv4_on_ipv6', 200, '203.0.113.7', '192.0.2.2', '192.0.2.1'),
    ('ipv6', 254, '2001:db8:7::7', '2001:db8::2', '2001:db8::1'),
])
def test_family_defaults(family, kind, toa, proxy, listen):
    plan = run.resolve_params({'family': family})
    assert (plan['kind'], plan['toa_address'], plan['proxy_address'], plan['listen_address']) == (
        kind, toa, proxy, listen)
    assert (plan['toa_port'], plan['option_in'], plan['expect'], plan['timeout']) == (
        4242, 'ack', 'rewritten', 10.0)
    assert plan['warnings'] == []


def test_addresses_are_normalised():
    plan = run.resolve_params({'family': 'ipv6', 'toa_address': '2001:DB8:0:0::7',
                              'proxy_address': ' 2001:db8::9 '})
    assert plan['toa_address'] == '2001:db8::7' and plan['proxy_address'] == '2001:db8::9'


@pytest.mark.parametrize('params,message', [
    ({'kind': 19}, 'kind 19 is the standard TCP option "TCP MD5 signature"'),
    ({'kind': 2}, 'kind 2 is the standard TCP option "MSS"'),
    ({'kind': 300}, 'kind must be a TCP option kind between 0 and 255'),
    ({'toa_port': 0}, 'toa_port must be between 1 and 65535'),
    ({'toa_port': 65536}, 'toa_port must be between 1 and 65535'),
    ({'toa_address': '2001:db8::7'}, 'toa_address 2001:db8::7 is not an IPv4 address, but '
                                     'family=ipv4 sends IPv4 packets (use family=ipv6'),
    ({'family': 'ipv6', 'toa_address': '203.0.113.7'},
     'toa_address 203.0.113.7 is not an IPv6 address, but family=ipv6 sends IPv6 packets'),
    ({'family': 'ipv4_on_ipv6', 'proxy_address': '::ffff:192.0.2.2'},
     'proxy_address ::ffff:192.0.2.2 is not an IPv4 address'),
    ({'toa_address': '203.0.113.300'}, "'203.0.113.300' is not a valid IPv4 address"),
    ({'proxy_address': '127.0.0.1'}, 'proxy_address 127.0.0.1 is a loopback address'),
    ({'proxy_address': '224.0.0.1'}, 'is multicast, broadcast or reserved'),
    ({'proxy_address': '0.0.0.0'}, 'unspecified'),
    ({'family': 'ipv6', 'proxy_address': '::1'}, 'proxy_address ::1 is the loopback address'),
    ({'family': 'ipv6', 'proxy_address': 'ff02::1'}, 'is multicast'),
    ({'proxy_address': '192.0.2.1'}, 'proxy_address 192.0.2.1 is the listener address'),
    ({'family': 'ipv6', 'proxy_address': '2001:db8:0::1'}, 'is the listener address'),
    ({'toa_address': '192.0.2.2'}, 'toa_address and proxy_address are both 192.0.2.2'),
    ({'proxy_address': '192.0.2.255'}, 'is the network or broadcast address'),
    ({'timeout': 0}, 'timeout must be more than 0'),
    ({'option_in': 'fin'}, 'option_in must be one of ack, all, both, data, syn'),
    ({'expect': 'maybe'}, 'expect must be rewritten, unrewritten or any'),
    ({'family': 'ipx'}, 'family must be one of ipv4, ipv6, ipv4_on_ipv6'),
])
def test_invalid_params(params, message):
    with pytest.raises(run.ProbeError) as info:
        run.resolve_params(params)
    assert message in str(info.value)


def test_fast_open_magic_warns():
    plan = run.resolve_params({'family': 'ipv6', 'toa_port': 0xF989})
    assert 'Fast Open' in plan['warnings'][0]


# ---------------------------------------------------------------------------
# verdict
# ---------------------------------------------------------------------------

def observed(peer, accept=None, proxy_port=45000):
    accept = accept or peer
    return {'peer_address': peer[0], 'peer_port': peer[1], 'accept_address': accept[0],
            'accept_port': accept[1], 'proxy_port': proxy_port, 'listen_port': 8080,
            'payload_ok': True}


def test_verdict_rewritten():
    plan = run.resolve_params({})
    result, message = run.verdict(plan, observed(('203.0.113.7', 4242)))
    assert message is None
    assert result['rewritten'] and result['matches']
    assert result['peer_state'] == result['accept_state'] == 'rewritten'


def test_verdict_unrewritten_when_rewritten_expected():
    plan = run.resolve_params({})
    result, message = run.verdict(plan, observed(('192.0.2.2', 45000)))
    assert not result['rewritten'] and not result['matches']
    assert message.startswith('TOA did not rewrite the peer: expected the TOA address '
                              '203.0.113.7 port 4242, but getpeername() returned 192.0.2.2 port '
                              '45000 and accept() returned 192.0.2.2 port 45000')
    assert 'no TOA module rewrote the peer' in message


def test_verdict_accept_not_rewritten_is_a_failure():
    plan = run.resolve_params({})
    result, message = run.verdict(plan, observed(('203.0.113.7', 4242), ('192.0.2.2', 45000)))
    assert result['rewritten'] and not result['matches']
    assert 'getpeername() is rewritten but accept() is not' in message


def test_verdict_address_without_port_is_other():
    for expect in ('rewritten', 'unrewritten', 'any'):
        plan = run.resolve_params({'expect': expect})
        result, message = run.verdict(plan, observed(('203.0.113.7', 45000)))
        assert result['peer_state'] == 'other' and not result['matches']
        assert 'neither the TOA' in message


def test_verdict_unrewritten_expected():
    plan = run.resolve_params({'expect': 'unrewritten', 'proxy_address': '198.51.100.9'})
    result, message = run.verdict(plan, observed(('198.51.100.9', 45000)))
    assert message is None and result['matches'] and not result['rewritten']
    result, message = run.verdict(plan, observed(('203.0.113.7', 4242)))
    assert not result['matches']
    assert message.startswith('expected the real proxy address 198.51.100.9 port 45000, but')


def test_verdict_any_and_mapped_addresses():
    plan = run.resolve_params({'family': 'ipv4_on_ipv6', 'expect': 'any'})
    result, message = run.verdict(plan, observed(('::ffff:203.0.113.7', 4242)))
    assert message is None and result['rewritten']
    result, message = run.verdict(plan, observed(('::ffff:192.0.2.2', 45000)))
    assert message is None and not result['rewritten'] and result['matches']
    plan = run.resolve_params({'family': 'ipv4_on_ipv6'})
    result, message = run.verdict(plan, observed(('203.0.113.7', 4242)))
    assert result['peer_state'] == 'other'  # an AF_INET6 socket must report ::ffff:


# ---------------------------------------------------------------------------
# main(): argument handling, preconditions and results through AnsibleModule
# ---------------------------------------------------------------------------

class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


@contextlib.contextmanager
def module_args(args):
    if patch_module_args is not None:
        with patch_module_args(args):
            yield
        return
    saved = basic._ANSIBLE_ARGS
    basic._ANSIBLE_ARGS = json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode('utf-8')
    try:
        yield
    finally:
        basic._ANSIBLE_ARGS = saved


@pytest.fixture
def ansible_module(monkeypatch):
    def exit_json(self, **kwargs):
        raise ExitJson(kwargs)

    def fail_json(self, msg, **kwargs):
        kwargs['msg'] = msg
        raise FailJson(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)
    monkeypatch.setattr(run.os, 'geteuid', lambda: 0)
    real_exists = os.path.exists
    monkeypatch.setattr(run.os.path, 'exists',
                        lambda path: True if path == run.TUN_PATH else real_exists(path))
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path',
                        lambda self, name, required=False, opt_dirs=None: '/usr/sbin/ip')
    calls = []

    def no_probe(module, plan):
        calls.append(plan)
        raise AssertionError('the probe must not run in this test')

    monkeypatch.setattr(tp, 'run_in_child', no_probe)
    return calls


def run_main(args):
    with module_args(args):
        tp.main()


def test_main_rejects_bad_choice(ansible_module):
    with pytest.raises(FailJson) as info:
        run_main({'family': 'ipv5'})
    assert 'family' in info.value.args[0]['msg']


def test_main_reports_validation_errors(ansible_module):
    with pytest.raises(FailJson) as info:
        run_main({'kind': 2})
    assert info.value.args[0]['msg'].startswith('kind 2 is the standard TCP option "MSS"')


def test_main_needs_root(ansible_module, monkeypatch):
    monkeypatch.setattr(run.os, 'geteuid', lambda: 1000)
    with pytest.raises(FailJson) as info:
        run_main({})
    assert 'must run as root' in info.value.args[0]['msg']
    assert 'become: true' in info.value.args[0]['msg']


def test_main_needs_tun(ansible_module, monkeypatch):
    monkeypatch.setattr(run.os.path, 'exists', lambda path: False)
    with pytest.raises(FailJson) as info:
        run_main({})
    assert '/dev/net/tun does not exist' in info.value.args[0]['msg']
    assert 'modprobe tun' in info.value.args[0]['msg']


def test_main_needs_ip(ansible_module, monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path',
                        lambda self, name, required=False, opt_dirs=None: None)
    with pytest.raises(FailJson) as info:
        run_main({})
    assert 'the `ip` command was not found' in info.value.args[0]['msg']


def fake_child(outcome):
    def run(module, plan):
        assert plan['ip_bin'] == '/usr/sbin/ip'
        return dict(outcome)
    return run


def test_main_success_rewritten(ansible_module, monkeypatch):
    monkeypatch.setattr(tp, 'run_in_child', fake_child(
        {'result': observed(('203.0.113.7', 4242)), 'elapsed_ms': 12}))
    with pytest.raises(ExitJson) as info:
        run_main({'_ansible_check_mode': True})
    result = info.value.args[0]
    assert result['changed'] is False
    assert result['rewritten'] is True and result['matches'] is True
    assert (result['peer_address'], result['peer_port']) == ('203.0.113.7', 4242)
    assert (result['expected_address'], result['expected_port']) == ('203.0.113.7', 4242)
    assert result['elapsed_ms'] == 12 and result['kind'] == 200 and result['family'] == 'ipv4'


def test_main_fails_when_not_rewritten(ansible_module, monkeypatch):
    monkeypatch.setattr(tp, 'run_in_child', fake_child(
        {'result': observed(('192.0.2.2', 45000)), 'elapsed_ms': 9}))
    with pytest.raises(FailJson) as info:
        run_main({})
    result = info.value.args[0]
    assert result['msg'].startswith('TOA did not rewrite the peer')
    assert result['rewritten'] is False and result['peer_address'] == '192.0.2.2'


def test_main_unrewritten_ipv6(ansible_module, monkeypatch):
    monkeypatch.setattr(tp, 'run_in_child', fake_child(
        {'result': observed(('2001:db8::2', 45000)), 'elapsed_ms': 9}))
    with pytest.raises(ExitJson) as info:
        run_main({'family': 'ipv6', 'expect': 'unrewritten'})
    result = info.value.args[0]
    assert result['expected_address'] == '2001:db8::2' and result['expected_port'] == 45000
    assert result['kind'] == 254 and result['toa_address'] == '2001:db8:7::7'


def test_main_reports_child_errors(ansible_module, monkeypatch):
    monkeypatch.setattr(tp, 'run_in_child', fake_child(
        {'error': 'the probe timed out after 0.5 s while at stage "synack"; the child was killed',
         'stage': 'synack', 'elapsed_ms': 500}))
    with pytest.raises(FailJson) as info:
        run_main({'timeout': 0.5})
    result = info.value.args[0]
    assert result['msg'] == ('TOA probe failed at stage "synack": the probe timed out after 0.5 s '
                             'while at stage "synack"; the child was killed')
    assert result['stage'] == 'synack' and result['elapsed_ms'] == 500


def test_documentation_is_valid_yaml():
    yaml = pytest.importorskip('yaml')
    doc = yaml.safe_load(tp.DOCUMENTATION)
    assert doc['module'] == 'toa_probe'
    assert set(doc['options']) == {'family', 'kind', 'toa_address', 'toa_port', 'proxy_address',
                                   'option_in', 'expect', 'timeout'}
    returns = yaml.safe_load(tp.RETURN)
    for key in ('peer_address', 'peer_port', 'accept_address', 'accept_port', 'toa_address',
                'toa_port', 'proxy_address', 'proxy_port', 'rewritten', 'matches', 'family',
                'kind', 'elapsed_ms'):
        assert key in returns
    yaml.safe_load(tp.EXAMPLES)


# ---------------------------------------------------------------------------
# environment errors in the child, and the fork/pipe/kill machinery (no root needed)
# ---------------------------------------------------------------------------

class FakeLibc(object):
    def __init__(self, err):
        self.err = err

    def unshare(self, flags):
        import ctypes
        assert flags == run.CLONE_NEWNET
        ctypes.set_errno(self.err)
        return -1


@pytest.mark.parametrize('err,text', [
    (1, 'was refused (EPERM): the probe needs root with CAP_SYS_ADMIN'),
    (22, 'this kernel has no network namespace support (CONFIG_NET_NS)'),
])
def test_unshare_errors(monkeypatch, err, text):
    monkeypatch.setattr(toa_packet, 'libc', lambda: FakeLibc(err))
    with pytest.raises(run.ProbeError) as info:
        run._unshare_net()
    assert text in str(info.value)


def test_tun_that_cannot_load(monkeypatch):
    def refuse(path, flags):
        raise OSError(19, 'No such device')
    monkeypatch.setattr(run.os, 'open', refuse)
    with pytest.raises(run.ProbeError) as info:
        run._open_tun('toaprobe0')
    assert 'the tun kernel module is missing or cannot be loaded' in str(info.value)
    assert 'modprobe tun' in str(info.value)


def test_run_in_child_gives_the_probe_its_own_deadline_and_reports_stages(monkeypatch):
    """The probe's wiring into toa_child: a ProbeError keeps its words and its stage."""
    def probe(module, plan, report):
        assert plan['child_deadline'] <= time.time() + plan['timeout'] * 0.8
        report('tun')
        raise run.ProbeError('cannot open /dev/net/tun')
    monkeypatch.setattr(run, '_child_probe', probe)
    outcome = run.run_in_child(None, {'timeout': 5.0})
    assert (outcome['error'], outcome['stage']) == ('cannot open /dev/net/tun', 'tun')


def test_run_in_child_names_the_probe_on_timeout(monkeypatch):
    monkeypatch.setattr(run, '_child_probe', lambda module, plan, report: time.sleep(60))
    outcome = run.run_in_child(None, {'timeout': 0.3})
    assert outcome['error'] == ('the probe timed out after 0.3 s while at stage "start"; '
                                'the child was killed')
