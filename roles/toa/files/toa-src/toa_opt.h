/* SPDX-License-Identifier: GPL-2.0 */
/*
 * TOA option parser: pure code with no kernel state, so that the host test
 * suite can also build it in user space and feed it hostile input.
 */
#ifndef _TOA_OPT_H
#define _TOA_OPT_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/in6.h>
#endif

#define TOA_V4_LEN	8	/* kind | len | port(2) | ipv4(4) */
#define TOA_V6_LEN	20	/* kind | len | port(2) | ipv6(16) */
#define TOA_TFO_KIND	254	/* RFC 3692 kind shared with experimental TFO */
#define TOA_TFO_MAGIC0	0xF9	/* experimental TFO magic 0xF989 */
#define TOA_TFO_MAGIC1	0x89

/* Address family of a TOA payload (not AF_*: this header is libc-free). */
enum toa_fam {
	TOA_FAM_NONE = 0,
	TOA_FAM_V4 = 4,
	TOA_FAM_V6 = 6,
};

struct toa_addr {
	u8 fam;			/* enum toa_fam */
	u8 kind;		/* option kind it came from */
	__be16 port;
	union {
		__be32 v4;
		struct in6_addr v6;
	};
};

/* Set of option kinds: one bit per kind 0..255. */
struct toa_kinds {
	u32 bits[8];
};

static inline bool toa_kind_test(const struct toa_kinds *k, unsigned int kind)
{
	return kind < 256 && (k->bits[kind / 32] >> (kind % 32)) & 1;
}

static inline void toa_kind_set(struct toa_kinds *k, unsigned int kind)
{
	if (kind < 256)
		k->bits[kind / 32] |= 1U << (kind % 32);
}

enum toa_parse_res {
	TOA_PARSE_NONE = 0,	/* no TOA option in this segment */
	TOA_PARSE_FOUND,	/* *out holds the one valid TOA */
	TOA_PARSE_MALFORMED,	/* option area or a TOA candidate is broken */
	TOA_PARSE_MULTIPLE,	/* more than one TOA: none can be trusted */
};

enum toa_parse_res toa_parse_options(const u8 *opt, unsigned int len,
				     const struct toa_kinds *k4,
				     const struct toa_kinds *k6,
				     struct toa_addr *out);

#endif /* _TOA_OPT_H */
