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

#define TOA_VERSION	"2.0.1"	/* must match VERSION and dkms.conf */

#ifndef READ_ONCE	/* < 3.19; RHEL 7 backports it, plain 3.10 does not */
#define READ_ONCE(x)	ACCESS_ONCE(x)
#endif

struct net;
struct sock;
struct sk_buff;
struct sockaddr;
struct pt_regs;

/*
 * Connection identity, taken from the segment that creates the socket:
 * r* is the remote end (the proxy), l* the local end, @net the network
 * namespace it arrived in (the same 4-tuple may exist in many namespaces).
 * IPv4 addresses are kept v4-mapped so both families share one layout.
 * Explicit padding keeps the struct free of holes: it is hashed as raw
 * words.
 */
struct toa_tuple {
	u8 fam;			/* enum toa_fam of the segment */
	u8 pad;
	__be16 rport;
	__be16 lport;
	u16 pad2;
	struct in6_addr raddr;
	struct in6_addr laddr;
	u64 net;		/* namespace identity (its address) */
};

/* Counters of one network namespace, shown in its /proc/net/toa_stats. */
enum toa_stat {
	TOA_STAT_OPTIONS_SEEN,
	TOA_STAT_ACCEPTED,
	TOA_STAT_REJECTED_UNTRUSTED,
	TOA_STAT_REJECTED_MALFORMED,
	TOA_STAT_REJECTED_FAMILY,
	TOA_STAT_REJECTED_MULTIPLE,
	TOA_STAT_REJECTED_SYN_MISMATCH,
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
	TOA_STAT_FASTOPEN_WITHOUT_TOA,
	TOA_STAT_NR
};

/* Module-wide counters of events that cost a client address. */
enum toa_gstat {
	TOA_GSTAT_DROPPED_FULL,
	TOA_GSTAT_NOMEM,
	TOA_GSTAT_SYN_DROPPED_FULL,
	TOA_GSTAT_NR
};

struct toa_stats {
	unsigned long cnt[TOA_STAT_NR];
};

/*
 * Per network namespace state (net_generic).  Entries point at it to give
 * back their share of the quota; the namespace's exit removes every entry
 * that is left before this goes away.
 */
struct toa_net {
	struct toa_stats __percpu *stats;	/* NULL once the namespace exits */
	struct toa_stats __percpu *stats_mem;	/* what to free after that */
	atomic_t sk_live;		/* socket entries of this namespace */
	atomic_t syn_live;		/* SYN stash entries of this namespace */
	bool is_init;			/* the initial namespace: max_entries */
};

struct toa_net *toa_net(const struct net *net);
void toa_stat_inc(struct toa_net *tn, enum toa_stat s);
void toa_gstat_inc(enum toa_gstat s);
unsigned long toa_stat_sum(const struct toa_net *tn, enum toa_stat s);
unsigned long toa_gstat_sum(enum toa_gstat s);
unsigned int toa_net_limit(const struct toa_net *tn);
void toa_limit_hit(struct toa_net *tn, const char *what);

/* Runtime parameters owned by toa_main.c. */
extern bool toa_enabled;
extern bool toa_syn_toa;

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
int toa_table_init(unsigned int buckets);
void toa_table_exit(void);
unsigned int toa_table_buckets(void);
unsigned int toa_sk_live(void);
unsigned int toa_syn_live(void);
int toa_sk_store(struct toa_net *tn, const struct sock *sk,
		 const struct toa_tuple *t, const struct toa_addr *a);
bool toa_sk_lookup(const struct sock *sk, struct toa_tuple *t,
		   struct toa_addr *a);
void toa_sk_forget(const struct sock *sk);
int toa_syn_stash(struct toa_net *tn, const struct toa_tuple *t,
		  const struct toa_addr *a);
bool toa_syn_take(const struct toa_tuple *t, struct toa_addr *a);
void toa_table_net_exit(struct toa_net *tn, const struct net *net);

/* toa_main.c: what the hooks do (called by toa_hook.c). */
void toa_on_child(const struct sock *child, const struct sk_buff *skb);
bool toa_on_child_wanted(void);
bool toa_on_getname_wanted(const struct sock *sk, int peer);
void toa_on_getname(const struct sock *sk, struct sockaddr *uaddr);
void toa_on_destroy(const struct sock *sk);
void toa_on_syn(const struct sock *listener, const struct sk_buff *skb);
bool toa_on_syn_wanted(void);

/* toa_hook.c: where the hooks are placed. */
enum toa_hook_id {
	TOA_H_DESTROY,
	TOA_H_GN4,
	TOA_H_GN6,
	TOA_H_SYN4,
	TOA_H_SYN6,
	TOA_H_CONNREQ,
	TOA_H_NR
};

int toa_hooks_register(const char *mode, int maxactive);
void toa_hooks_unregister(void);
bool toa_hooks_ftrace(void);
bool toa_hook_on(enum toa_hook_id id);
const char *toa_hook_name(enum toa_hook_id id);
unsigned long toa_hook_missed(enum toa_hook_id id);

#endif /* _TOA_H */
