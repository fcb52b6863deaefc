# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""IPv4/IPv6 TCP packets with TOA options, and the TUN device they go through.

One place for the packet code of the toa_probe module and of the in-guest
tests (tests/kmod/vm_toa_test.py, vm_abuse.py): addresses, RFC 1071
checksums, TCP options (TOA, MSS), building and parsing whole packets as a
TUN device without packet information reads and writes them, and opening
that device in a private network namespace.

The module imports only the standard library and runs on Python 2.7 and 3:
toa_probe imports it like its other module_utils, the guest tests as a plain
file copied beside them.  Errors are ValueError (bad input) and
OSError/IOError (the kernel said no); callers word them for their readers.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import select
import socket
import struct

IPPROTO_TCP = 6

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

# Experimental TCP Fast Open: kind 254 with this 16-bit magic right after the
# length byte, exactly where a TOA option has its port.
TFO_EXP_MAGIC = 0xF989

TUN_PATH = '/dev/net/tun'
TUNSETIFF = 0x400454ca
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000


# ---------------------------------------------------------------------------
# Addresses
# ---------------------------------------------------------------------------

def pack_address(address):
    """(socket family, packed bytes) of a textual IPv4 or IPv6 address; ValueError if it is none."""
    try:
        text = str(address).strip()
    except UnicodeError:
        raise ValueError('%r is not a valid IP address' % (address,))
    family, name = (socket.AF_INET6, 'IPv6') if ':' in text else (socket.AF_INET, 'IPv4')
    try:
        return family, socket.inet_pton(family, text)
    except (socket.error, ValueError, OSError):
        raise ValueError('%r is not a valid %s address' % (address, name))


def unpack_address(packed):
    """Text form of a packed 4- or 16-byte address."""
    packed = bytes(packed)
    if len(packed) == 4:
        return socket.inet_ntop(socket.AF_INET, packed)
    if len(packed) == 16:
        return socket.inet_ntop(socket.AF_INET6, packed)
    raise ValueError('an address has 4 or 16 bytes, not %d' % len(packed))


def v4_mapped(address):
    """The ::ffff:a.b.c.d form of an IPv4 address, as an AF_INET6 socket reports it."""
    return unpack_address(b'\x00' * 10 + b'\xff\xff' + pack_address(address)[1])


def same_address(left, right):
    """Compare two textual addresses by value (2001:DB8::1 == 2001:db8:0::1); False for non-addresses."""
    try:
        return pack_address(left) == pack_address(right)
    except ValueError:
        return False


def address_problem(packed):
    """Why a packed address cannot be a unicast peer, or None when it can."""
    data = bytearray(packed)
    if len(data) == 4:
        if data[0] == 0:
            return 'is in 0.0.0.0/8 (unspecified)'
        if data[0] == 127:
            return 'is a loopback address'
        if data[0] >= 224:
            return 'is multicast, broadcast or reserved'
        return None
    if not any(data):
        return 'is the unspecified address'
    if data == bytearray(15) + bytearray(b'\x01'):
        return 'is the loopback address'
    if data[0] == 0xff:
        return 'is multicast'
    if data[:12] == bytearray(10) + bytearray(b'\xff\xff'):
        return 'is an IPv4-mapped address (use family=ipv4_on_ipv6 with IPv4 addresses)'
    return None


# ---------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------

def inet_checksum(data):
    """RFC 1071 Internet checksum of bytes (odd lengths padded with a zero byte)."""
    data = bytes(bytearray(data))
    if len(data) % 2:
        data += b'\x00'
    # Summing 16-bit words unpacked in one call: the guest tests checksum
    # every packet they write, under TCG emulation.
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header(src, dst, length, proto=IPPROTO_TCP):
    """IPv4 (RFC 793) or IPv6 (RFC 8200 8.1) pseudo-header for transport checksums."""
    src = bytes(src)
    dst = bytes(dst)
    if len(src) == 4 and len(dst) == 4:
        return src + dst + struct.pack('!BBH', 0, proto, length)
    if len(src) == 16 and len(dst) == 16:
        return src + dst + struct.pack('!I3xB', length, proto)
    raise ValueError('source and destination must both be IPv4 or both IPv6')


# ---------------------------------------------------------------------------
# TCP options
# ---------------------------------------------------------------------------

def pad_options(options, nop_front=False):
    """TCP options padded to a multiple of 4 bytes; ValueError past 40 bytes.

    The padding is end-of-list bytes after the options, or with nop_front
    no-operation bytes before them (the way a proxy aligns an option it adds).
    """
    options = bytes(options)
    pad = -len(options) % 4
    options = b'\x01' * pad + options if nop_front else options + b'\x00' * pad
    if len(options) > 40:
        raise ValueError('TCP options exceed 40 bytes (%d)' % len(options))
    return options


def encode_toa_option(kind, address, port):
    """kind | len | port(2) | address(4 or 16): 8 bytes for IPv4, 20 for IPv6."""
    if not 0 <= int(kind) <= 255:
        raise ValueError('option kind must be 0-255')
    if not 0 <= int(port) <= 65535:
        raise ValueError('port must be 0-65535')
    packed = pack_address(address)[1]
    return struct.pack('!BBH', int(kind), 4 + len(packed), int(port)) + packed


def mss_option(mss=1460):
    return struct.pack('!BBH', 2, 4, mss)


def parse_tcp_options(raw):
    """List of (kind, data bytes) of TCP options; ValueError when malformed."""
    data = bytearray(raw)
    options = []
    index = 0
    while index < len(data):
        kind = data[index]
        if kind == 0:
            break
        if kind == 1:
            index += 1
            continue
        if index + 1 >= len(data):
            raise ValueError('TCP option %d truncated' % kind)
        length = data[index + 1]
        if length < 2 or index + length > len(data):
            raise ValueError('TCP option %d has bad length %d' % (kind, length))
        options.append((kind, bytes(data[index + 2:index + length])))
        index += length
    return options


# ---------------------------------------------------------------------------
# Building packets
# ---------------------------------------------------------------------------

def tcp_header(sport, dport, seq, ack, flags, window=65535, options=b'', data_offset=None):
    """A TCP header with a zero checksum; options go in as given (see pad_options).

    data_offset (in 32-bit words) defaults to the header's real length; the
    abuse test sets other values on purpose.
    """
    options = bytes(options)
    if data_offset is None:
        data_offset = (20 + len(options)) // 4
    return struct.pack('!HHIIHHHH', sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                       (data_offset << 12) | flags, window, 0, 0) + options


def with_tcp_checksum(src, dst, segment, spoil=0):
    """The segment with its checksum over the pseudo-header of packed src/dst filled in.

    A non-zero spoil is XORed into the checksum (a segment the kernel must
    drop); a segment too short to hold a checksum is returned as it is.
    """
    segment = bytes(segment)
    if len(segment) < 18:
        return segment
    csum = inet_checksum(pseudo_header(src, dst, len(segment)) + segment) ^ spoil
    return segment[:16] + struct.pack('!H', csum) + segment[18:]


def build_tcp_segment(src, dst, sport, dport, seq, ack, flags, window=65535,
                      options=b'', payload=b''):
    """A TCP header plus payload, checksummed over the pseudo-header of src/dst (packed)."""
    header = tcp_header(sport, dport, seq, ack, flags, window, pad_options(options))
    return with_tcp_checksum(src, dst, header + bytes(payload))


def ip_header(src, dst, payload_length, ident=0, ttl=64, proto=IPPROTO_TCP):
    """IPv4 header (don't fragment, checksum filled in) or IPv6 header, by the packed addresses."""
    src = bytes(src)
    dst = bytes(dst)
    if len(src) == 16 and len(dst) == 16:
        return struct.pack('!IHBB16s16s', 6 << 28, payload_length, proto, ttl, src, dst)
    if len(src) != 4 or len(dst) != 4:
        raise ValueError('source and destination must both be IPv4 or both IPv6')
    header = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + payload_length, ident & 0xFFFF,
                         0x4000, ttl, proto, 0, src, dst)
    return header[:10] + struct.pack('!H', inet_checksum(header)) + header[12:]


def build_packet(src, dst, sport, dport, seq, ack, flags, options=b'', payload=b'',
                 window=65535, ident=0):
    """A complete IPv4 or IPv6 TCP packet between textual addresses, checksums filled in."""
    family_src, psrc = pack_address(src)
    family_dst, pdst = pack_address(dst)
    if family_src != family_dst:
        raise ValueError('source and destination address families differ')
    segment = build_tcp_segment(psrc, pdst, sport, dport, seq, ack, flags, window,
                                options, payload)
    return ip_header(psrc, pdst, len(segment), ident) + segment


# ---------------------------------------------------------------------------
# Parsing packets
# ---------------------------------------------------------------------------

def parse_packet(raw):
    """Decode an IPv4 or IPv6 TCP packet as read from a TUN device (no packet info).

    Returns a dict, or None for anything that is not a complete TCP packet (ICMPv6,
    router solicitations, extension headers and so on).
    """
    data = bytearray(raw)
    if not data:
        return None
    version = data[0] >> 4
    if version == 4:
        if len(data) < 20:
            return None
        ihl = (data[0] & 0x0F) * 4
        total = (data[2] << 8) | data[3]
        if ihl < 20 or total < ihl or total > len(data) or data[9] != IPPROTO_TCP:
            return None
        src, dst = bytes(data[12:16]), bytes(data[16:20])
        segment = data[ihl:total]
        ip_ok = inet_checksum(data[:ihl]) == 0
    elif version == 6:
        if len(data) < 40:
            return None
        plen = (data[4] << 8) | data[5]
        if data[6] != IPPROTO_TCP or 40 + plen > len(data):
            return None
        src, dst = bytes(data[8:24]), bytes(data[24:40])
        segment = data[40:40 + plen]
        ip_ok = True
    else:
        return None
    if len(segment) < 20:
        return None
    offset = (segment[12] >> 4) * 4
    if offset < 20 or offset > len(segment):
        return None
    sport, dport, seq, ack = struct.unpack('!HHII', bytes(segment[:12]))
    try:
        options = parse_tcp_options(segment[20:offset])
    except ValueError:
        options = None
    return {
        'version': version,
        'src': unpack_address(src),
        'dst': unpack_address(dst),
        'sport': sport,
        'dport': dport,
        'seq': seq,
        'ack': ack,
        'flags': segment[13],
        'window': (segment[14] << 8) | segment[15],
        'options': options,
        'payload': bytes(segment[offset:]),
        'ip_checksum_ok': ip_ok,
        'tcp_checksum_ok': inet_checksum(pseudo_header(src, dst, len(segment)) + segment) == 0,
    }


def is_synack_for(packet, listen_address, listen_port, proxy_address, proxy_port, isn):
    """Whether a parsed packet is the listener's SYN-ACK to our SYN with sequence number isn."""
    return bool(
        packet
        and packet['sport'] == listen_port and packet['dport'] == proxy_port
        and same_address(packet['src'], listen_address)
        and same_address(packet['dst'], proxy_address)
        and packet['flags'] & (TCP_SYN | TCP_ACK | TCP_RST) == (TCP_SYN | TCP_ACK)
        and packet['ack'] == (isn + 1) & 0xFFFFFFFF)


def is_reset_for(packet, listen_port, proxy_port):
    return bool(packet and packet['sport'] == listen_port and packet['dport'] == proxy_port
                and packet['flags'] & TCP_RST)


def describe_packet(raw):
    """One-line summary of a packet read from a TUN device, for error messages."""
    packet = parse_packet(raw)
    data = bytearray(raw)
    if packet is None:
        version = data[0] >> 4 if data else 0
        proto = data[9] if version == 4 and len(data) > 9 else (data[6] if len(data) > 6 else -1)
        return 'non-TCP IPv%d packet, protocol %d, %d bytes' % (version, proto, len(data))
    names = ''.join(name for bit, name in ((TCP_SYN, 'S'), (TCP_ACK, 'A'), (TCP_RST, 'R'),
                                           (TCP_FIN, 'F'), (TCP_PSH, 'P')) if packet['flags'] & bit)
    return '%s.%d > %s.%d [%s]' % (packet['src'], packet['sport'], packet['dst'],
                                   packet['dport'], names or '.')


# ---------------------------------------------------------------------------
# Namespace and TUN device
# ---------------------------------------------------------------------------

def libc():
    import ctypes
    return ctypes.CDLL(None, use_errno=True)


def unshare(flags=CLONE_NEWNET):
    """unshare(2) for this process (a new network namespace by default); OSError on failure."""
    import ctypes
    if libc().unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, 'unshare: %s' % os.strerror(err))


def attach_tun(fd, name):
    """Make an open /dev/net/tun descriptor the TUN device name (IPv4/IPv6 packets, no packet info)."""
    import fcntl
    fcntl.ioctl(fd, TUNSETIFF, struct.pack('16sH22x', name.encode('ascii'), IFF_TUN | IFF_NO_PI))


def open_tun(name):
    """File descriptor of a new TUN device name; OSError/IOError when the kernel refuses."""
    fd = os.open(TUN_PATH, os.O_RDWR)
    try:
        attach_tun(fd, name)
    except (IOError, OSError):
        os.close(fd)
        raise
    return fd


def readable(fds, timeout):
    """The readable subset of fds, waiting at most timeout seconds (EINTR retried)."""
    while True:
        try:
            return select.select(fds, [], [], timeout)[0]
        except (select.error, OSError, IOError) as exc:
            if (exc.args[0] if exc.args else None) != errno.EINTR:
                raise
