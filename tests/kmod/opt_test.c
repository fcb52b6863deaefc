/*
 * User-space test of the TOA option parser (toa_opt.c): fixed vectors for
 * every rule, then random option areas checked for crashes and for the
 * one invariant that matters: a FOUND result came from a real option.
 * Built with AddressSanitizer, so reading one byte too far fails the run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include "toa_opt.h"

static struct toa_kinds k4, k6;
static int failures;

/* Copy the vector to an exactly sized heap buffer: ASan sees overreads. */
static enum toa_parse_res parse(const u8 *v, unsigned int len,
				struct toa_addr *a)
{
	u8 *buf = malloc(len ? len : 1);
	enum toa_parse_res r;

	memcpy(buf, v, len);
	r = toa_parse_options(buf, len, &k4, &k6, a);
	free(buf);
	return r;
}

#define EXPECT(name, vec, want) do {					\
	struct toa_addr a_;						\
	enum toa_parse_res r_ = parse(vec, sizeof(vec), &a_);		\
	if (r_ != (want)) {						\
		printf("FAIL %s: got %d want %d\n", name, r_, want);	\
		failures++;						\
	}								\
} while (0)

static void fixed(void)
{
	struct toa_addr a;
	const u8 v4[] = { 200, 8, 0x1f, 0x90, 198, 51, 100, 7 };
	const u8 v6[] = { 253, 20, 0x00, 0x50, 0x20, 0x01, 0x0d, 0xb8,
			  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42 };
	const u8 nops_v4[] = { 1, 1, 200, 8, 0, 80, 10, 1, 2, 3 };
	const u8 mss_ts_v4[] = { 2, 4, 5, 0xb4, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0,
				 200, 8, 0, 80, 10, 1, 2, 3 };
	const u8 tfo254_8[] = { 254, 8, 0xf9, 0x89, 1, 2, 3, 4 };
	const u8 tfo254_20[] = { 254, 20, 0xf9, 0x89, 1, 2, 3, 4, 5, 6, 7, 8,
				 9, 10, 11, 12, 13, 14, 15, 16 };
	const u8 kind254_len8[] = { 254, 8, 0, 80, 10, 1, 2, 3 };
	const u8 trunc_len[] = { 200 };
	const u8 trunc_body[] = { 200, 8, 0, 80, 10, 1 };
	const u8 zero_len[] = { 5, 0, 200, 8, 0, 80, 10, 1, 2, 3 };
	const u8 one_len[] = { 5, 1, 200, 8, 0, 80, 10, 1, 2, 3 };
	const u8 bad_toa_len[] = { 200, 10, 0, 80, 10, 1, 2, 3, 0, 0 };
	const u8 zero_addr[] = { 200, 8, 0, 80, 0, 0, 0, 0 };
	const u8 eol_first[] = { 0, 200, 8, 0, 80, 10, 1, 2, 3 };
	const u8 two[] = { 200, 8, 0, 1, 10, 0, 0, 1, 200, 8, 0, 2, 10, 0, 0, 2 };
	const u8 v4_and_v6[] = { 200, 8, 0, 1, 10, 0, 0, 1,
				 253, 20, 0, 80, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0,
				 0, 0, 0, 0, 0, 0, 0, 0x42 };
	const u8 garbage_after[] = { 200, 8, 0, 80, 10, 1, 2, 3, 9, 40 };
	const u8 exp253_then_v4[] = { 253, 6, 0x12, 0x34, 0, 0,
				      200, 8, 0, 80, 10, 1, 2, 3 };
	const u8 short_toa_kind[] = { 200, 2, 200, 3, 0 };

	if (parse(v4, sizeof(v4), &a) != TOA_PARSE_FOUND || a.fam != TOA_FAM_V4 ||
	    a.port != htons(8080) || a.v4 != htonl(0xc6336407)) {
		printf("FAIL v4 basic\n");
		failures++;
	}
	if (parse(v6, sizeof(v6), &a) != TOA_PARSE_FOUND || a.fam != TOA_FAM_V6 ||
	    a.port != htons(80) || a.v6.s6_addr[15] != 0x42 ||
	    a.v6.s6_addr[0] != 0x20) {
		printf("FAIL v6 basic\n");
		failures++;
	}
	/* A client's TOA in front of the proxy's: neither may be honoured. */
	EXPECT("two TOA options", two, TOA_PARSE_MULTIPLE);
	EXPECT("a v4 and a v6 TOA", v4_and_v6, TOA_PARSE_MULTIPLE);
	EXPECT("nops", nops_v4, TOA_PARSE_FOUND);
	EXPECT("mss+ts", mss_ts_v4, TOA_PARSE_FOUND);
	EXPECT("tfo 254/8 is never TOA", tfo254_8, TOA_PARSE_NONE);
	EXPECT("tfo 254/20 is never TOA", tfo254_20, TOA_PARSE_NONE);
	EXPECT("254/8 with v4 kinds {200}", kind254_len8, TOA_PARSE_NONE);
	EXPECT("truncated length byte", trunc_len, TOA_PARSE_MALFORMED);
	EXPECT("truncated body", trunc_body, TOA_PARSE_MALFORMED);
	EXPECT("zero length", zero_len, TOA_PARSE_MALFORMED);
	EXPECT("length one", one_len, TOA_PARSE_MALFORMED);
	EXPECT("TOA kind, wrong length", bad_toa_len, TOA_PARSE_NONE);
	EXPECT("zero address", zero_addr, TOA_PARSE_MALFORMED);
	EXPECT("other 253 option before TOA", exp253_then_v4, TOA_PARSE_FOUND);
	EXPECT("TOA kinds of length 2 and 3", short_toa_kind, TOA_PARSE_NONE);
	EXPECT("EOL ends the list", eol_first, TOA_PARSE_NONE);
	EXPECT("broken option after TOA", garbage_after, TOA_PARSE_MALFORMED);
	if (parse(v4, 0, &a) != TOA_PARSE_NONE) {
		printf("FAIL empty option area\n");
		failures++;
	}
	/* 254/8 is a v4 TOA once configured, TFO magic still excluded */
	toa_kind_set(&k4, 254);
	EXPECT("254/8 with v4 kinds {200,254}", kind254_len8, TOA_PARSE_FOUND);
	EXPECT("tfo 254/8 still not TOA", tfo254_8, TOA_PARSE_NONE);
}

/* Random option areas up to 40 bytes (the TCP maximum). */
static void fuzz(unsigned int rounds)
{
	unsigned int i, j;

	srand(12345);
	for (i = 0; i < rounds; i++) {
		u8 v[40];
		unsigned int len = rand() % 41;
		struct toa_addr a;
		enum toa_parse_res r;

		for (j = 0; j < len; j++) {
			/* bias towards interesting bytes */
			switch (rand() % 6) {
			case 0: v[j] = 200; break;
			case 1: v[j] = 8; break;
			case 2: v[j] = 1; break;
			case 3: v[j] = 20; break;
			default: v[j] = rand(); break;
			}
		}
		r = parse(v, len, &a);
		if (r == TOA_PARSE_FOUND &&
		    !(a.fam == TOA_FAM_V4 || a.fam == TOA_FAM_V6)) {
			printf("FAIL fuzz: FOUND without family\n");
			failures++;
		}
	}
}

int main(void)
{
	toa_kind_set(&k4, 200);
	toa_kind_set(&k6, 253);
	toa_kind_set(&k6, 254);
	fixed();
	fuzz(200000);
	if (failures) {
		printf("%d parser checks failed\n", failures);
		return 1;
	}
	printf("parser: fixed vectors and 200000 random option areas ok\n");
	return 0;
}
