"""Unit tests for library/toa_probe.py: packets, checksums, parameters, verdicts, main().

No root, namespace or network needed: the fork/netns part is replaced by a fake outcome.
"""

import binascii
import contextlib
import json
import os
import socket
import struct
import sys
import time

import pytest

LIBRARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'library')
sys.path.insert(0, os.path.normpath(LIBRARY))

import toa_probe as tp  # noqa: E402
from ansible.module_utils import basic  # noqa: E402

try:  # ansible-core >= 2.19
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core 2.16 (legacy venv)
    patch_module_args = None


# SYN-ACKs written by the Linux 6.18 kernel to the probe's TUN device (answers to the probe's
# SYN with MSS 1460): their checksums were computed by the kernel, not by this code.
KERNEL_SYNACK_V4 = binascii.unhexlify(
    '4500002c000040004006b6c8c0000201c0000202d305b299b0ea2fec1910ba2d6012faf0df6d0000020405b4')
KERNEL_SYNACK_V6 = binascii.unhexlify(
    '600651700018064020010db800000000000000000000000120010db8000000000000000000000002'
    'be79cb90d52751b69dda542b6012fd209ca60000020405a0')


# ---------------------------------------------------------------------------
# checksums
# ---------------------------------------------------------------------------

def test_checksum_rfc1071_example():
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2 (one's complement).
    assert tp.inet_checksum(binascii.unhexlify('0001f203f4f5f6f7')) == 0xFFFF - 0xddf2


def test_checksum_of_well_known_ipv4_header():
    header = binascii.unhexlify('450000730000400040110000c0a80001c0a800c7')
    assert tp.inet_checksum(header) == 0xb861
    with_sum = header[:10] + struct.pack('!H', 0xb861) + header[12:]
    assert tp.inet_checksum(with_sum) == 0


def test_checksum_odd_length_pads_with_zero():
    assert tp.inet_checksum(b'\x12\x34\x56') == tp.inet_checksum(b'\x12\x34\x56\x00')
    assert tp.inet_checksum(b'') == 0xFFFF


def test_kernel_synack_v4_checksums_match_ours():
    packet = tp.parse_packet(KERNEL_SYNACK_V4)
    assert packet['ip_checksum_ok'] and packet['tcp_checksum_ok']
    # Rebuilding it from its fields reproduces the kernel's bytes, checksums included.
    rebuilt = tp.build_packet(packet['src'], packet['dst'], packet['sport'], packet['dport'],
                              packet['seq'], packet['ack'], packet['flags'],
                              options=tp.mss_option(1460), window=packet['window'], ident=0)
    assert rebuilt == KERNEL_SYNACK_V4


def test_kernel_synack_v6_checksum_matches_ours():
    packet = tp.parse_packet(KERNEL_SYNACK_V6)
    assert packet['tcp_checksum_ok']
    rebuilt = tp.build_packet(packet['src'], packet['dst'], packet['sport'], packet['dport'],
                              packet['seq'], packet['ack'], packet['flags'],
                              options=tp.mss_option(1440), window=packet['window'])
    # Same TCP segment (checksum over the IPv6 pseudo-header); the kernel sets a flow label.
    assert rebuilt[40:] == KERNEL_SYNACK_V6[40:]
    assert rebuilt[4:40] == KERNEL_SYNACK_V6[4:40]


def test_corrupted_segment_fails_checksum():
    broken = bytearray(KERNEL_SYNACK_V4)
    broken[-1] ^= 0x01
    assert tp.parse_packet(bytes(broken))['tcp_checksum_ok'] is False


def test_pseudo_headers():
    v4 = tp.pseudo_header(b'\x01\x02\x03\x04', b'\x05\x06\x07\x08', 40)
    assert v4 == b'\x01\x02\x03\x04\x05\x06\x07\x08\x00\x06\x00\x28'
    v6 = tp.pseudo_header(b'\x00' * 16, b'\xff' * 16, 0x10203)
    assert v6[32:] == b'\x00\x01\x02\x03\x00\x00\x00\x06'
    with pytest.raises(ValueError):
        tp.pseudo_header(b'\x00' * 4, b'\x00' * 16, 20)


# ---------------------------------------------------------------------------
# TOA option encoding
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('kind', [200, 254, 253])
def test_ipv4_option_encoding(kind):
    raw = tp.encode_toa_option(kind, '203.0.113.7', 4242)
    assert raw == struct.pack('!BB', kind, 8) + b'\x10\x92' + b'\xcb\x00\x71\x07'
    assert tp.decode_toa_option(raw) == (kind, '203.0.113.7', 4242)


@pytest.mark.parametrize('kind', [253, 254])
def test_ipv6_option_encoding(kind):
    raw = tp.encode_toa_option(kind, '2001:db8:7::7', 4242)
    assert len(raw) == 20
    assert raw[:4] == struct.pack('!BBH', kind, 20, 4242)
    assert raw[4:] == binascii.unhexlify('20010db8000700000000000000000007')
    assert tp.decode_toa_option(raw) == (kind, '2001:db8:7::7', 4242)


def test_option_encoding_rejects_bad_values():
    with pytest.raises(ValueError):
        tp.encode_toa_option(256, '203.0.113.7', 1)
    with pytest.raises(ValueError):
        tp.encode_toa_option(200, '203.0.113.7', 70000)
    with pytest.raises(tp.ProbeError):
        tp.encode_toa_option(200, 'not-an-address', 1)
    with pytest.raises(ValueError):
        tp.decode_toa_option(b'\xc8\x09' + b'\x00' * 6)


@pytest.mark.parametrize('family,segments', [
    ('ipv4', ('203.0.113.7', '192.0.2.2', '192.0.2.1')),
    ('ipv6', ('2001:db8:7::7', '2001:db8::2', '2001:db8::1')),
])
def test_syn_with_mss_and_toa_round_trips(family, segments):
    toa_address, src, dst = segments
    kind = 200 if family == 'ipv4' else 254
    toa = tp.encode_toa_option(kind, toa_address, 4242)
    raw = tp.build_packet(src, dst, 40000, 8080, 0xFFFFFFFF, 0, tp.TCP_SYN,
                          options=tp.mss_option() + toa, ident=7)
    packet = tp.parse_packet(raw)
    assert packet['version'] == (4 if family == 'ipv4' else 6)
    assert (packet['src'], packet['dst']) == (src, dst)
    assert (packet['sport'], packet['dport'], packet['seq'], packet['flags']) == (
        40000, 8080, 0xFFFFFFFF, tp.TCP_SYN)
    assert packet['ip_checksum_ok'] and packet['tcp_checksum_ok']
    assert packet['options'] == [(2, b'\x05\xb4'), (kind, toa[2:])]
    assert tp.decode_toa_option(struct.pack('!BB', kind, len(toa)) + packet['options'][1][1]) == (
        kind, toa_address, 4242)


def test_ack_with_payload_lengths():
    toa = tp.encode_toa_option(200, '203.0.113.7', 4242)
    raw = tp.build_packet('192.0.2.2', '192.0.2.1', 1, 2, 10, 20, tp.TCP_ACK | tp.TCP_PSH,
                          options=toa, payload=b'hello')
    assert struct.unpack('!H', raw[2:4])[0] == len(raw) == 20 + 20 + 8 + 5
    assert raw[20 + 12] >> 4 == 7  # data offset: 28 bytes of header
    packet = tp.parse_packet(raw)
    assert packet['payload'] == b'hello' and packet['tcp_checksum_ok']
    raw6 = tp.build_packet('2001:db8::2', '2001:db8::1', 1, 2, 10, 20, tp.TCP_ACK,
                           options=tp.encode_toa_option(254, '2001:db8:7::7', 1), payload=b'x')
    assert struct.unpack('!H', raw6[4:6])[0] == len(raw6) - 40 == 20 + 20 + 1


def test_pad_options():
    assert tp.pad_options(b'\x01\x01\x01') == b'\x01\x01\x01\x00'
    assert tp.pad_options(b'') == b''
    with pytest.raises(ValueError):
        tp.pad_options(b'\x01' * 41)


def test_build_packet_refuses_mixed_families():
    with pytest.raises(ValueError):
        tp.build_packet('192.0.2.2', '2001:db8::1', 1, 2, 0, 0, tp.TCP_SYN)


# ---------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------

def test_parse_tcp_options_handles_nop_eol_and_errors():
    assert tp.parse_tcp_options(b'\x01\x01\x08\x0a' + b'\x00' * 8 + b'\x00\xff') == [
        (8, b'\x00' * 8)]
    with pytest.raises(ValueError):
        tp.parse_tcp_options(b'\xc8')
    with pytest.raises(ValueError):
        tp.parse_tcp_options(b'\xc8\x01')
    with pytest.raises(ValueError):
        tp.parse_tcp_options(b'\xc8\x0a\x00')


def test_parse_ignores_non_tcp_and_truncated():
    assert tp.parse_packet(b'') is None
    assert tp.parse_packet(KERNEL_SYNACK_V4[:30]) is None
    udp = bytearray(KERNEL_SYNACK_V4)
    udp[9] = 17
    assert tp.parse_packet(bytes(udp)) is None
    icmp6 = bytearray(KERNEL_SYNACK_V6)
    icmp6[6] = 58
    assert tp.parse_packet(bytes(icmp6)) is None
    assert tp.parse_packet(b'\x50' + b'\x00' * 40) is None


def test_parse_kernel_synack_fields():
    packet = tp.parse_packet(KERNEL_SYNACK_V4)
    assert packet['src'] == '192.0.2.1' and packet['dst'] == '192.0.2.2'
    assert packet['flags'] == tp.TCP_SYN | tp.TCP_ACK
    assert packet['options'] == [(2, b'\x05\xb4')]
    assert packet['payload'] == b''
    isn = (packet['ack'] - 1) & 0xFFFFFFFF
    assert tp.is_synack_for(packet, '192.0.2.1', packet['sport'], '192.0.2.2', packet['dport'], isn)
    assert not tp.is_synack_for(packet, '192.0.2.1', packet['sport'], '192.0.2.2', packet['dport'], isn + 1)
    assert not tp.is_synack_for(packet, '192.0.2.1', packet['sport'] + 1, '192.0.2.2', packet['dport'], isn)
    assert not tp.is_synack_for(packet, '192.0.2.1', packet['sport'], '192.0.2.9', packet['dport'], isn)
    assert not tp.is_synack_for(None, '192.0.2.1', 1, '192.0.2.2', 2, 0)
    six = tp.parse_packet(KERNEL_SYNACK_V6)
    assert six['src'] == '2001:db8::1' and six['dst'] == '2001:db8::2'
    assert tp.is_synack_for(six, '2001:DB8:0::1', six['sport'], '2001:db8::2', six['dport'],
                            (six['ack'] - 1) & 0xFFFFFFFF)


def test_isn_wraps_around():
    raw = tp.build_packet('192.0.2.1', '192.0.2.2', 80, 40000, 5, 0, tp.TCP_SYN | tp.TCP_ACK)
    assert tp.is_synack_for(tp.parse_packet(raw), '192.0.2.1', 80, '192.0.2.2', 40000, 0xFFFFFFFF)


def test_describe_packet():
    assert tp.describe_packet(KERNEL_SYNACK_V4) == '192.0.2.1.54021 > 192.0.2.2.45721 [SA]'
    assert tp.describe_packet(KERNEL_SYNACK_V6).startswith('2001:db8::1.')
    icmp6 = bytearray(KERNEL_SYNACK_V6)
    icmp6[6] = 58
    assert tp.describe_packet(bytes(icmp6)) == 'non-TCP IPv6 packet, protocol 58, 64 bytes'
    assert tp.describe_packet(b'') == 'non-TCP IPv0 packet, protocol -1, 0 bytes'


def test_reset_detection():
    rst = tp.parse_packet(tp.build_packet('192.0.2.1', '192.0.2.2', 80, 40000, 0, 1,
                                          tp.TCP_RST | tp.TCP_ACK))
    assert tp.is_reset_for(rst, 80, 40000)
    assert not tp.is_synack_for(rst, '192.0.2.1', 80, '192.0.2.2', 40000, 0)


# ---------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('family,kind,toa,proxy,listen', [
    ('ipv4', 200, '203.0.113.7', '192.0.2.2', '192.0.2.1'),
    ('ipv4_on_ipv6', 200, '203.0.113.7', '192.0.2.2', '192.0.2.1'),
    ('ipv6', 254, '2001:db8:7::7', '2001:db8::2', '2001:db8::1'),
])
def test_family_defaults(family, kind, toa, proxy, listen):
    plan = tp.resolve_params({'family': family})
    assert (plan['kind'], plan['toa_address'], plan['proxy_address'], plan['listen_address']) == (
        kind, toa, proxy, listen)
    assert (plan['toa_port'], plan['option_in'], plan['expect'], plan['timeout']) == (
        4242, 'ack', 'rewritten', 10.0)
    assert plan['warnings'] == []


def test_addresses_are_normalised():
    plan = tp.resolve_params({'family': 'ipv6', 'toa_address': '2001:DB8:0:0::7',
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
    with pytest.raises(tp.ProbeError) as info:
        tp.resolve_params(params)
    assert message in str(info.value)


def test_fast_open_magic_warns():
    plan = tp.resolve_params({'family': 'ipv6', 'toa_port': 0xF989})
    assert 'Fast Open' in plan['warnings'][0]


def test_address_helpers():
    assert tp.v4_mapped('203.0.113.7') == '::ffff:203.0.113.7'
    assert tp.same_address('::FFFF:203.0.113.7', '::ffff:cb00:7107')
    assert not tp.same_address('203.0.113.7', '::ffff:203.0.113.7')
    assert not tp.same_address('garbage', 'garbage')
    assert tp.pack_address('192.0.2.1') == (socket.AF_INET, b'\xc0\x00\x02\x01')


# ---------------------------------------------------------------------------
# verdict
# ---------------------------------------------------------------------------

def observed(peer, accept=None, proxy_port=45000):
    accept = accept or peer
    return {'peer_address': peer[0], 'peer_port': peer[1], 'accept_address': accept[0],
            'accept_port': accept[1], 'proxy_port': proxy_port, 'listen_port': 8080,
            'payload_ok': True}


def test_verdict_rewritten():
    plan = tp.resolve_params({})
    result, message = tp.verdict(plan, observed(('203.0.113.7', 4242)))
    assert message is None
    assert result['rewritten'] and result['matches']
    assert result['peer_state'] == result['accept_state'] == 'rewritten'


def test_verdict_unrewritten_when_rewritten_expected():
    plan = tp.resolve_params({})
    result, message = tp.verdict(plan, observed(('192.0.2.2', 45000)))
    assert not result['rewritten'] and not result['matches']
    assert message.startswith('TOA did not rewrite the peer: expected the TOA address '
                              '203.0.113.7 port 4242, but getpeername() returned 192.0.2.2 port '
                              '45000 and accept() returned 192.0.2.2 port 45000')
    assert 'no TOA module rewrote the peer' in message


def test_verdict_accept_not_rewritten_is_a_failure():
    plan = tp.resolve_params({})
    result, message = tp.verdict(plan, observed(('203.0.113.7', 4242), ('192.0.2.2', 45000)))
    assert result['rewritten'] and not result['matches']
    assert 'getpeername() is rewritten but accept() is not' in message


def test_verdict_address_without_port_is_other():
    for expect in ('rewritten', 'unrewritten', 'any'):
        plan = tp.resolve_params({'expect': expect})
        result, message = tp.verdict(plan, observed(('203.0.113.7', 45000)))
        assert result['peer_state'] == 'other' and not result['matches']
        assert 'neither the TOA' in message


def test_verdict_unrewritten_expected():
    plan = tp.resolve_params({'expect': 'unrewritten', 'proxy_address': '198.51.100.9'})
    result, message = tp.verdict(plan, observed(('198.51.100.9', 45000)))
    assert message is None and result['matches'] and not result['rewritten']
    result, message = tp.verdict(plan, observed(('203.0.113.7', 4242)))
    assert not result['matches']
    assert message.startswith('expected the real proxy address 198.51.100.9 port 45000, but')


def test_verdict_any_and_mapped_addresses():
    plan = tp.resolve_params({'family': 'ipv4_on_ipv6', 'expect': 'any'})
    result, message = tp.verdict(plan, observed(('::ffff:203.0.113.7', 4242)))
    assert message is None and result['rewritten']
    result, message = tp.verdict(plan, observed(('::ffff:192.0.2.2', 45000)))
    assert message is None and not result['rewritten'] and result['matches']
    plan = tp.resolve_params({'family': 'ipv4_on_ipv6'})
    result, message = tp.verdict(plan, observed(('203.0.113.7', 4242)))
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
    monkeypatch.setattr(tp.os, 'geteuid', lambda: 0)
    real_exists = os.path.exists
    monkeypatch.setattr(tp.os.path, 'exists',
                        lambda path: True if path == tp.TUN_PATH else real_exists(path))
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
    monkeypatch.setattr(tp.os, 'geteuid', lambda: 1000)
    with pytest.raises(FailJson) as info:
        run_main({})
    assert 'must run as root' in info.value.args[0]['msg']
    assert 'become: true' in info.value.args[0]['msg']


def test_main_needs_tun(ansible_module, monkeypatch):
    monkeypatch.setattr(tp.os.path, 'exists', lambda path: False)
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
        assert flags == tp.CLONE_NEWNET
        ctypes.set_errno(self.err)
        return -1


@pytest.mark.parametrize('err,text', [
    (1, 'was refused (EPERM): the probe needs root with CAP_SYS_ADMIN'),
    (22, 'this kernel has no network namespace support (CONFIG_NET_NS)'),
])
def test_unshare_errors(monkeypatch, err, text):
    monkeypatch.setattr(tp, '_libc', lambda: FakeLibc(err))
    with pytest.raises(tp.ProbeError) as info:
        tp._unshare_net()
    assert text in str(info.value)


def test_tun_that_cannot_load(monkeypatch):
    def refuse(path, flags):
        raise OSError(19, 'No such device')
    monkeypatch.setattr(tp.os, 'open', refuse)
    with pytest.raises(tp.ProbeError) as info:
        tp._open_tun('toaprobe0')
    assert 'the tun kernel module is missing or cannot be loaded' in str(info.value)
    assert 'modprobe tun' in str(info.value)


def fake_child_main(behaviour):
    def child(module, plan, write_fd):
        def send(message):
            os.write(write_fd, (json.dumps(message) + '\n').encode('utf-8'))
        send({'stage': 'pid-%d' % os.getpid()})
        behaviour(send, plan)
    return child


def child_pid_from(outcome):
    return int(outcome['stage'].split('-')[1])


def gone(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return True
    return False


def test_run_in_child_collects_result(monkeypatch):
    def behave(send, plan):
        assert plan['child_deadline'] <= time.time() + plan['timeout']
        send({'result': {'peer_address': '192.0.2.2'}})
    monkeypatch.setattr(tp, '_child_main', fake_child_main(behave))
    outcome = tp.run_in_child(None, {'timeout': 5.0})
    assert outcome['result'] == {'peer_address': '192.0.2.2'}
    assert 0 <= outcome['elapsed_ms'] < 5000


def test_run_in_child_kills_a_hanging_child(monkeypatch):
    def behave(send, plan):
        time.sleep(60)
    monkeypatch.setattr(tp, '_child_main', fake_child_main(behave))
    outcome = tp.run_in_child(None, {'timeout': 0.3})
    assert outcome['error'].startswith('the probe timed out after 0.3 s while at stage "pid-')
    assert 250 <= outcome['elapsed_ms'] < 3000
    assert gone(child_pid_from(outcome)), 'the hanging child survived'


def test_run_in_child_reports_a_silent_exit(monkeypatch):
    monkeypatch.setattr(tp, '_child_main', fake_child_main(lambda send, plan: None))
    outcome = tp.run_in_child(None, {'timeout': 5.0})
    assert outcome['error'].startswith('the probe child exited without a result at stage "pid-')
    assert gone(child_pid_from(outcome))


def test_child_errors_are_reported_with_their_stage():
    read_fd, write_fd = os.pipe()

    def probe(module, plan, report):
        report('tun')
        raise tp.ProbeError('cannot open /dev/net/tun')
    original = tp._child_probe
    tp._child_probe = probe
    try:
        tp._child_main(None, {}, write_fd)
    finally:
        tp._child_probe = original
        os.close(write_fd)
    lines = os.read(read_fd, 65536).decode('utf-8').splitlines()
    os.close(read_fd)
    assert [json.loads(line) for line in lines] == [
        {'stage': 'tun'}, {'error': 'cannot open /dev/net/tun', 'stage': 'tun'}]
