// SPDX-License-Identifier: GPL-2.0
/*
 * Walk the TCP option area of one segment and extract a TOA address.
 *
 * Kind AND length identify TOA: kind 254 is also used by experimental TCP
 * Fast Open (magic 0xF989), and 253/254 are shared experimental kinds, so a
 * kind alone proves nothing.  Any structural error in the option area (bad
 * length byte, truncation) makes the whole segment untrusted: a parser
 * that skips garbage and keeps going could be steered by crafted bytes into
 * reading a TOA the sender never meant to send.
 *
 * A proxy appends exactly one TOA.  A segment with two cannot tell us which
 * is the proxy's: a client that reaches the proxy may have put its own in
 * front of it.  Honouring the first (or the last) would let that client
 * choose its address, so a second TOA makes the segment TOA_PARSE_MULTIPLE
 * and none is used.
 */
#ifdef __KERNEL__
#include <linux/string.h>
#include <linux/tcp.h>
#endif
#include "toa_opt.h"

#define TOA_OPT_EOL	0
#define TOA_OPT_NOP	1

static bool toa_is_tfo_exp(const u8 *p, unsigned int olen)
{
	return p[0] == TOA_TFO_KIND && olen >= 4 &&
	       p[2] == TOA_TFO_MAGIC0 && p[3] == TOA_TFO_MAGIC1;
}

static bool toa_addr_is_zero(const struct toa_addr *a)
{
	static const u8 zero[16];

	if (a->fam == TOA_FAM_V4)
		return a->v4 == 0;
	return memcmp(a->v6.s6_addr, zero, sizeof(zero)) == 0;
}

/*
 * Classify one well-formed option of length @olen.  Returns FOUND when it is
 * a usable TOA (copied to @out), MALFORMED when it is a TOA by kind and
 * length but names no client, NONE for anything else.  A configured kind
 * with another length is some other option sharing the kind (RFC 6994
 * experiments use 253/254 too): not TOA, and no reason to distrust the
 * segment.
 */
static enum toa_parse_res toa_check_one(const u8 *p, unsigned int olen,
					const struct toa_kinds *k4,
					const struct toa_kinds *k6,
					struct toa_addr *out)
{
	bool is4 = toa_kind_test(k4, p[0]);
	bool is6 = toa_kind_test(k6, p[0]);

	if (!is4 && !is6)
		return TOA_PARSE_NONE;
	if (toa_is_tfo_exp(p, olen))
		return TOA_PARSE_NONE;	/* Fast Open cookie, not ours */

	/* Check the length before touching the payload: it may be 2 bytes. */
	memset(out, 0, sizeof(*out));
	if (is4 && olen == TOA_V4_LEN) {
		out->fam = TOA_FAM_V4;
		memcpy(&out->v4, p + 4, sizeof(out->v4));
	} else if (is6 && olen == TOA_V6_LEN) {
		out->fam = TOA_FAM_V6;
		memcpy(out->v6.s6_addr, p + 4, sizeof(out->v6.s6_addr));
	} else {
		return TOA_PARSE_NONE;
	}
	out->kind = p[0];
	memcpy(&out->port, p + 2, sizeof(out->port));
	/* An unspecified client address can only be a broken proxy. */
	if (toa_addr_is_zero(out))
		return TOA_PARSE_MALFORMED;
	return TOA_PARSE_FOUND;
}

enum toa_parse_res toa_parse_options(const u8 *opt, unsigned int len,
				     const struct toa_kinds *k4,
				     const struct toa_kinds *k6,
				     struct toa_addr *out)
{
	enum toa_parse_res res = TOA_PARSE_NONE;
	struct toa_addr cand;

	while (len > 0) {
		unsigned int olen;

		if (opt[0] == TOA_OPT_EOL)
			break;
		if (opt[0] == TOA_OPT_NOP) {
			opt++;
			len--;
			continue;
		}
		/* Every other kind needs a length byte, and len >= 2. */
		if (len < 2)
			return TOA_PARSE_MALFORMED;
		olen = opt[1];
		if (olen < 2 || olen > len)
			return TOA_PARSE_MALFORMED;

		switch (toa_check_one(opt, olen, k4, k6, &cand)) {
		case TOA_PARSE_FOUND:
			if (res == TOA_PARSE_FOUND)
				return TOA_PARSE_MULTIPLE;
			*out = cand;
			res = TOA_PARSE_FOUND;
			break;
		case TOA_PARSE_MALFORMED:
			return TOA_PARSE_MALFORMED;
		default:
			break;
		}
		opt += olen;
		len -= olen;
	}
	return res;
}
