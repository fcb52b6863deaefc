"""module_utils/toa_params.py: parameters compared in the form toa_cfg.c reads them back."""

import pytest
from toa_params import canonical, canonical_cidr, format_ipv6, kinds_problems, same_value


# -- equivalent spellings are the same value ---------------------------------------

@pytest.mark.parametrize("name, wanted, readback", [
    # kinds: the kernel prints a bitmap, ascending and unique
    ("ipv4_kinds", "254,200", "200,254"),
    ("ipv4_kinds", "200,200", "200"),
    ("ipv6_kinds", " 253 , 254 ", "253,254"),
    ("ipv6_kinds", "254,,253,", "253,254"),
    ("ipv4_kinds", "0200", "200"),
    ("ipv6_kinds", "", ""),
    # CIDRs: host bits cleared, order kept
    ("trusted_cidrs", "10.1.2.3/8", "10.0.0.0/8"),
    ("trusted_cidrs", "192.0.2.7", "192.0.2.7/32"),
    ("trusted_cidrs", "010.001.002.003/32", "10.1.2.3/32"),
    ("trusted_cidrs", "2001:DB8::/32", "2001:db8::/32"),
    ("trusted_cidrs", "2001:db8:0:0:0:0:0:1", "2001:db8::1/128"),
    ("trusted_cidrs", "2001:db8:ffff::1/32", "2001:db8::/32"),
    ("trusted_cidrs", "2001:0db8:0000:0001:0000:0000:0000:0000/64", "2001:db8:0:1::/64"),
    ("trusted_cidrs", "::ffff:192.0.2.1/128", "::ffff:192.0.2.1/128"),
    ("trusted_cidrs", "10.0.0.0/8, 2001:db8::/32", "10.0.0.0/8,2001:db8::/32"),
    ("trusted_cidrs", "", "(null)"),
    ("trusted_cidrs", "", ""),
    # bools: sysfs shows Y or N
    ("enabled", "1", "Y"),
    ("enabled", "true", "Y"),
    ("syn_toa", "0", "N"),
    ("syn_toa", "false", "N"),
    ("syn_toa", "off", "N"),
    # numbers: kstrtouint with base 0
    ("max_entries", "0100", "64"),  # octal, as the kernel reads it
    ("max_entries", "0x10", "16"),
    ("netns_max_entries", "+100", "100"),
    # unknown parameters: stripped text, and Y/N for a bool the list does not name
    ("hook_mode", "auto", "auto\n"),
    ("strict", "1", "Y"),
    ("strict", "no", "N"),
])
def test_equivalent_values_are_the_same(name, wanted, readback):
    assert same_value(name, wanted, readback) is True


@pytest.mark.parametrize("name, wanted, readback", [
    ("ipv4_kinds", "200", "254"),
    ("ipv4_kinds", "200,254", "200"),
    ("ipv6_kinds", "", "253,254"),
    ("trusted_cidrs", "10.0.0.0/8", "10.0.0.0/16"),
    ("trusted_cidrs", "10.0.0.0/8,192.0.2.0/24", "192.0.2.0/24,10.0.0.0/8"),  # order is kept
    ("trusted_cidrs", "10.0.0.0/8,10.0.0.0/8", "10.0.0.0/8"),  # and so are duplicates
    ("trusted_cidrs", "2001:db8::/32", "2001:db9::/32"),
    ("trusted_cidrs", "192.0.2.1", "192.0.2.0/24"),
    ("trusted_cidrs", "::ffff:192.0.2.1", "192.0.2.1/32"),  # a v6 entry, not a v4 one
    ("trusted_cidrs", "", "10.0.0.0/8"),
    ("enabled", "1", "N"),
    ("syn_toa", "0", "Y"),
    ("max_entries", "0", "65536"),
    ("hook_mode", "ftrace", "auto"),
    ("hook_mode", "Auto", "auto"),
    ("strict", "maybe", "Y"),
    ("ipv4_kinds", "200", None),
])
def test_real_differences_differ(name, wanted, readback):
    assert same_value(name, wanted, readback) is False


@pytest.mark.parametrize("value, expected", [
    ("10.1.2.3/8", "10.0.0.0/8"),
    ("10.255.255.255/9", "10.128.0.0/9"),
    ("0.0.0.0/0", "0.0.0.0/0"),
    ("1.2.3.4/0", "0.0.0.0/0"),
    ("::/0", "::/0"),
    ("::1", "::1/128"),
    ("1::", "1::/128"),
    ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1/128"),  # a single zero word stays
    ("1:0:0:2:0:0:0:3", "1:0:0:2::3/128"),  # the longest run is compressed
    ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4/128"),  # the first of equal runs
    ("fe80::5efe:c000:201", "fe80::5efe:192.0.2.1/128"),  # ISATAP prints its IPv4 part
    ("::ffff:c000:0201/120", "::ffff:192.0.2.0/120"),
    ("2001:db8::/129", None),
    ("10.0.0.0/33", None),
    ("10.0.0/8", None),
    ("256.0.0.0/8", None),
    ("10.0.0.0/x", None),
    ("1:2:3:4:5:6:7:8:9", None),
    ("1::2::3", None),
    ("12345::", None),
    ("1.2.3.4::", None),
    ("host.example", None),
])
def test_canonical_cidr(value, expected):
    assert canonical_cidr(value) == expected


def test_unparsable_values_stay_as_stripped_text():
    assert canonical("trusted_cidrs", " 10.0.0.0/8,bad ") == "10.0.0.0/8,bad"
    assert canonical("ipv4_kinds", "200,x") == "200,x"
    assert canonical("enabled", "") == ""
    assert canonical("max_entries", "lots") == "lots"
    assert canonical("max_entries", "065536") == "27486"  # octal digits: a trap
    assert canonical("max_entries", "09") == "09"  # not octal: the kernel refuses it


def test_format_ipv6_matches_printk():
    assert format_ipv6([0] * 8) == "::"
    assert format_ipv6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]) == "2001:db8::"
    assert format_ipv6([0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001]) == "::ffff:10.0.0.1"
    assert format_ipv6([0xabcd, 0, 1, 0, 0, 0, 0, 0]) == "abcd:0:1::"


# -- kinds the role refuses -------------------------------------------------------------

@pytest.mark.parametrize("params", [
    {"ipv4_kinds": "200", "ipv6_kinds": "253,254"},
    {"ipv4_kinds": "254,200", "ipv6_kinds": ""},
    {"ipv4_kinds": [200, 253]},
    {"trusted_cidrs": "10.0.0.0/8"},
])
def test_usual_kinds_pass(params):
    assert kinds_problems(params) == []


@pytest.mark.parametrize("params, text", [
    ({"ipv4_kinds": "8"}, "toa_params.ipv4_kinds has 8 (timestamps): the kernel's TCP uses that kind"),
    ({"ipv6_kinds": "253,30,29"}, "29 (TCP-AO), 30 (MPTCP): the kernel's TCP uses those kinds"),
    ({"ipv4_kinds": "34,200"}, "34 (TCP Fast Open)"),
    ({"ipv4_kinds": "19"}, "19 (TCP MD5 signature)"),
    ({"ipv4_kinds": "2,3,4,5"}, "2 (MSS), 3 (window scale), 4 (SACK permitted), 5 (SACK)"),
    ({"ipv4_kinds": ""}, "toa_params.ipv4_kinds is empty"),
    ({"ipv4_kinds": " , "}, "toa_params.ipv4_kinds is empty"),
    ({"ipv4_kinds": "1"}, "has '1': option kinds are whole numbers from 2 to 255"),
    ({"ipv6_kinds": "300"}, "toa_params.ipv6_kinds has '300'"),
    ({"ipv4_kinds": "0xc8"}, "has '0xc8'"),
])
def test_refused_kinds_say_why(params, text):
    found = kinds_problems(params)
    assert len(found) == 1 and text in found[0], found


def test_refusal_names_the_modules_own_option():
    assert kinds_problems({"ipv4_kinds": "8"}, label="params")[0].startswith("params.ipv4_kinds")
