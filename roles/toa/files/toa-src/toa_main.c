// SPDX-License-Identifier: GPL-2.0
/*
 * toa: make getpeername()/accept() report the client address that a
 * layer-4 proxy (LVS FULLNAT, DPVS, anti-DDoS proxies, cloud load
 * balancers) carries in a TCP option ("TCP Option Address").
 *
 * This file holds what the hooks do (toa_hook.c places them), the
 * per-network-namespace state, the parameters and /proc/net/toa_stats.
 * Nothing writes kernel text or read-only data, no unexported symbol is
 * looked up, and the socket's own fields (sk_user_data) are left to their
 * owners.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/kernel.h>
#include <linux/skbuff.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/net.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/ratelimit.h>
#include <net/sock.h>
#include <net/inet_sock.h>
#include <net/ipv6.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include "toa.h"

#if LINUX_VERSION_CODE < KERNEL_VERSION(3, 13, 0)
/* 3.13 moved the IPv6 addresses into sock_common. */
#define toa_sk_v6_daddr(sk)	(&inet6_sk(sk)->daddr)
#define toa_sk_v6_saddr(sk)	(&inet6_sk(sk)->rcv_saddr)
#else
#define toa_sk_v6_daddr(sk)	(&(sk)->sk_v6_daddr)
#define toa_sk_v6_saddr(sk)	(&(sk)->sk_v6_rcv_saddr)
#endif

/* ------------------------------------------------------------------------
 * Parameters
 */
bool toa_enabled = true;
module_param_named(enabled, toa_enabled, bool, 0644);
MODULE_PARM_DESC(enabled, "Parse and report TOA (1) or leave every address alone (0)");

static unsigned int toa_max_entries;
module_param_named(max_entries, toa_max_entries, uint, 0644);
MODULE_PARM_DESC(max_entries,
		 "Limit of sockets with TOA data (and, separately, of stashed SYNs) in the initial network namespace; 0: none");

static unsigned int toa_netns_max_entries = 65536;
module_param_named(netns_max_entries, toa_netns_max_entries, uint, 0644);
MODULE_PARM_DESC(netns_max_entries,
		 "The same limit for every other network namespace (containers, user namespaces); 0: none");

/*
 * Off by default: the proxies this module is written for (the seed's
 * anti-DDoS proxy, LVS FULLNAT, DPVS, Tencent and Huawei load balancers)
 * put TOA into the segment that completes the handshake, and a SYN stash
 * is memory a SYN flood with crafted options could fill.
 */
bool toa_syn_toa;
module_param_named(syn_toa, toa_syn_toa, bool, 0644);
MODULE_PARM_DESC(syn_toa,
		 "Also accept TOA carried in the SYN (for proxies that send it only there)");

static char *toa_hook_mode = "auto";
module_param_named(hook_mode, toa_hook_mode, charp, 0444);
MODULE_PARM_DESC(hook_mode,
		 "auto (ftrace where available, else kprobes), ftrace, or kprobe");

static unsigned int toa_buckets;
module_param_named(buckets, toa_buckets, uint, 0444);
MODULE_PARM_DESC(buckets,
		 "Socket table buckets; 0: sized from memory like the kernel's TCP hash");

static int toa_maxactive;
module_param_named(maxactive, toa_maxactive, int, 0444);
MODULE_PARM_DESC(maxactive,
		 "kprobe mode: concurrent instances per kretprobe (0: max(64, 8 * possible CPUs))");

/* ------------------------------------------------------------------------
 * Per network namespace state and counters
 */
static unsigned int toa_net_id __read_mostly;

struct toa_net *toa_net(const struct net *net)
{
	return net_generic(net, toa_net_id);
}

struct toa_gstats {
	unsigned long cnt[TOA_GSTAT_NR];
};

static DEFINE_PER_CPU(struct toa_gstats, toa_gstats);

/*
 * The stats pointer is cleared by the namespace's exit and freed a grace
 * period later: a kernel socket of a dying namespace may still pass a hook.
 * Callers are in an RCU read-side section or have preemption off.
 */
void toa_stat_inc(struct toa_net *tn, enum toa_stat s)
{
	struct toa_stats __percpu *st = READ_ONCE(tn->stats);

	if (st)
		this_cpu_inc(st->cnt[s]);
}

void toa_gstat_inc(enum toa_gstat s)
{
	this_cpu_inc(toa_gstats.cnt[s]);
}

unsigned long toa_stat_sum(const struct toa_net *tn, enum toa_stat s)
{
	unsigned long sum = 0;
	int cpu;

	if (!tn->stats)
		return 0;
	for_each_possible_cpu(cpu)
		sum += per_cpu_ptr(tn->stats, cpu)->cnt[s];
	return sum;
}

unsigned long toa_gstat_sum(enum toa_gstat s)
{
	unsigned long sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += per_cpu(toa_gstats, cpu).cnt[s];
	return sum;
}

unsigned int toa_net_limit(const struct toa_net *tn)
{
	return tn->is_init ? READ_ONCE(toa_max_entries) :
			     READ_ONCE(toa_netns_max_entries);
}

/* A limit that costs client addresses is never silent. */
void toa_limit_hit(struct toa_net *tn, const char *what)
{
	static DEFINE_RATELIMIT_STATE(rs, 5 * HZ, 1);

	if (__ratelimit(&rs))
		pr_warn("%s limit (%u) reached in %s network namespace: new connections show the proxy's address; raise %s\n",
			what, toa_net_limit(tn), tn->is_init ? "the initial" : "a",
			tn->is_init ? "max_entries" : "netns_max_entries");
}

/* ------------------------------------------------------------------------
 * Packet side
 */

/* Connection identity from a received segment: remote = its source. */
static bool toa_skb_tuple(const struct net *net, const struct sk_buff *skb,
			  struct toa_tuple *t)
{
	const struct tcphdr *th = tcp_hdr(skb);

	memset(t, 0, sizeof(*t));
	if (skb->protocol == htons(ETH_P_IP)) {
		const struct iphdr *iph = ip_hdr(skb);

		t->fam = TOA_FAM_V4;
		ipv6_addr_set_v4mapped(iph->saddr, &t->raddr);
		ipv6_addr_set_v4mapped(iph->daddr, &t->laddr);
	} else if (skb->protocol == htons(ETH_P_IPV6)) {
		const struct ipv6hdr *ip6h = ipv6_hdr(skb);

		t->fam = TOA_FAM_V6;
		t->raddr = ip6h->saddr;
		t->laddr = ip6h->daddr;
	} else {
		return false;
	}
	t->rport = th->source;
	t->lport = th->dest;
	t->net = (unsigned long)net;
	return true;
}

/*
 * The TCP header with its options is linear at every hook (the receive
 * path pulled doff * 4 bytes before handing the segment over), but check
 * the bounds anyway rather than trust that forever.
 */
static enum toa_parse_res toa_skb_parse(const struct sk_buff *skb,
					const struct toa_config *cfg,
					struct toa_addr *a)
{
	const struct tcphdr *th = tcp_hdr(skb);
	const u8 *tail = skb_tail_pointer(skb);
	unsigned int hlen;

	if ((const u8 *)th < skb->head || (const u8 *)(th + 1) > tail)
		return TOA_PARSE_MALFORMED;
	hlen = th->doff * 4;
	if (hlen < sizeof(*th) || (const u8 *)th + hlen > tail)
		return TOA_PARSE_MALFORMED;
	return toa_parse_options((const u8 *)(th + 1), hlen - sizeof(*th),
				 &cfg->k4, &cfg->k6, a);
}

/* Count a parse result that is not a usable TOA; true if it was one. */
static bool toa_parse_counted(struct toa_net *tn, enum toa_parse_res res)
{
	switch (res) {
	case TOA_PARSE_FOUND:
		toa_stat_inc(tn, TOA_STAT_OPTIONS_SEEN);
		return true;
	case TOA_PARSE_MALFORMED:
		toa_stat_inc(tn, TOA_STAT_REJECTED_MALFORMED);
		break;
	case TOA_PARSE_MULTIPLE:
		toa_stat_inc(tn, TOA_STAT_OPTIONS_SEEN);
		toa_stat_inc(tn, TOA_STAT_REJECTED_MULTIPLE);
		break;
	default:
		break;
	}
	return false;
}

static bool toa_addr_equal(const struct toa_addr *a, const struct toa_addr *b)
{
	if (a->fam != b->fam || a->port != b->port)
		return false;
	if (a->fam == TOA_FAM_V4)
		return a->v4 == b->v4;
	return ipv6_addr_equal(&a->v6, &b->v6);
}

/* Store @a for @child if its source is trusted and the family fits. */
static void toa_accept(struct toa_net *tn, const struct sock *child,
		       const struct toa_config *cfg,
		       const struct toa_tuple *t, const struct toa_addr *a)
{
	if (!toa_cfg_trusted(cfg, t)) {
		toa_stat_inc(tn, TOA_STAT_REJECTED_UNTRUSTED);
		return;
	}
	/* sockaddr_in cannot hold an IPv6 client. */
	if (a->fam == TOA_FAM_V6 && child->sk_family == AF_INET) {
		toa_stat_inc(tn, TOA_STAT_REJECTED_FAMILY);
		return;
	}
	if (!toa_sk_store(tn, child, t, a))
		toa_stat_inc(tn, TOA_STAT_ACCEPTED);
}

bool toa_on_child_wanted(void)
{
	/* Off and nothing stored: there is no work for the new child. */
	return READ_ONCE(toa_enabled) || toa_sk_live();
}

/*
 * A child socket was created from @skb: the segment that completes the
 * handshake, or, for TCP Fast Open, the SYN itself.  TOA in the SYN was
 * stashed by 4-tuple (a request socket has no room for it) when syn_toa
 * is on; it is used when the completing segment has none, and must agree
 * with it when both have one.
 */
void toa_on_child(const struct sock *child, const struct sk_buff *skb)
{
	struct net *net = sock_net(child);
	const struct toa_config *cfg;
	struct toa_net *tn = toa_net(net);
	enum toa_parse_res res;
	struct toa_addr a, syn_a;
	struct toa_tuple t;
	bool syn_found;

	/* The child may sit in memory of a socket whose entry leaked. */
	if (toa_sk_live())
		toa_sk_forget(child);
	if (!READ_ONCE(toa_enabled) || !toa_skb_tuple(net, skb, &t))
		return;
	rcu_read_lock();
	cfg = rcu_dereference(toa_cfg);
	if (!cfg)
		goto out;
	res = toa_skb_parse(skb, cfg, &a);
	syn_found = toa_syn_take(&t, READ_ONCE(toa_syn_toa) ? &syn_a : NULL);
	if (tcp_hdr(skb)->syn) {
		/* Fast Open: the SYN made the child; a later TOA is never seen. */
		if (res == TOA_PARSE_NONE)
			toa_stat_inc(tn, TOA_STAT_FASTOPEN_WITHOUT_TOA);
		syn_found = false;
	}
	if (!toa_parse_counted(tn, res)) {
		if (res != TOA_PARSE_NONE || !syn_found)
			goto out;
		a = syn_a;
	} else if (syn_found && !toa_addr_equal(&a, &syn_a)) {
		toa_stat_inc(tn, TOA_STAT_REJECTED_SYN_MISMATCH);
		goto out;
	}
	toa_accept(tn, child, cfg, &t, &a);
out:
	rcu_read_unlock();
}

bool toa_on_syn_wanted(void)
{
	return READ_ONCE(toa_enabled) && READ_ONCE(toa_syn_toa);
}

/* A SYN reached @listener: stash a TOA it carries for the child to take. */
void toa_on_syn(const struct sock *listener, const struct sk_buff *skb)
{
	struct net *net = sock_net(listener);
	struct toa_net *tn = toa_net(net);
	const struct toa_config *cfg;
	struct toa_tuple t;
	struct toa_addr a;

	if (!toa_skb_tuple(net, skb, &t))
		return;
	rcu_read_lock();
	cfg = rcu_dereference(toa_cfg);
	if (cfg && toa_parse_counted(tn, toa_skb_parse(skb, cfg, &a))) {
		if (toa_cfg_trusted(cfg, &t))
			toa_syn_stash(tn, &t, &a);
		else
			toa_stat_inc(tn, TOA_STAT_REJECTED_UNTRUSTED);
	}
	rcu_read_unlock();
}

/* ------------------------------------------------------------------------
 * getname side
 */

/*
 * Defence in depth against a stale entry: the socket must still carry the
 * 4-tuple of the segment that created it.  The v4 fields are valid for
 * AF_INET sockets and for v4-mapped AF_INET6 ones alike.
 */
static bool toa_sk_tuple_matches(const struct sock *sk,
				 const struct toa_tuple *t)
{
	const struct inet_sock *inet = inet_sk(sk);

	if (inet->inet_dport != t->rport || inet->inet_sport != t->lport)
		return false;
	if (t->fam == TOA_FAM_V4)
		return inet->inet_daddr == t->raddr.s6_addr32[3] &&
		       inet->inet_rcv_saddr == t->laddr.s6_addr32[3];
#if IS_ENABLED(CONFIG_IPV6)
	if (sk->sk_family == AF_INET6)
		return ipv6_addr_equal(toa_sk_v6_daddr(sk), &t->raddr) &&
		       ipv6_addr_equal(toa_sk_v6_saddr(sk), &t->laddr);
#endif
	return false;
}

static bool toa_fill_sockaddr(struct sockaddr *uaddr, const struct toa_addr *a)
{
	if (uaddr->sa_family == AF_INET && a->fam == TOA_FAM_V4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)uaddr;

		sin->sin_port = a->port;
		sin->sin_addr.s_addr = a->v4;
		return true;
	}
	if (uaddr->sa_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)uaddr;

		sin6->sin6_port = a->port;
		if (a->fam == TOA_FAM_V4)
			ipv6_addr_set_v4mapped(a->v4, &sin6->sin6_addr);
		else
			sin6->sin6_addr = a->v6;
		/* Flow label and scope belong to the proxy's path, not ours. */
		sin6->sin6_flowinfo = 0;
		sin6->sin6_scope_id = 0;
		return true;
	}
	return false;
}

/*
 * Whether a getname call needs its result rewritten; runs at the entry of
 * every inet getname on the host, so it leaves as early as it can.
 */
bool toa_on_getname_wanted(const struct sock *sk, int peer)
{
	if (!peer || !toa_sk_live() || !READ_ONCE(toa_enabled))
		return false;
	if (!sk || sk->sk_protocol != IPPROTO_TCP)
		return false;
	return toa_sk_lookup(sk, NULL, NULL);
}

void toa_on_getname(const struct sock *sk, struct sockaddr *uaddr)
{
	struct toa_tuple t;
	struct toa_addr a;
	struct toa_net *tn;

	if (!sk || !toa_sk_lookup(sk, &t, &a))
		return;
	rcu_read_lock();
	tn = toa_net(sock_net(sk));
	if (!toa_sk_tuple_matches(sk, &t)) {
		toa_stat_inc(tn, TOA_STAT_GETNAME_STALE);
		toa_sk_forget(sk);
	} else if (toa_fill_sockaddr(uaddr, &a)) {
		toa_stat_inc(tn, TOA_STAT_GETNAME_REWRITES);
	}
	rcu_read_unlock();
}

void toa_on_destroy(const struct sock *sk)
{
	if (toa_sk_live())
		toa_sk_forget(sk);
}

/* ------------------------------------------------------------------------
 * /proc/net/toa_stats: "name value" per line, in every network namespace
 */
static const char *const toa_stat_names[TOA_STAT_NR] = {
	[TOA_STAT_OPTIONS_SEEN]		= "options_seen",
	[TOA_STAT_ACCEPTED]		= "accepted",
	[TOA_STAT_REJECTED_UNTRUSTED]	= "rejected_untrusted",
	[TOA_STAT_REJECTED_MALFORMED]	= "rejected_malformed",
	[TOA_STAT_REJECTED_FAMILY]	= "rejected_family",
	[TOA_STAT_REJECTED_MULTIPLE]	= "rejected_multiple",
	[TOA_STAT_REJECTED_SYN_MISMATCH] = "rejected_syn_mismatch",
	[TOA_STAT_GETNAME_REWRITES]	= "getname_rewrites",
	[TOA_STAT_GETNAME_STALE]	= "getname_stale",
	[TOA_STAT_ENTRIES_ALLOC]	= "entries_alloc",
	[TOA_STAT_ENTRIES_FREE]		= "entries_free",
	[TOA_STAT_ENTRIES_DROPPED_FULL]	= "entries_dropped_full",
	[TOA_STAT_ENTRIES_NOMEM]	= "entries_nomem",
	[TOA_STAT_ENTRIES_REPLACED]	= "entries_replaced",
	[TOA_STAT_SYN_STASHED]		= "syn_stashed",
	[TOA_STAT_SYN_STASH_USED]	= "syn_stash_used",
	[TOA_STAT_SYN_STASH_EXPIRED]	= "syn_stash_expired",
	[TOA_STAT_SYN_STASH_FREE]	= "syn_stash_free",
	[TOA_STAT_SYN_STASH_DROPPED_FULL] = "syn_stash_dropped_full",
	[TOA_STAT_FASTOPEN_WITHOUT_TOA]	= "fastopen_without_toa",
};

static const char *const toa_gstat_names[TOA_GSTAT_NR] = {
	[TOA_GSTAT_DROPPED_FULL]	= "global_entries_dropped_full",
	[TOA_GSTAT_NOMEM]		= "global_entries_nomem",
	[TOA_GSTAT_SYN_DROPPED_FULL]	= "global_syn_stash_dropped_full",
};

static int toa_stats_show(struct seq_file *m, void *v)
{
	const struct net *net = m->private;
	const struct toa_net *tn = toa_net(net);
	unsigned long missed = 0;
	unsigned int i;

	for (i = 0; i < TOA_STAT_NR; i++)
		seq_printf(m, "%s %lu\n", toa_stat_names[i],
			   toa_stat_sum(tn, i));
	seq_printf(m, "entries_live %u\n", atomic_read(&tn->sk_live));
	seq_printf(m, "syn_stash_live %u\n", atomic_read(&tn->syn_live));
	seq_printf(m, "entries_limit %u\n", toa_net_limit(tn));
	for (i = 0; i < TOA_H_NR; i++) {
		seq_printf(m, "missed_%s %lu\n", toa_hook_name(i),
			   toa_hook_missed(i));
		missed += toa_hook_missed(i);
	}
	for (i = 0; i < TOA_H_NR; i++)
		seq_printf(m, "hook_%s %d\n", toa_hook_name(i), toa_hook_on(i));
	seq_printf(m, "hooks_ftrace %d\n", toa_hooks_ftrace());
	if (!tn->is_init)
		return 0;
	/* The host's view: what every namespace lost. */
	seq_printf(m, "global_entries_live %u\n", toa_sk_live());
	for (i = 0; i < TOA_GSTAT_NR; i++)
		seq_printf(m, "%s %lu\n", toa_gstat_names[i], toa_gstat_sum(i));
	seq_printf(m, "global_missed %lu\n", missed);
	seq_printf(m, "table_buckets %u\n", toa_table_buckets());
	return 0;
}

#if LINUX_VERSION_CODE >= KERNEL_VERSION(4, 18, 0)
static int toa_stats_show_net(struct seq_file *m, void *v)
{
	/* proc_create_net_single keeps the namespace, not ->private. */
	m->private = seq_file_single_net(m);
	return toa_stats_show(m, v);
}

static int toa_proc_net_init(struct net *net)
{
	return proc_create_net_single("toa_stats", 0444, net->proc_net,
				      toa_stats_show_net, NULL) ? 0 : -ENOMEM;
}
#else
static int toa_stats_open(struct inode *inode, struct file *file)
{
	return single_open_net(inode, file, toa_stats_show);
}

static const struct file_operations toa_stats_fops = {
	.owner		= THIS_MODULE,
	.open		= toa_stats_open,
	.read		= seq_read,
	.llseek		= seq_lseek,
	.release	= single_release_net,
};

static int toa_proc_net_init(struct net *net)
{
	return proc_create("toa_stats", 0444, net->proc_net,
			   &toa_stats_fops) ? 0 : -ENOMEM;
}
#endif

static int __net_init toa_net_init(struct net *net)
{
	struct toa_net *tn = toa_net(net);
	int err;

	tn->stats_mem = alloc_percpu(struct toa_stats);
	if (!tn->stats_mem)
		return -ENOMEM;
	tn->stats = tn->stats_mem;
	atomic_set(&tn->sk_live, 0);
	atomic_set(&tn->syn_live, 0);
	tn->is_init = net_eq(net, &init_net);
	err = toa_proc_net_init(net);
	if (err) {
		free_percpu(tn->stats_mem);
		tn->stats = NULL;
		tn->stats_mem = NULL;
	}
	return err;
}

static void __net_exit toa_net_exit(struct net *net)
{
	struct toa_net *tn = toa_net(net);

	remove_proc_entry("toa_stats", net->proc_net);
	toa_table_net_exit(tn, net);
}

/* Stats are freed a grace period after the last hook could count in them. */
static void __net_exit toa_net_exit_batch(struct list_head *net_exit_list)
{
	struct net *net;

	list_for_each_entry(net, net_exit_list, exit_list)
		WRITE_ONCE(toa_net(net)->stats, NULL);
	synchronize_rcu();
	list_for_each_entry(net, net_exit_list, exit_list) {
		struct toa_net *tn = toa_net(net);

		free_percpu(tn->stats_mem);
		tn->stats_mem = NULL;
	}
}

static struct pernet_operations toa_net_ops = {
	.init		= toa_net_init,
	.exit		= toa_net_exit,
	.exit_batch	= toa_net_exit_batch,
	.id		= &toa_net_id,
	.size		= sizeof(struct toa_net),
};

/* ------------------------------------------------------------------------
 * Module setup and teardown
 */
static int __init toa_init(void)
{
	int err;

	err = toa_cfg_init();
	if (err)
		goto out_cfg;
	err = toa_table_init(toa_buckets);
	if (err)
		goto out_cfg;
	err = register_pernet_subsys(&toa_net_ops);
	if (err)
		goto out_table;
	err = toa_hooks_register(toa_hook_mode, toa_maxactive);
	if (err)
		goto out_net;
	pr_info("version %s loaded (hooks: %s, ipv6 hooks: %s, syn hook: %s, table buckets: %u)\n",
		TOA_VERSION, toa_hooks_ftrace() ? "ftrace" : "kprobes",
		toa_hook_on(TOA_H_SYN6) ? "yes" : "no",
		toa_hook_on(TOA_H_CONNREQ) ? "yes" : "no",
		toa_table_buckets());
	return 0;

out_net:
	unregister_pernet_subsys(&toa_net_ops);
out_table:
	toa_table_exit();
out_cfg:
	toa_cfg_exit();
	return err;
}

/*
 * Safe with live connections: once the hooks are gone no handler runs or
 * will run, so every entry can be unlinked (the namespaces' exits do it);
 * the table's exit then waits for the frees queued by call_rcu() before
 * the module text goes.
 */
static void __exit toa_exit(void)
{
	toa_hooks_unregister();
	unregister_pernet_subsys(&toa_net_ops);
	toa_table_exit();
	toa_cfg_exit();
	pr_info("unloaded\n");
}

module_init(toa_init);
module_exit(toa_exit);

MODULE_LICENSE("GPL");
MODULE_VERSION(TOA_VERSION);
MODULE_AUTHOR("toa-fleet contributors");
MODULE_DESCRIPTION("TCP Option Address: report the client address a layer-4 proxy carries in a TCP option");
