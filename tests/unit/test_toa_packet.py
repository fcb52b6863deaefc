"""Unit tests for module_utils/toa_packet.py: checksums, options, packets, the TUN helpers.

The packet code of toa_probe and of the in-guest tests (tests/kmod/); pure, no root needed.
"""

import binascii
import errno
import os
import socket
import struct

import pytest

import toa_packet as pk  # tests/unit/conftest.py puts module_utils/ on sys.path


# SYN-ACKs written by the Linux 6.18 kernel to the probe's TUN device (answers to the probe's
# SYN with MSS 1460): their checksums were computed by the kernel, not by this code.
KERNEL_SYNACK_V4 = binascii.unhexlify(
    '4500002c000040004006b6c8c0000201c0000202d305b299b0ea2fec1910ba2d6012faf0df6d0000020405b4')
KERNEL_SYNACK_V6 = binascii.unhexlify(
    '600651700018064020010db800000000000000000000000120010db8000000000000000000000002'
    'be79cb90d52751b69dda542b6012fd209ca60000020405a0')


def decode_toa_option(raw):
    """(kind, address, port) of one TOA option, read independently of toa_packet.

    Only these tests read TOA options in Python (the kernel module reads them
    on the hosts), so the decoder lives here and checks encode_toa_option.
    """
    data = bytes(raw)
    assert len(data) in (8, 20) and bytearray(data)[1] == len(data), binascii.hexlify(data)
    family = socket.AF_INET if len(data) == 8 else socket.AF_INET6
    return (bytearray(data)[0], socket.inet_ntop(family, data[4:]),
            struct.unpack('!H', data[2:4])[0])


# ---------------------------------------------------------------------------
# checksums
# ---------------------------------------------------------------------------

def test_checksum_rfc1071_example():
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2 (one's complement).
    assert pk.inet_checksum(binascii.unhexlify('0001f203f4f5f6f7')) == 0xFFFF - 0xddf2


def test_checksum_of_well_known_ipv4_header():
    header = binascii.unhexlify('450000730000400040110000c0a80001c0a800c7')
    assert pk.inet_checksum(header) == 0xb861
    with_sum = header[:10] + struct.pack('!H', 0xb861) + header[12:]
    assert pk.inet_checksum(with_sum) == 0


def test_checksum_odd_length_pads_with_zero():
    assert pk.inet_checksum(b'\x12\x34\x56') == pk.inet_checksum(b'\x12\x34\x56\x00')
    assert pk.inet_checksum(b'') == 0xFFFF


def test_kernel_synack_v4_checksums_match_ours():
    packet = pk.parse_packet(KERNEL_SYNACK_V4)
    assert packet['ip_checksum_ok'] and packet['tcp_checksum_ok']
    # Rebuilding it from its fields reproduces the kernel's bytes, checksums included.
    rebuilt = pk.build_packet(packet['src'], packet['dst'], packet['sport'], packet['dport'],
                              packet['seq'], packet['ack'], packet['flags'],
                              options=pk.mss_option(1460), window=packet['window'], ident=0)
    assert rebuilt == KERNEL_SYNACK_V4


def test_kernel_synack_v6_checksum_matches_ours():
    packet = pk.parse_packet(KERNEL_SYNACK_V6)
    assert packet['tcp_checksum_ok']
    rebuilt = pk.build_packet(packet['src'], packet['dst'], packet['sport'], packet['dport'],
                              packet['seq'], packet['ack'], packet['flags'],
                              options=pk.mss_option(1440), window=packet['window'])
    # Same TCP segment (checksum over the IPv6 pseudo-header); the kernel sets a flow label.
    assert rebuilt[40:] == KERNEL_SYNACK_V6[40:]
    assert rebuilt[4:40] == KERNEL_SYNACK_V6[4:40]


def test_corrupted_segment_fails_checksum():
    broken = bytearray(KERNEL_SYNACK_V4)
    broken[-1] ^= 0x01
    assert pk.parse_packet(bytes(broken))['tcp_checksum_ok'] is False


def test_pseudo_headers():
    v4 = pk.pseudo_header(b'\x01\x02\x03\x04', b'\x05\x06\x07\x08', 40)
    assert v4 == b'\x01\x02\x03\x04\x05\x06\x07\x08\x00\x06\x00\x28'
    v6 = pk.pseudo_header(b'\x00' * 16, b'\xff' * 16, 0x10203)
    assert v6[32:] == b'\x00\x01\x02\x03\x00\x00\x00\x06'
    with pytest.raises(ValueError):
        pk.pseudo_header(b'\x00' * 4, b'\x00' * 16, 20)


# ---------------------------------------------------------------------------
# TOA option encoding
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('kind', [200, 254, 253])
def test_ipv4_option_encoding(kind):
    raw = pk.encode_toa_option(kind, '203.0.113.7', 4242)
    assert raw == struct.pack('!BB', kind, 8) + b'\x10\x92' + b'\xcb\x00\x71\x07'
    assert decode_toa_option(raw) == (kind, '203.0.113.7', 4242)


@pytest.mark.parametrize('kind', [253, 254])
def test_ipv6_option_encoding(kind):
    raw = pk.encode_toa_option(kind, '2001:db8:7::7', 4242)
    assert len(raw) == 20
    assert raw[:4] == struct.pack('!BBH', kind, 20, 4242)
    assert raw[4:] == binascii.unhexlify('20010db8000700000000000000000007')
    assert decode_toa_option(raw) == (kind, '2001:db8:7::7', 4242)


def test_option_encoding_rejects_bad_values():
    with pytest.raises(ValueError):
        pk.encode_toa_option(256, '203.0.113.7', 1)
    with pytest.raises(ValueError):
        pk.encode_toa_option(200, '203.0.113.7', 70000)
    with pytest.raises(ValueError):
        pk.encode_toa_option(200, 'not-an-address', 1)


@pytest.mark.parametrize('family,segments', [
    ('ipv4', ('203.0.113.7', '192.0.2.2', '192.0.2.1')),
    ('ipv6', ('2001:db8:7::7', '2001:db8::2', '2001:db8::1')),
])
def test_syn_with_mss_and_toa_round_trips(family, segments):
    toa_address, src, dst = segments
    kind = 200 if family == 'ipv4' else 254
    toa = pk.encode_toa_option(kind, toa_address, 4242)
    raw = pk.build_packet(src, dst, 40000, 8080, 0xFFFFFFFF, 0, pk.TCP_SYN,
                          options=pk.mss_option() + toa, ident=7)
    packet = pk.parse_packet(raw)
    assert packet['version'] == (4 if family == 'ipv4' else 6)
    assert (packet['src'], packet['dst']) == (src, dst)
    assert (packet['sport'], packet['dport'], packet['seq'], packet['flags']) == (
        40000, 8080, 0xFFFFFFFF, pk.TCP_SYN)
    assert packet['ip_checksum_ok'] and packet['tcp_checksum_ok']
    assert packet['options'] == [(2, b'\x05\xb4'), (kind, toa[2:])]
    assert decode_toa_option(struct.pack('!BB', kind, len(toa)) + packet['options'][1][1]) == (
        kind, toa_address, 4242)


def test_ack_with_payload_lengths():
    toa = pk.encode_toa_option(200, '203.0.113.7', 4242)
    raw = pk.build_packet('192.0.2.2', '192.0.2.1', 1, 2, 10, 20, pk.TCP_ACK | pk.TCP_PSH,
                          options=toa, payload=b'hello')
    assert struct.unpack('!H', raw[2:4])[0] == len(raw) == 20 + 20 + 8 + 5
    assert raw[20 + 12] >> 4 == 7  # data offset: 28 bytes of header
    packet = pk.parse_packet(raw)
    assert packet['payload'] == b'hello' and packet['tcp_checksum_ok']
    raw6 = pk.build_packet('2001:db8::2', '2001:db8::1', 1, 2, 10, 20, pk.TCP_ACK,
                           options=pk.encode_toa_option(254, '2001:db8:7::7', 1), payload=b'x')
    assert struct.unpack('!H', raw6[4:6])[0] == len(raw6) - 40 == 20 + 20 + 1


def test_pad_options():
    assert pk.pad_options(b'\x01\x01\x01') == b'\x01\x01\x01\x00'
    assert pk.pad_options(b'') == b''
    with pytest.raises(ValueError):
        pk.pad_options(b'\x01' * 41)


def test_build_packet_refuses_mixed_families():
    with pytest.raises(ValueError):
        pk.build_packet('192.0.2.2', '2001:db8::1', 1, 2, 0, 0, pk.TCP_SYN)


# ---------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------

def test_parse_tcp_options_handles_nop_eol_and_errors():
    assert pk.parse_tcp_options(b'\x01\x01\x08\x0a' + b'\x00' * 8 + b'\x00\xff') == [
        (8, b'\x00' * 8)]
    with pytest.raises(ValueError):
        pk.parse_tcp_options(b'\xc8')
    with pytest.raises(ValueError):
        pk.parse_tcp_options(b'\xc8\x01')
    with pytest.raises(ValueError):
        pk.parse_tcp_options(b'\xc8\x0a\x00')


def test_parse_ignores_non_tcp_and_truncated():
    assert pk.parse_packet(b'') is None
    assert pk.parse_packet(KERNEL_SYNACK_V4[:30]) is None
    udp = bytearray(KERNEL_SYNACK_V4)
    udp[9] = 17
    assert pk.parse_packet(bytes(udp)) is None
    icmp6 = bytearray(KERNEL_SYNACK_V6)
    icmp6[6] = 58
    assert pk.parse_packet(bytes(icmp6)) is None
    assert pk.parse_packet(b'\x50' + b'\x00' * 40) is None


def test_parse_kernel_synack_fields():
    packet = pk.parse_packet(KERNEL_SYNACK_V4)
    assert packet['src'] == '192.0.2.1' and packet['dst'] == '192.0.2.2'
    assert packet['flags'] == pk.TCP_SYN | pk.TCP_ACK
    assert packet['options'] == [(2, b'\x05\xb4')]
    assert packet['payload'] == b''
    isn = (packet['ack'] - 1) & 0xFFFFFFFF
    assert pk.is_synack_for(packet, '192.0.2.1', packet['sport'], '192.0.2.2', packet['dport'], isn)
    assert not pk.is_synack_for(packet, '192.0.2.1', packet['sport'], '192.0.2.2', packet['dport'], isn + 1)
    assert not pk.is_synack_for(packet, '192.0.2.1', packet['sport'] + 1, '192.0.2.2', packet['dport'], isn)
    assert not pk.is_synack_for(packet, '192.0.2.1', packet['sport'], '192.0.2.9', packet['dport'], isn)
    assert not pk.is_synack_for(None, '192.0.2.1', 1, '192.0.2.2', 2, 0)
    six = pk.parse_packet(KERNEL_SYNACK_V6)
    assert six['src'] == '2001:db8::1' and six['dst'] == '2001:db8::2'
    assert pk.is_synack_for(six, '2001:DB8:0::1', six['sport'], '2001:db8::2', six['dport'],
                            (six['ack'] - 1) & 0xFFFFFFFF)


def test_isn_wraps_around():
    raw = pk.build_packet('192.0.2.1', '192.0.2.2', 80, 40000, 5, 0, pk.TCP_SYN | pk.TCP_ACK)
    assert pk.is_synack_for(pk.parse_packet(raw), '192.0.2.1', 80, '192.0.2.2', 40000, 0xFFFFFFFF)


def test_describe_packet():
    assert pk.describe_packet(KERNEL_SYNACK_V4) == '192.0.2.1.54021 > 192.0.2.2.45721 [SA]'
    assert pk.describe_packet(KERNEL_SYNACK_V6).startswith('2001:db8::1.')
    icmp6 = bytearray(KERNEL_SYNACK_V6)
    icmp6[6] = 58
    assert pk.describe_packet(bytes(icmp6)) == 'non-TCP IPv6 packet, protocol 58, 64 bytes'
    assert pk.describe_packet(b'') == 'non-TCP IPv0 packet, protocol -1, 0 bytes'


def test_reset_detection():
    rst = pk.parse_packet(pk.build_packet('192.0.2.1', '192.0.2.2', 80, 40000, 0, 1,
                                          pk.TCP_RST | pk.TCP_ACK))
    assert pk.is_reset_for(rst, 80, 40000)
    assert not pk.is_synack_for(rst, '192.0.2.1', 80, '192.0.2.2', 40000, 0)


def test_address_helpers():
    assert pk.v4_mapped('203.0.113.7') == '::ffff:203.0.113.7'
    assert pk.same_address('::FFFF:203.0.113.7', '::ffff:cb00:7107')
    assert not pk.same_address('203.0.113.7', '::ffff:203.0.113.7')
    assert not pk.same_address('garbage', 'garbage')
    assert pk.pack_address('192.0.2.1') == (socket.AF_INET, b'\xc0\x00\x02\x01')




# ---------------------------------------------------------------------------
# checksums against the definition, headers built field by field
# ---------------------------------------------------------------------------

def reference_checksum(data):
    """RFC 1071 word by word, the slow way, to hold the fast one to."""
    data = bytearray(data)
    if len(data) % 2:
        data.append(0)
    total = 0
    for index in range(0, len(data), 2):
        total += (data[index] << 8) | data[index + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@pytest.mark.parametrize('length', [1, 2, 3, 20, 59, 1500, 65535])
def test_checksum_equals_the_definition(length):
    data = bytes(bytearray((index * 37 + 11) & 0xFF for index in range(length)))
    assert pk.inet_checksum(data) == reference_checksum(data)
    assert pk.inet_checksum(bytearray(data)) == reference_checksum(data)
    # all-ones words: the end-around carry must fold more than once
    assert pk.inet_checksum(b'\xff' * length) == reference_checksum(b'\xff' * length)


def test_ipv4_header_fields_and_checksum():
    header = pk.ip_header(b'\xc0\x00\x02\x02', b'\xc0\x00\x02\x01', 28, ident=0x1234, ttl=7)
    assert header == binascii.unhexlify('4500003012344000' + '0706' + '%04x' % pk.inet_checksum(
        binascii.unhexlify('450000301234400007060000c0000202c0000201')) + 'c0000202c0000201')
    assert pk.inet_checksum(header) == 0
    # the identification is 16 bits: the probe adds to a random one
    assert pk.ip_header(b'\x01' * 4, b'\x02' * 4, 0, ident=0x10001)[4:6] == b'\x00\x01'


def test_ipv6_header_fields():
    header = pk.ip_header(b'\x20' + b'\x00' * 15, b'\x20' + b'\x01' * 15, 0x0102, ttl=9)
    assert header[:8] == binascii.unhexlify('6000000001020609')
    assert len(header) == 40
    with pytest.raises(ValueError):
        pk.ip_header(b'\x00' * 4, b'\x00' * 16, 20)


def test_tcp_header_fields_and_free_data_offset():
    header = pk.tcp_header(1, 2, 0x1FFFFFFFF, -1, pk.TCP_SYN, window=512, options=b'\x01' * 4)
    assert struct.unpack('!HHIIHHHH', header[:20]) == (
        1, 2, 0xFFFFFFFF, 0xFFFFFFFF, (6 << 12) | pk.TCP_SYN, 512, 0, 0)
    # the abuse test lies about the header length on purpose
    assert pk.tcp_header(1, 2, 0, 0, pk.TCP_ACK, data_offset=15)[12] >> 4 == 15


def test_segment_checksum_can_be_spoilt_and_short_segments_stay_as_they_are():
    src, dst = b'\xc0\x00\x02\x02', b'\xc0\x00\x02\x01'
    segment = pk.tcp_header(1, 2, 3, 4, pk.TCP_ACK) + b'data'
    good = pk.with_tcp_checksum(src, dst, segment)
    assert pk.inet_checksum(pk.pseudo_header(src, dst, len(good)) + good) == 0
    bad = pk.with_tcp_checksum(src, dst, segment, spoil=0x5a5a)
    assert struct.unpack('!H', bad[16:18])[0] == struct.unpack('!H', good[16:18])[0] ^ 0x5a5a
    assert pk.with_tcp_checksum(src, dst, segment[:17]) == segment[:17]
    # a truncated segment is checksummed over what is left of it
    cut = pk.with_tcp_checksum(src, dst, segment[:19])
    assert pk.inet_checksum(pk.pseudo_header(src, dst, 19) + cut) == 0


# ---------------------------------------------------------------------------
# options: round trips and malformed input
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('kind,address,port', [
    (200, '198.18.0.1', 1), (200, '255.255.255.255', 65535), (253, '::1', 0),
    (254, 'fe80::1:2:3:4', 80), (199, '10.0.0.1', 4242), (255, '2001:db8:ffff::', 4242),
])
def test_toa_option_round_trips(kind, address, port):
    raw = pk.encode_toa_option(kind, address, port)
    assert decode_toa_option(raw) == (kind, address, port)
    # the same bytes survive a trip through a segment's option area, padded either way
    for nop_front in (False, True):
        area = pk.pad_options(pk.mss_option(536) + raw, nop_front=nop_front)
        assert len(area) % 4 == 0
        assert pk.parse_tcp_options(area) == [(2, b'\x02\x18'), (kind, raw[2:])]


def test_nop_front_padding():
    assert pk.pad_options(b'\xc8\x08', nop_front=True) == b'\x01\x01\xc8\x08'
    assert pk.pad_options(b'\x01' * 40, nop_front=True) == b'\x01' * 40
    with pytest.raises(ValueError):
        pk.pad_options(b'\xc8' * 41, nop_front=True)


@pytest.mark.parametrize('area', [
    b'\x02', b'\x02\x04\x05', b'\x08\x00' + b'\x00' * 8, b'\x08\x01\x00\x00', b'\xc8\xff\x00\x00',
    b'\xc8\x09' + b'\x00' * 6,                     # a TOA option one byte longer than the area
    b'\x01\x01\xfe\x14' + b'\x00' * 16,            # an IPv6 one cut short by 2 bytes
])
def test_malformed_option_areas_are_refused(area):
    with pytest.raises(ValueError):
        pk.parse_tcp_options(area)


def test_malformed_packets_parse_to_none():
    good = pk.build_packet('192.0.2.2', '192.0.2.1', 1, 2, 0, 0, pk.TCP_SYN, options=pk.mss_option())
    assert pk.parse_packet(good) is not None
    ihl_short = bytearray(good)
    ihl_short[0] = 0x44                      # IHL 16 bytes
    total_long = bytearray(good)
    total_long[3] += 1                       # total length past the data
    doff_long = bytearray(good)
    doff_long[32] = 0xF0                     # data offset 60 bytes in a 24-byte segment
    doff_short = bytearray(good)
    doff_short[32] = 0x40                    # data offset 16 bytes
    for broken in (ihl_short, total_long, doff_long, doff_short, good[:39]):
        assert pk.parse_packet(bytes(broken)) is None, binascii.hexlify(bytes(broken))
    # a bad option area still parses, with no options
    junk = pk.build_packet('192.0.2.2', '192.0.2.1', 1, 2, 0, 0, pk.TCP_SYN, options=b'\xc8\x30')
    packet = pk.parse_packet(junk)
    assert packet['options'] is None and packet['tcp_checksum_ok']
    v6_long = bytearray(pk.build_packet('2001:db8::2', '2001:db8::1', 1, 2, 0, 0, pk.TCP_SYN))
    v6_long[5] += 1                          # payload length past the data
    assert pk.parse_packet(bytes(v6_long)) is None


def test_bad_addresses():
    with pytest.raises(ValueError) as info:
        pk.pack_address('203.0.113.300')
    assert str(info.value) == "'203.0.113.300' is not a valid IPv4 address"
    with pytest.raises(ValueError) as info:
        pk.pack_address('2001:db8::g')
    assert 'is not a valid IPv6 address' in str(info.value)
    with pytest.raises(ValueError):
        pk.unpack_address(b'\x00' * 5)
    assert pk.address_problem(pk.pack_address('::ffff:192.0.2.1')[1]).startswith('is an IPv4-mapped')
    assert pk.address_problem(pk.pack_address('198.51.100.9')[1]) is None
    assert pk.address_problem(pk.pack_address('2001:db8::2')[1]) is None


# ---------------------------------------------------------------------------
# namespace, TUN device, waiting (no root: the kernel's refusals are faked)
# ---------------------------------------------------------------------------

class RefusingLibc(object):
    def unshare(self, flags):
        import ctypes
        assert flags == pk.CLONE_NEWNET
        ctypes.set_errno(errno.EPERM)
        return -1


def test_unshare_raises_the_errno(monkeypatch):
    monkeypatch.setattr(pk, 'libc', RefusingLibc)
    with pytest.raises(OSError) as info:
        pk.unshare()
    assert info.value.errno == errno.EPERM


def test_open_tun_closes_the_descriptor_when_the_ioctl_fails(monkeypatch):
    # /dev/null is no TUN device: TUNSETIFF on it fails, as it does without CAP_NET_ADMIN.
    monkeypatch.setattr(pk, 'TUN_PATH', os.devnull)
    closed = []
    real_close = os.close

    def close(fd):
        closed.append(fd)
        real_close(fd)
    monkeypatch.setattr(pk.os, 'close', close)
    with pytest.raises((IOError, OSError)):
        pk.open_tun('toatest0')
    assert len(closed) == 1


def test_readable_retries_after_a_signal(monkeypatch):
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b'x')
        calls = []
        real_select = pk.select.select

        def interrupted(*args):
            calls.append(args)
            if len(calls) == 1:
                raise OSError(errno.EINTR, 'Interrupted system call')
            return real_select(*args)
        monkeypatch.setattr(pk.select, 'select', interrupted)
        assert pk.readable([read_fd], 1.0) == [read_fd]
        assert len(calls) == 2
        monkeypatch.setattr(pk.select, 'select', lambda *args: (_ for _ in ()).throw(
            OSError(errno.EBADF, 'Bad file descriptor')))
        with pytest.raises(OSError):
            pk.readable([read_fd], 0)
    finally:
        os.close(read_fd)
        os.close(write_fd)
