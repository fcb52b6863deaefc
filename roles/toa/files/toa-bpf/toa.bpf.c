// SPDX-License-Identifier: GPL-2.0-only
/*
 * TOA without a kernel module: the eBPF route (kernels >= 5.10).
 *
 * Three programs, attached to the cgroup2 root by toa-bpf (the loader):
 *
 *   sockops              BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB: the child of a
 *                        listener was created from the segment in
 *                        skops->skb_data (the ACK completing the handshake,
 *                        or the SYN itself for server-side Fast Open).  Its
 *                        TCP options are parsed with the module's rules and
 *                        the client address is kept in socket storage, which
 *                        the kernel frees with the socket.
 *                        BPF_SOCK_OPS_TCP_LISTEN_CB: with syn_toa, ask the
 *                        kernel to keep each SYN (TCP_SAVE_SYN) so the child
 *                        can read it back (TCP_BPF_SYN).
 *   cgroup/getpeername4  inet_getname() runs these whenever it reports the
 *   cgroup/getpeername6  peer (getpeername() and accept()): the address is
 *                        replaced by the stored one; an IPv4 client on an
 *                        AF_INET6 socket becomes ::ffff:a.b.c.d.
 *
 * Rules, as toa.ko (roles/toa/files/toa-src/README.md): TOA is identified by
 * kind AND length (IPv4: a kind in ipv4_kinds, length 8; IPv6: a kind in
 * ipv6_kinds, length 20); kind 254 with the Fast Open magic 0xF989 is never
 * TOA; a broken option area or a TOA naming 0.0.0.0 or :: refuses the
 * segment (rejected_malformed); two TOA options refuse it
 * (rejected_multiple); the segment's source must be in trusted_cidrs when
 * that list is set (rejected_untrusted); an IPv6 client cannot be given to
 * an AF_INET socket (rejected_family); with syn_toa a SYN TOA is used when
 * the ACK has none and must agree with the ACK's when both have one
 * (rejected_syn_mismatch).
 *
 * Only fields of the stable context structures (struct bpf_sock_ops,
 * struct bpf_sock_addr) and maps are used: no kernel structure is read, so
 * no CO-RE relocation is needed.  The kernel's own BTF is still required,
 * for the socket-storage helper's argument checks.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TOA_AF_INET	2
#define TOA_AF_INET6	10
#define TOA_SOL_TCP	6
#define TOA_TCP_SAVE_SYN 27
#define TOA_TCPHDR_SYN	0x02

#define TOA_V4_LEN	8
#define TOA_V6_LEN	20
#define TOA_TFO_KIND	254
#define TOA_HDR_MAX	60	/* doff 15 */
#define TOA_HDR_MIN	20

/* Counter slots; toa-bpf's COUNTERS list names them in this order. */
enum toa_counter {
	C_OPTIONS_SEEN,
	C_ACCEPTED,
	C_REJECTED_UNTRUSTED,
	C_REJECTED_MALFORMED,
	C_REJECTED_FAMILY,
	C_REJECTED_MULTIPLE,
	C_REJECTED_SYN_MISMATCH,
	C_GETNAME_REWRITES,
	C_ENTRIES_ALLOC,
	C_ENTRIES_NOMEM,
	C_FASTOPEN_WITHOUT_TOA,
	C_SYN_NOT_SAVED,
	C_MAX,
};

enum toa_res {
	RES_NONE = 0,
	RES_FOUND,
	RES_MALFORMED,
	RES_MULTIPLE,
};

/* Written by the loader; all zero (enabled 0) until it is. */
struct toa_config {
	__u32 enabled;
	__u32 syn_toa;
	__u32 trust_all;	/* 1: trusted_cidrs is empty */
	__u32 k4[8];		/* ipv4_kinds, one bit per kind */
	__u32 k6[8];		/* ipv6_kinds */
};

/* trusted_cidrs: data[0] is 4 or 6, then the address; prefixlen = 8 + n. */
struct toa_trust_key {
	__u32 prefixlen;
	__u8 data[20];
};

struct toa_peer {
	__u8 fam;		/* 4 or 6 */
	__u8 kind;
	__be16 port;
	__be32 addr[4];		/* IPv4 in addr[0] */
};

/*
 * One TCP header (the ACK's or the saved SYN's) while it is parsed; larger
 * than 60 so that every constant offset the walk may read is inside.
 */
struct toa_scratch {
	__u8 b[128];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct toa_config);
} toa_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct toa_trust_key);
	__type(value, __u8);
} toa_trusted SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} toa_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct toa_peer);
} toa_sk SEC(".maps");

/* Two scratch headers per CPU: the completing segment's and the SYN's. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct toa_scratch);
} toa_scratch SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&toa_counters, &which);

	if (v)
		*v += 1;
}

static __always_inline int kind_in(const __u32 *bits, __u8 kind)
{
	return (bits[kind >> 5] >> (kind & 31)) & 1;
}

/*
 * Parse the options of the TCP header in @h (@hlen bytes, 20..60) into
 * @out, with toa.ko's walk (toa_opt.c): stop at EOL, step over NOP, refuse
 * the segment on a missing, short or overlong length byte, on a TOA naming
 * no address, and on a second TOA.
 *
 * Written for the verifier: the walk is unrolled over the 40 byte
 * positions of the option area, every read has a constant offset, and the
 * only state carried from one position to the next is where the next
 * option starts, where the TOA found so far starts, and whether the walk
 * has ended.  A loop with a variable offset had too many states to verify.
 */
#define TOA_STEP(P)							\
	if (!stop && next == (P)) {					\
		if ((P) >= hlen) {					\
			stop = 1;					\
		} else if (h->b[P] == 0) {		/* EOL */	\
			stop = 1;					\
		} else if (h->b[P] == 1) {		/* NOP */	\
			next = (P) + 1;					\
		} else if ((P) + 2 > hlen || h->b[(P) + 1] < 2 ||	\
			   (P) + h->b[(P) + 1] > hlen) {		\
			res = RES_MALFORMED;				\
			stop = 1;					\
		} else {						\
			kind = h->b[P];					\
			olen = h->b[(P) + 1];				\
			if (((olen == TOA_V4_LEN && kind_in(cfg->k4, kind)) ||	\
			     (olen == TOA_V6_LEN && kind_in(cfg->k6, kind))) &&	\
			    !(kind == TOA_TFO_KIND && h->b[(P) + 2] == 0xF9 &&	\
			      h->b[(P) + 3] == 0x89)) {			\
				nz = h->b[(P) + 4] | h->b[(P) + 5] |	\
				     h->b[(P) + 6] | h->b[(P) + 7];	\
				if (olen == TOA_V6_LEN)			\
					nz |= h->b[(P) + 8] | h->b[(P) + 9] |	\
					      h->b[(P) + 10] | h->b[(P) + 11] |	\
					      h->b[(P) + 12] | h->b[(P) + 13] |	\
					      h->b[(P) + 14] | h->b[(P) + 15] |	\
					      h->b[(P) + 16] | h->b[(P) + 17] |	\
					      h->b[(P) + 18] | h->b[(P) + 19];	\
				if (!nz) {		/* names no client */	\
					res = RES_MALFORMED;		\
					stop = 1;			\
				} else if (res == RES_FOUND) {		\
					res = RES_MULTIPLE;		\
					stop = 1;			\
				} else {				\
					res = RES_FOUND;		\
					found = (P);			\
				}					\
			}						\
			next = (P) + olen;				\
		}							\
	}

static __noinline int parse(const struct toa_config *cfg,
			    const struct toa_scratch *h, __u32 hlen,
			    struct toa_peer *out)
{
	__u32 next = TOA_HDR_MIN, found = 0, nz, f, i;
	int res = RES_NONE, stop = 0;
	__u8 kind, olen;

	if (hlen < TOA_HDR_MIN || hlen > TOA_HDR_MAX)
		return RES_MALFORMED;
	TOA_STEP(20) TOA_STEP(21) TOA_STEP(22) TOA_STEP(23) TOA_STEP(24)
	TOA_STEP(25) TOA_STEP(26) TOA_STEP(27) TOA_STEP(28) TOA_STEP(29)
	TOA_STEP(30) TOA_STEP(31) TOA_STEP(32) TOA_STEP(33) TOA_STEP(34)
	TOA_STEP(35) TOA_STEP(36) TOA_STEP(37) TOA_STEP(38) TOA_STEP(39)
	TOA_STEP(40) TOA_STEP(41) TOA_STEP(42) TOA_STEP(43) TOA_STEP(44)
	TOA_STEP(45) TOA_STEP(46) TOA_STEP(47) TOA_STEP(48) TOA_STEP(49)
	TOA_STEP(50) TOA_STEP(51) TOA_STEP(52) TOA_STEP(53) TOA_STEP(54)
	TOA_STEP(55) TOA_STEP(56) TOA_STEP(57) TOA_STEP(58) TOA_STEP(59)
	if (res != RES_FOUND)
		return res;
	/* Copy the one TOA (at offset found, 20..52) out. */
	f = found & 63;
	out->kind = h->b[f];
	out->fam = h->b[(f + 1) & 63] == TOA_V4_LEN ? 4 : 6;
	((__u8 *)&out->port)[0] = h->b[(f + 2) & 63];	/* network order */
	((__u8 *)&out->port)[1] = h->b[(f + 3) & 63];
	for (i = 0; i < 16; i++)
		((__u8 *)out->addr)[i] = 0;
#pragma clang loop unroll(full)
	for (i = 0; i < 16; i++) {
		if (out->fam == 4 && i >= 4)
			break;
		((__u8 *)out->addr)[i] = h->b[(f + 4 + i) & 127];
	}
	return RES_FOUND;
}

/* Count a parse result that is not usable TOA; 1 if it is. */
static __always_inline int counted(int res)
{
	switch (res) {
	case RES_FOUND:
		count(C_OPTIONS_SEEN);
		return 1;
	case RES_MALFORMED:
		count(C_REJECTED_MALFORMED);
		break;
	case RES_MULTIPLE:
		count(C_OPTIONS_SEEN);
		count(C_REJECTED_MULTIPLE);
		break;
	}
	return 0;
}

/* The segment's source (the connection's remote end) in trusted_cidrs? */
static __always_inline int trusted(const struct toa_config *cfg,
				   const struct bpf_sock_ops *skops)
{
	struct toa_trust_key key = {};
	__u32 a0, a1, a2, a3;

	if (cfg->trust_all)
		return 1;
	if (skops->family == TOA_AF_INET) {
		a0 = skops->remote_ip4;
		key.prefixlen = 8 + 32;
		key.data[0] = 4;
		__builtin_memcpy(&key.data[1], &a0, 4);
	} else {
		a0 = skops->remote_ip6[0];
		a1 = skops->remote_ip6[1];
		a2 = skops->remote_ip6[2];
		a3 = skops->remote_ip6[3];
		if (!a0 && !a1 && a2 == bpf_htonl(0xffff)) {
			/* IPv4 client of a dual-stack listener */
			key.prefixlen = 8 + 32;
			key.data[0] = 4;
			__builtin_memcpy(&key.data[1], &a3, 4);
		} else {
			key.prefixlen = 8 + 128;
			key.data[0] = 6;
			__builtin_memcpy(&key.data[1], &a0, 4);
			__builtin_memcpy(&key.data[5], &a1, 4);
			__builtin_memcpy(&key.data[9], &a2, 4);
			__builtin_memcpy(&key.data[13], &a3, 4);
		}
	}
	return bpf_map_lookup_elem(&toa_trusted, &key) != 0;
}

static __always_inline int same_peer(const struct toa_peer *a,
				     const struct toa_peer *b)
{
	return a->fam == b->fam && a->port == b->port &&
	       a->addr[0] == b->addr[0] && a->addr[1] == b->addr[1] &&
	       a->addr[2] == b->addr[2] && a->addr[3] == b->addr[3];
}

/* Copy the TCP header of the segment in the context into @h. */
static __always_inline __u32 load_segment(struct bpf_sock_ops *skops,
					  struct toa_scratch *h)
{
	__u8 *data = (__u8 *)(long)skops->skb_data;
	__u8 *end = (__u8 *)(long)skops->skb_data_end;
	__u32 i;

#pragma clang loop unroll(full)
	for (i = 0; i < TOA_HDR_MAX; i++) {
		if (data + i + 1 > end)
			break;
		h->b[i] = data[i];
	}
	return i;
}

static __always_inline void on_child(struct bpf_sock_ops *skops,
				     const struct toa_config *cfg)
{
	struct toa_peer a = {}, syn_a = {};
	struct toa_scratch *h, *s;
	__u32 zero = 0, one = 1;
	int res, syn_found = 0;
	struct toa_peer *st;
	__u32 hlen;
	long got;

	h = bpf_map_lookup_elem(&toa_scratch, &zero);
	s = bpf_map_lookup_elem(&toa_scratch, &one);
	if (!h || !s)
		return;
	hlen = load_segment(skops, h);
	/* The header's own length must match what the context covers. */
	if (hlen < TOA_HDR_MIN || (__u32)(h->b[12] >> 4) * 4 != hlen)
		res = RES_MALFORMED;
	else
		res = parse(cfg, h, hlen, &a);

	if (skops->skb_tcp_flags & TOA_TCPHDR_SYN) {
		/* Fast Open: the SYN made the child; a later TOA is never seen. */
		if (res == RES_NONE)
			count(C_FASTOPEN_WITHOUT_TOA);
	} else if (cfg->syn_toa) {
		got = bpf_getsockopt(skops, TOA_SOL_TCP, TCP_BPF_SYN, s->b,
				     TOA_HDR_MAX);
		if (got < 0) {
			/* listener opened before syn_toa was on (no saved SYN) */
			count(C_SYN_NOT_SAVED);
		} else if (counted(parse(cfg, s, (__u32)got, &syn_a))) {
			if (trusted(cfg, skops))
				syn_found = 1;
			else
				count(C_REJECTED_UNTRUSTED);
		}
	}

	if (!counted(res)) {
		if (res != RES_NONE || !syn_found)
			return;
		a = syn_a;
	} else if (syn_found && !same_peer(&a, &syn_a)) {
		count(C_REJECTED_SYN_MISMATCH);
		return;
	}
	if (!trusted(cfg, skops)) {
		count(C_REJECTED_UNTRUSTED);
		return;
	}
	if (a.fam == 6 && skops->family == TOA_AF_INET) {
		count(C_REJECTED_FAMILY);
		return;
	}
	if (!skops->sk)
		return;
	st = bpf_sk_storage_get(&toa_sk, skops->sk, 0,
				BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		count(C_ENTRIES_NOMEM);
		return;
	}
	*st = a;
	count(C_ENTRIES_ALLOC);
	count(C_ACCEPTED);
}

SEC("sockops")
int toa_sockops(struct bpf_sock_ops *skops)
{
	const struct toa_config *cfg;
	__u32 zero = 0;
	int on = 1;

	cfg = bpf_map_lookup_elem(&toa_config, &zero);
	if (!cfg || !cfg->enabled)
		return 1;
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		if (cfg->syn_toa)
			bpf_setsockopt(skops, TOA_SOL_TCP, TOA_TCP_SAVE_SYN,
				       &on, sizeof(on));
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		on_child(skops, cfg);
		break;
	}
	return 1;
}

static __always_inline struct toa_peer *stored(struct bpf_sock_addr *ctx)
{
	const struct toa_config *cfg;
	struct bpf_sock *sk = ctx->sk;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&toa_config, &zero);
	if (!cfg || !cfg->enabled || !sk)
		return 0;
	return bpf_sk_storage_get(&toa_sk, sk, 0, 0);
}

SEC("cgroup/getpeername4")
int toa_getpeername4(struct bpf_sock_addr *ctx)
{
	struct toa_peer *p = stored(ctx);

	if (p && p->fam == 4) {
		ctx->user_ip4 = p->addr[0];
		ctx->user_port = p->port;
		count(C_GETNAME_REWRITES);
	}
	return 1;
}

SEC("cgroup/getpeername6")
int toa_getpeername6(struct bpf_sock_addr *ctx)
{
	struct toa_peer *p = stored(ctx);

	if (!p)
		return 1;
	if (p->fam == 4) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = p->addr[0];
	} else {
		ctx->user_ip6[0] = p->addr[0];
		ctx->user_ip6[1] = p->addr[1];
		ctx->user_ip6[2] = p->addr[2];
		ctx->user_ip6[3] = p->addr[3];
	}
	ctx->user_port = p->port;
	count(C_GETNAME_REWRITES);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
