# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TOA module parameters in the form the kernel reads them back: pure logic, no I/O.

The module normalises what it is given (roles/toa/files/toa-src/toa_cfg.c):
option kinds read back ascending and unique, trusted_cidrs with host bits
cleared, IPv4 dotted, IPv6 as printk's %pI6c, a bare address with its full
prefix length, in the order given; bools read back Y/N.  Comparing the raw
value asked for with that readback would write sysfs on every run, so
toa_module compares canonical() of both.  A value canonical() cannot read
stays as its stripped text: the kernel will refuse it, and says why.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

KIND_PARAMS = ("ipv4_kinds", "ipv6_kinds")
CIDR_PARAMS = ("trusted_cidrs",)
BOOL_PARAMS = ("enabled", "syn_toa")
INT_PARAMS = ("max_entries", "netns_max_entries", "buckets", "maxactive")

# TCP option kinds the kernel's own TCP stack sends or reads.  A TOA kind
# among them would take, say, every segment's timestamps for a client address.
RESERVED_KINDS = {
    0: "end of options",
    1: "NOP",
    2: "MSS",
    3: "window scale",
    4: "SACK permitted",
    5: "SACK",
    8: "timestamps",
    19: "TCP MD5 signature",
    29: "TCP-AO",
    30: "MPTCP",
    34: "TCP Fast Open",
}

_DIGITS_RE = re.compile(r"^\+?[0-9]+$")  # kstrtouint(base 10) takes a leading +
_NUMBER_RE = re.compile(r"^[0-9]+$")
_HEX_GROUP_RE = re.compile(r"^[0-9A-Fa-f]{1,4}$")
_TRUE_FIRST = "yYtT1"
_FALSE_FIRST = "nNfF0"


def _tokens(text):
    """Comma-separated items, each stripped, empty ones skipped (as the kernel does)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_kinds(text):
    """Sorted unique option kinds of a kinds value, or None when an item is not a number."""
    kinds = set()
    for item in _tokens(text):
        if not _DIGITS_RE.match(item):
            return None
        kinds.add(int(item))
    return sorted(kinds)


def _ipv4_bytes(text):
    parts = text.split(".")
    if len(parts) != 4 or not all(_NUMBER_RE.match(part) for part in parts):
        return None
    values = [int(part) for part in parts]
    if any(value > 255 for value in values):
        return None
    return values


def _ipv6_words(text):
    """Eight 16-bit words of an IPv6 address (with an optional dotted IPv4 tail)."""
    if text.count("::") > 1:
        return None
    head, sep, tail = text.partition("::")

    def words(part):
        if not part:
            return []
        found = []
        items = part.split(":")
        for index, item in enumerate(items):
            if index == len(items) - 1 and "." in item:
                quad = _ipv4_bytes(item)
                if quad is None:
                    return None
                found += [quad[0] << 8 | quad[1], quad[2] << 8 | quad[3]]
            elif _HEX_GROUP_RE.match(item):
                found.append(int(item, 16))
            else:
                return None
        return found

    first = words(head)
    last = words(tail)
    if first is None or last is None:
        return None
    if sep and "." in head:
        return None  # a dotted quad ends the address
    missing = 8 - len(first) - len(last)
    if (sep and missing < 1) or (not sep and missing != 0):
        return None
    return first + [0] * missing + last


def _mask(words, width, plen):
    """Clear every bit after the first plen bits of a list of width-bit words."""
    masked = []
    for word in words:
        keep = max(0, min(width, plen))
        masked.append(word & (((1 << keep) - 1) << (width - keep)))
        plen -= width
    return masked


def format_ipv6(words):
    """An address as printk's %pI6c writes it (lib/vsprintf.c ip6_compressed_string)."""
    mapped = words[:5] == [0, 0, 0, 0, 0] and words[5] == 0xffff
    isatap = (words[4] | 0x0200) == 0x0200 and words[5] == 0x5efe
    count = 6 if mapped or isatap else 8
    best_at, best_len = -1, 1  # a single zero word is never compressed
    for start in range(count):
        length = 0
        while start + length < count and words[start + length] == 0:
            length += 1
        if length > best_len:
            best_at, best_len = start, length
    out = ""
    need_colon = False
    index = 0
    while index < count:
        if index == best_at:
            out += "::" if (need_colon or index == 0) else ":"
            need_colon = False
            index += best_len
            continue
        if need_colon:
            out += ":"
        out += "%x" % words[index]
        need_colon = True
        index += 1
    if count == 6:
        if need_colon:
            out += ":"
        out += "%d.%d.%d.%d" % (words[6] >> 8, words[6] & 0xff, words[7] >> 8, words[7] & 0xff)
    return out


def canonical_cidr(item):
    """One trusted_cidrs item as the kernel reads it back, or None when it cannot parse it."""
    address, slash, prefix = item.partition("/")
    if ":" in address:
        words = _ipv6_words(address)
        width, count, top = 16, 8, 128
    else:
        words = _ipv4_bytes(address)
        width, count, top = 8, 4, 32
    if words is None:
        return None
    plen = top
    if slash:
        if not _DIGITS_RE.match(prefix) or int(prefix) > top:
            return None
        plen = int(prefix)
    words = _mask(words, width, plen)
    if count == 4:
        text = ".".join(str(value) for value in words)
    else:
        text = format_ipv6(words)
    return "%s/%d" % (text, plen)


def parse_bool(text):
    """True or False as kstrtobool reads text; None when it reads neither."""
    if not text:
        return None
    if text[0] in _TRUE_FIRST:
        return True
    if text[0] in _FALSE_FIRST:
        return False
    if text[0] in "oO" and len(text) > 1:
        if text[1] in "nN":
            return True
        if text[1] in "fF":
            return False
    return None


def parse_int(text):
    """A number as kstrtoint(base 0) reads it (0x hex, leading 0 octal), or None."""
    match = re.match(r"^([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$", text)
    if not match:
        return None
    sign, digits = match.groups()
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    return -value if sign == "-" else value


def canonical(name, value):
    """The value of parameter `name` in the form the kernel reads it back.

    Kinds: "200,254"; CIDRs: "10.0.0.0/8,2001:db8::/32"; bools: "Y"/"N";
    numbers: decimal.  Anything else (an unknown parameter, a value the
    kernel would refuse) is the value stripped of surrounding whitespace.
    """
    text = "" if value is None else ("%s" % (value,)).strip()
    if text == "(null)":  # how sysfs shows an unset string parameter
        text = ""
    result = None
    if name in KIND_PARAMS:
        kinds = parse_kinds(text)
        result = None if kinds is None else ",".join(str(kind) for kind in kinds)
    elif name in CIDR_PARAMS:
        items = [canonical_cidr(item) for item in _tokens(text)]
        result = None if None in items else ",".join(items)
    elif name in BOOL_PARAMS:
        flag = parse_bool(text)
        result = None if flag is None else ("Y" if flag else "N")
    elif name in INT_PARAMS:
        number = parse_int(text)
        result = None if number is None else str(number)
    return text if result is None else result


def same_value(name, wanted, current):
    """True when the kernel's readback `current` already says what `wanted` asks for."""
    if current is None:
        return False
    if canonical(name, wanted) == canonical(name, current):
        return True
    known = KIND_PARAMS + CIDR_PARAMS + BOOL_PARAMS + INT_PARAMS
    current = current.strip()
    if name not in known and current in ("Y", "N"):
        # A bool parameter this file does not list: sysfs shows Y or N.
        return parse_bool(("%s" % (wanted,)).strip()) == (current == "Y")
    return False


def kinds_problems(params, label="toa_params"):
    """Messages for ipv4_kinds/ipv6_kinds values the role refuses, [] when they are fine.

    label names the dict in the messages (toa_params for the role, params for toa_module).
    """
    found = []
    for name in KIND_PARAMS:
        if name not in params:
            continue
        value = params[name]
        if isinstance(value, (list, tuple)):
            value = ",".join("%s" % (item,) for item in value)
        text = "" if value is None else "%s" % (value,)
        items = _tokens(text)
        bad = [item for item in items
               if not _DIGITS_RE.match(item) or not 2 <= int(item) <= 255]
        if bad:
            found.append("%s.%s has %s: option kinds are whole numbers from 2 to 255, "
                         "comma-separated (for example \"200\" or \"253,254\")."
                         % (label, name, ", ".join("'%s'" % item for item in bad)))
            continue
        if name == "ipv4_kinds" and not items:
            found.append("%s.ipv4_kinds is empty: the module would honour no IPv4 TOA "
                         "option. Set it to the kind your proxies send (200 is the common one; "
                         "253 or 254 on some)." % label)
            continue
        taken = sorted(set(int(item) for item in items) & set(RESERVED_KINDS))
        if taken:
            found.append("%s.%s has %s: the kernel's TCP uses %s, and reading "
                         "%s as TOA would turn those options into client addresses. Use the "
                         "kind your proxies send instead (200 is the common IPv4 one, 253 and "
                         "254 the IPv6 ones)."
                         % (label, name, ", ".join(["%d (%s)" % (kind, RESERVED_KINDS[kind])
                                                   for kind in taken]),
                            "that kind" if len(taken) == 1 else "those kinds",
                            "it" if len(taken) == 1 else "them"))
    return found
