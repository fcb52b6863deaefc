/* SPDX-License-Identifier: GPL-2.0 */
/*
 * TOA (TCP Option Address): shared declarations of the toa module.
 */
#ifndef _TOA_H
#define _TOA_H

#include <linux/version.h>
#include <linux/types.h>
#include <linux/atomic.h>
#include <linux/percpu.h>
#include <linux/compiler.h>
#include <linux/in6.h>
#include <linux/rcupdate.h>
#include "toa_opt.h"

#define TOA_VERSION	"1.0.0"	/* must match VERSION and dkms.conf */

#ifndef READ_ONCE	/* < 3.19; RHEL 7 backports it, plain 3.10 does not */
#define READ_ONCE(x)	ACCESS_ONCE(x)
#endif

/*
 * Connection identity, taken from the segment that creates the socket:
 * r* is the remote end (the proxy), l* the local end.  IPv4 addresses are
 * kept v4-mapped so both families share one layout.  Explicit padding keeps
 * the struct free of holes: it is hashed as raw words.
 */
struct toa_tuple {
	u8 fam;			/* enum toa_fam of the segment */
	u8 pad;
	__be16 rport;
	__be16 lport;
	u16 pad2;
	struct in6_addr raddr;
	struct in6_addr laddr;
};

/* Counters shown in /proc/net/toa_stats, in this order. */
enum toa_stat {
	TOA_STAT_OPTIONS_SEEN,
	TOA_STAT_ACCEPTED,
	TOA_STAT_REJECTED_UNTRUSTED,
	TOA_STAT_REJECTED_MALFORMED,
	TOA_STAT_REJECTED_FAMILY,
	TOA_STAT_GETNAME_REWRITES,
	TOA_STAT_GETNAME_STALE,
	TOA_STAT_ENTRIES_ALLOC,
	TOA_STAT_ENTRIES_FREE,
	TOA_STAT_ENTRIES_DROPPED_FULL,
	TOA_STAT_ENTRIES_NOMEM,
	TOA_STAT_ENTRIES_REPLACED,
	TOA_STAT_SYN_STASHED,
	TOA_STAT_SYN_STASH_USED,
	TOA_STAT_SYN_STASH_EXPIRED,
	TOA_STAT_SYN_STASH_FREE,
	TOA_STAT_SYN_STASH_DROPPED_FULL,
	TOA_STAT_NR
};

struct toa_stats {
	unsigned long cnt[TOA_STAT_NR];
};

DECLARE_PER_CPU(struct toa_stats, toa_stats);

static inline void toa_stat_inc(enum toa_stat s)
{
	this_cpu_inc(toa_stats.cnt[s]);
}

unsigned long toa_stat_sum(enum toa_stat s);

/* Runtime parameters owned by toa_main.c. */
extern bool toa_enabled;
extern unsigned int toa_max_entries;

/* toa_cfg.c: option kinds and trusted sources, swapped under RCU. */
struct toa_cidr {
	u8 fam;			/* enum toa_fam */
	u8 plen;		/* prefix length within the family */
	struct in6_addr net;	/* v4 kept v4-mapped, host bits cleared */
};

struct toa_config {
	struct toa_kinds k4;
	struct toa_kinds k6;
	unsigned int ncidrs;
	struct toa_cidr cidr[];
};

extern struct toa_config __rcu *toa_cfg;

int toa_cfg_init(void);
void toa_cfg_exit(void);
bool toa_cfg_trusted(const struct toa_config *cfg, const struct toa_tuple *t);

/* toa_table.c: per-socket data and the SYN stash. */
struct sock;

int toa_table_init(void);
void toa_table_exit(void);
unsigned int toa_sk_live(void);
unsigned int toa_syn_live(void);
int toa_sk_store(const struct sock *sk, const struct toa_tuple *t,
		 const struct toa_addr *a);
bool toa_sk_lookup(const struct sock *sk, struct toa_tuple *t,
		   struct toa_addr *a);
void toa_sk_forget(const struct sock *sk);
int toa_syn_stash(const struct toa_tuple *t, const struct toa_addr *a);
bool toa_syn_take(const struct toa_tuple *t, struct toa_addr *a);
void toa_table_flush(void);

#endif /* _TOA_H */
