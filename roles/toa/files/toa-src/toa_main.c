// SPDX-License-Identifier: GPL-2.0
/*
 * toa: make getpeername()/accept() report the client address that a
 * layer-4 proxy (LVS FULLNAT, DPVS, anti-DDoS proxies, cloud load
 * balancers) carries in a TCP option ("TCP Option Address").
 *
 * Hooks are kprobes and kretprobes only: nothing writes kernel text or
 * read-only data, no unexported symbol is looked up, and the socket's own
 * fields (sk_user_data) are left to their owners.
 *
 *   tcp_v4_syn_recv_sock, tcp_v6_syn_recv_sock (kretprobe)
 *	a child socket was created from the segment that completes the
 *	handshake: parse TOA from that segment (or take it from the SYN
 *	stash) and store it for the child.
 *   inet_getname, inet6_getname (kretprobe)
 *	for a peer address (getpeername: peer 1, accept: peer 2), replace
 *	address and port with the stored TOA.
 *   tcp_v4_destroy_sock (kprobe)
 *	the socket dies: drop its data.  IPv6 TCP sockets reach it too
 *	(through tcp_v6_destroy_sock before 6.3, directly since).
 *   tcp_conn_request (kprobe, optional)
 *	a SYN reached a listener: stash a TOA it carries, by 4-tuple.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/ptrace.h>
#include <linux/skbuff.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/net.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <net/sock.h>
#include <net/inet_sock.h>
#include <net/ipv6.h>
#include <net/net_namespace.h>
#include "toa.h"

/*
 * Kernel interface differences, by version.  RHEL 7 (3.10 with backports,
 * RHEL_RELEASE_CODE defined) follows the < 4.4 branches; that is derived
 * from its source layout and not proven by a build here.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(4, 4, 0)
/* 4.4 added bool *own_req as sixth argument of ->syn_recv_sock(). */
#define TOA_HAVE_OWN_REQ	1
#else
#define TOA_HAVE_OWN_REQ	0
#endif

#if LINUX_VERSION_CODE >= KERNEL_VERSION(4, 17, 0)
/* 4.17: getname(sock, uaddr, peer) returns the address length. */
#define TOA_GETNAME_PEER_ARG	2
#define TOA_GETNAME_OK(ret)	((ret) > 0)
#else
/* Before: getname(sock, uaddr, &len, peer) returns 0. */
#define TOA_GETNAME_PEER_ARG	3
#define TOA_GETNAME_OK(ret)	((ret) == 0)
#endif

#if LINUX_VERSION_CODE < KERNEL_VERSION(3, 13, 0)
/* 3.13 moved the IPv6 addresses into sock_common. */
#define toa_sk_v6_daddr(sk)	(&inet6_sk(sk)->daddr)
#define toa_sk_v6_saddr(sk)	(&inet6_sk(sk)->rcv_saddr)
#else
#define toa_sk_v6_daddr(sk)	(&(sk)->sk_v6_daddr)
#define toa_sk_v6_saddr(sk)	(&(sk)->sk_v6_rcv_saddr)
#endif

/*
 * Function arguments at a probe on function entry.  The generic helper
 * exists on every architecture that selects HAVE_FUNCTION_ARG_ACCESS_API
 * (x86 since 4.20, arm64, powerpc, s390, riscv, loongarch later).  Older
 * kernels get a minimal fallback for x86_64 and arm64 only.
 */
static unsigned long toa_arg(struct pt_regs *regs, unsigned int n)
{
#if defined(CONFIG_HAVE_FUNCTION_ARG_ACCESS_API)
	return regs_get_kernel_argument(regs, n);
#elif defined(CONFIG_X86_64)
	switch (n) {
	case 0: return regs->di;
	case 1: return regs->si;
	case 2: return regs->dx;
	case 3: return regs->cx;
	case 4: return regs->r8;
	case 5: return regs->r9;
	}
	return 0;
#elif defined(CONFIG_ARM64)
	return n < 8 ? regs->regs[n] : 0;
#else
#error "toa: no regs_get_kernel_argument() on this kernel and no fallback for this architecture"
#endif
}

/* ------------------------------------------------------------------------
 * Parameters and counters
 */
bool toa_enabled = true;
module_param_named(enabled, toa_enabled, bool, 0644);
MODULE_PARM_DESC(enabled, "Parse and report TOA (1) or leave every address alone (0)");

unsigned int toa_max_entries = 65536;
module_param_named(max_entries, toa_max_entries, uint, 0644);
MODULE_PARM_DESC(max_entries,
		 "Upper bound of sockets with TOA data (and of stashed SYNs); more are dropped and counted");

static bool toa_syn_toa = true;
module_param_named(syn_toa, toa_syn_toa, bool, 0644);
MODULE_PARM_DESC(syn_toa,
		 "Also accept TOA carried in the SYN, used when the handshake ACK has none");

static int toa_maxactive;
module_param_named(maxactive, toa_maxactive, int, 0444);
MODULE_PARM_DESC(maxactive,
		 "Concurrent instances per kretprobe (0: automatic, max(64, 8 * possible CPUs))");

DEFINE_PER_CPU(struct toa_stats, toa_stats);

unsigned long toa_stat_sum(enum toa_stat s)
{
	unsigned long sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += per_cpu(toa_stats, cpu).cnt[s];
	return sum;
}

/* ------------------------------------------------------------------------
 * Packet side
 */

/* Connection identity from a received segment: remote = its source. */
static bool toa_skb_tuple(const struct sk_buff *skb, struct toa_tuple *t)
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
	return true;
}

/*
 * The TCP header with its options is linear at both probe points (the
 * receive path pulled doff * 4 bytes before handing the segment over), but
 * check the bounds anyway rather than trust that forever.
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

/* Store @a for @child if its source is trusted and the family fits. */
static void toa_accept(const struct sock *child, const struct toa_config *cfg,
		       const struct toa_tuple *t, const struct toa_addr *a)
{
	if (!toa_cfg_trusted(cfg, t)) {
		toa_stat_inc(TOA_STAT_REJECTED_UNTRUSTED);
		return;
	}
	/* sockaddr_in cannot hold an IPv6 client. */
	if (a->fam == TOA_FAM_V6 && child->sk_family == AF_INET) {
		toa_stat_inc(TOA_STAT_REJECTED_FAMILY);
		return;
	}
	if (!toa_sk_store(child, t, a))
		toa_stat_inc(TOA_STAT_ACCEPTED);
}

/*
 * TOA in the SYN: a request socket has no room for it and the SYN is gone
 * when the child is created, so the address is stashed by 4-tuple (a key
 * that, unlike a request pointer, cannot be recycled under us) and taken
 * when the child appears.  TOA in the completing segment wins; the stash
 * entry then only gets dropped.  Unused entries expire after 75 s.
 */
static void toa_child_created(const struct sock *child,
			      const struct sk_buff *skb)
{
	const struct toa_config *cfg;
	enum toa_parse_res res;
	struct toa_tuple t;
	struct toa_addr a;

	if (!toa_skb_tuple(skb, &t))
		return;
	rcu_read_lock();
	cfg = rcu_dereference(toa_cfg);
	if (!cfg)
		goto out;
	res = toa_skb_parse(skb, cfg, &a);
	if (res == TOA_PARSE_FOUND) {
		toa_stat_inc(TOA_STAT_OPTIONS_SEEN);
		toa_syn_take(&t, NULL);
	} else if (res == TOA_PARSE_MALFORMED) {
		toa_stat_inc(TOA_STAT_REJECTED_MALFORMED);
		toa_syn_take(&t, NULL);
		goto out;
	} else if (!toa_syn_take(&t, READ_ONCE(toa_syn_toa) ? &a : NULL)) {
		goto out;
	}
	toa_accept(child, cfg, &t, &a);
out:
	rcu_read_unlock();
}

static void toa_syn_seen(const struct sk_buff *skb)
{
	const struct toa_config *cfg;
	enum toa_parse_res res;
	struct toa_tuple t;
	struct toa_addr a;

	if (!toa_skb_tuple(skb, &t))
		return;
	rcu_read_lock();
	cfg = rcu_dereference(toa_cfg);
	res = cfg ? toa_skb_parse(skb, cfg, &a) : TOA_PARSE_NONE;
	if (res == TOA_PARSE_MALFORMED) {
		toa_stat_inc(TOA_STAT_REJECTED_MALFORMED);
	} else if (res == TOA_PARSE_FOUND) {
		toa_stat_inc(TOA_STAT_OPTIONS_SEEN);
		if (toa_cfg_trusted(cfg, &t))
			toa_syn_stash(&t, &a);
		else
			toa_stat_inc(TOA_STAT_REJECTED_UNTRUSTED);
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

static void toa_rewrite(const struct sock *sk, struct sockaddr *uaddr)
{
	struct toa_tuple t;
	struct toa_addr a;

	if (!toa_sk_lookup(sk, &t, &a))
		return;
	if (!toa_sk_tuple_matches(sk, &t)) {
		toa_stat_inc(TOA_STAT_GETNAME_STALE);
		toa_sk_forget(sk);
		return;
	}
	if (toa_fill_sockaddr(uaddr, &a))
		toa_stat_inc(TOA_STAT_GETNAME_REWRITES);
}

/* ------------------------------------------------------------------------
 * Probe handlers
 */
struct toa_syn_recv_data {
	const struct sk_buff *skb;
	const bool *own_req;
};

static int toa_syn_recv_entry(struct kretprobe_instance *ri,
			      struct pt_regs *regs)
{
	struct toa_syn_recv_data *d = (struct toa_syn_recv_data *)ri->data;

	/* Off and nothing stored: the return has no work to do. */
	if (!READ_ONCE(toa_enabled) && !toa_sk_live())
		return 1;
	d->skb = (const struct sk_buff *)toa_arg(regs, 1);
	d->own_req = TOA_HAVE_OWN_REQ ? (const bool *)toa_arg(regs, 5) : NULL;
	return 0;
}

static void toa_syn_recv_done(struct kretprobe_instance *ri,
			      struct pt_regs *regs, bool v6)
{
	struct toa_syn_recv_data *d = (struct toa_syn_recv_data *)ri->data;
	struct sock *child = (struct sock *)regs_return_value(regs);

	if (!child)
		return;
	/* !*own_req: another CPU won the race, this child is thrown away. */
	if (d->own_req && !*d->own_req)
		return;
	/*
	 * A v4-mapped connection on an IPv6 listener: tcp_v6_syn_recv_sock
	 * called tcp_v4_syn_recv_sock, whose probe did the work already.
	 */
	if (v6 && d->skb->protocol == htons(ETH_P_IP))
		return;
	/* The child may sit in memory of a socket whose entry leaked. */
	if (toa_sk_live())
		toa_sk_forget(child);
	if (READ_ONCE(toa_enabled))
		toa_child_created(child, d->skb);
}

static int toa_syn_recv4_ret(struct kretprobe_instance *ri,
			     struct pt_regs *regs)
{
	toa_syn_recv_done(ri, regs, false);
	return 0;
}

static int toa_syn_recv6_ret(struct kretprobe_instance *ri,
			     struct pt_regs *regs)
{
	toa_syn_recv_done(ri, regs, true);
	return 0;
}

struct toa_getname_data {
	const struct sock *sk;
	struct sockaddr *uaddr;
};

static int toa_getname_entry(struct kretprobe_instance *ri,
			     struct pt_regs *regs)
{
	struct toa_getname_data *d = (struct toa_getname_data *)ri->data;
	struct socket *sock = (struct socket *)toa_arg(regs, 0);
	int peer = (int)toa_arg(regs, TOA_GETNAME_PEER_ARG);
	const struct sock *sk;

	/* Every inet getname() traps: leave as early as possible. */
	if (!peer || !toa_sk_live() || !READ_ONCE(toa_enabled))
		return 1;
	sk = sock->sk;
	if (!sk || sk->sk_protocol != IPPROTO_TCP)
		return 1;
	/*
	 * Arm the return handler only for sockets with data: an armed
	 * instance is held while getname sleeps on the socket lock, and the
	 * return trampoline costs more than this lookup.
	 */
	if (!toa_sk_lookup(sk, NULL, NULL))
		return 1;
	d->sk = sk;
	d->uaddr = (struct sockaddr *)toa_arg(regs, 1);
	return 0;
}

static int toa_getname_ret(struct kretprobe_instance *ri,
			   struct pt_regs *regs)
{
	struct toa_getname_data *d = (struct toa_getname_data *)ri->data;
	int ret = (int)regs_return_value(regs);	/* int: upper bits undefined */

	if (TOA_GETNAME_OK(ret))
		toa_rewrite(d->sk, d->uaddr);
	return 0;
}

static int toa_destroy_pre(struct kprobe *p, struct pt_regs *regs)
{
	if (toa_sk_live())
		toa_sk_forget((const struct sock *)toa_arg(regs, 0));
	return 0;
}

static int toa_conn_request_pre(struct kprobe *p, struct pt_regs *regs)
{
	if (READ_ONCE(toa_enabled) && READ_ONCE(toa_syn_toa))
		toa_syn_seen((const struct sk_buff *)toa_arg(regs, 3));
	return 0;
}

/* ------------------------------------------------------------------------
 * Probe registration
 */
static struct kretprobe toa_rp_syn4 = {
	.kp.symbol_name	= "tcp_v4_syn_recv_sock",
	.entry_handler	= toa_syn_recv_entry,
	.handler	= toa_syn_recv4_ret,
	.data_size	= sizeof(struct toa_syn_recv_data),
};

static struct kretprobe toa_rp_syn6 = {
	.kp.symbol_name	= "tcp_v6_syn_recv_sock",
	.entry_handler	= toa_syn_recv_entry,
	.handler	= toa_syn_recv6_ret,
	.data_size	= sizeof(struct toa_syn_recv_data),
};

static struct kretprobe toa_rp_getname4 = {
	.kp.symbol_name	= "inet_getname",
	.entry_handler	= toa_getname_entry,
	.handler	= toa_getname_ret,
	.data_size	= sizeof(struct toa_getname_data),
};

static struct kretprobe toa_rp_getname6 = {
	.kp.symbol_name	= "inet6_getname",
	.entry_handler	= toa_getname_entry,
	.handler	= toa_getname_ret,
	.data_size	= sizeof(struct toa_getname_data),
};

static struct kprobe toa_kp_destroy = {
	.symbol_name	= "tcp_v4_destroy_sock",
	.pre_handler	= toa_destroy_pre,
};

static struct kprobe toa_kp_conn_request = {
	.symbol_name	= "tcp_conn_request",
	.pre_handler	= toa_conn_request_pre,
};

struct toa_hook {
	const char *name;	/* shown as missed_<name> and hook_<name> */
	struct kretprobe *rp;	/* either a kretprobe ... */
	struct kprobe *kp;	/* ... or a plain kprobe */
	bool required;		/* IPv6 ones may be absent (ipv6 as module) */
	bool on;
};

/*
 * Registration order: the cleanup hook first, so that no entry can be
 * created while its socket could still die unseen; producers last.
 */
enum { TOA_H_DESTROY, TOA_H_GN4, TOA_H_GN6, TOA_H_SYN4, TOA_H_SYN6,
	TOA_H_CONNREQ, TOA_H_NR };

static struct toa_hook toa_hooks[TOA_H_NR] = {
	[TOA_H_DESTROY] = { "destroy",	NULL,	&toa_kp_destroy,	true },
	[TOA_H_GN4] = { "getname_v4",	&toa_rp_getname4,	NULL,	true },
	[TOA_H_GN6] = { "getname_v6",	&toa_rp_getname6,	NULL,	false },
	[TOA_H_SYN4] = { "syn_recv_v4",	&toa_rp_syn4,		NULL,	true },
	[TOA_H_SYN6] = { "syn_recv_v6",	&toa_rp_syn6,		NULL,	false },
	[TOA_H_CONNREQ] = { "conn_request", NULL, &toa_kp_conn_request, false },
};

static unsigned long toa_hook_missed(const struct toa_hook *h)
{
	if (!h->on)
		return 0;
	if (h->rp)
		return (unsigned long)h->rp->nmissed + h->rp->kp.nmissed;
	return h->kp->nmissed;
}

static int toa_hook_register(struct toa_hook *h, int maxactive)
{
	if (h->rp) {
		h->rp->maxactive = maxactive;
		return register_kretprobe(h->rp);
	}
	return register_kprobe(h->kp);
}

static void toa_hooks_unregister(void)
{
	struct kretprobe *rps[ARRAY_SIZE(toa_hooks)];
	struct kprobe *kps[ARRAY_SIZE(toa_hooks)];
	int i, nr = 0, nk = 0;

	for (i = ARRAY_SIZE(toa_hooks) - 1; i >= 0; i--) {
		if (!toa_hooks[i].on)
			continue;
		if (toa_hooks[i].rp)
			rps[nr++] = toa_hooks[i].rp;
		else
			kps[nk++] = toa_hooks[i].kp;
		toa_hooks[i].on = false;
	}
	/* Both wait until no handler of theirs runs any more. */
	if (nr)
		unregister_kretprobes(rps, nr);
	if (nk)
		unregister_kprobes(kps, nk);
}

static int toa_hooks_register(void)
{
	int maxactive = toa_maxactive > 0 ? toa_maxactive :
			max_t(int, 64, 8 * num_possible_cpus());
	unsigned int i;
	int err;

	for (i = 0; i < ARRAY_SIZE(toa_hooks); i++) {
		struct toa_hook *h = &toa_hooks[i];

		err = toa_hook_register(h, maxactive);
		if (!err) {
			h->on = true;
			continue;
		}
		if (h->required) {
			pr_err("cannot probe %s: %d\n",
			       h->rp ? h->rp->kp.symbol_name : h->kp->symbol_name,
			       err);
			toa_hooks_unregister();
			return err;
		}
		pr_warn("optional hook %s unavailable (%d), continuing\n",
			h->name, err);
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * /proc/net/toa_stats: "name value" per line
 */
static const char *const toa_stat_names[TOA_STAT_NR] = {
	[TOA_STAT_OPTIONS_SEEN]		= "options_seen",
	[TOA_STAT_ACCEPTED]		= "accepted",
	[TOA_STAT_REJECTED_UNTRUSTED]	= "rejected_untrusted",
	[TOA_STAT_REJECTED_MALFORMED]	= "rejected_malformed",
	[TOA_STAT_REJECTED_FAMILY]	= "rejected_family",
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
};

static int toa_stats_show(struct seq_file *m, void *v)
{
	unsigned int i;

	for (i = 0; i < TOA_STAT_NR; i++)
		seq_printf(m, "%s %lu\n", toa_stat_names[i], toa_stat_sum(i));
	seq_printf(m, "entries_live %u\n", toa_sk_live());
	seq_printf(m, "syn_stash_live %u\n", toa_syn_live());
	for (i = 0; i < ARRAY_SIZE(toa_hooks); i++)
		seq_printf(m, "missed_%s %lu\n", toa_hooks[i].name,
			   toa_hook_missed(&toa_hooks[i]));
	for (i = 0; i < ARRAY_SIZE(toa_hooks); i++)
		seq_printf(m, "hook_%s %d\n", toa_hooks[i].name,
			   toa_hooks[i].on);
	return 0;
}

#if LINUX_VERSION_CODE < KERNEL_VERSION(4, 18, 0)
/* proc_create_single() arrived in 4.18; before it, a file_operations. */
static int toa_stats_open(struct inode *inode, struct file *file)
{
	return single_open(file, toa_stats_show, NULL);
}

static const struct file_operations toa_stats_fops = {
	.owner		= THIS_MODULE,
	.open		= toa_stats_open,
	.read		= seq_read,
	.llseek		= seq_lseek,
	.release	= single_release,
};
#endif

static int toa_proc_init(void)
{
	struct proc_dir_entry *pde;

#if LINUX_VERSION_CODE >= KERNEL_VERSION(4, 18, 0)
	/* Also covers >= 5.6, where proc files take a proc_ops. */
	pde = proc_create_single("toa_stats", 0444, init_net.proc_net,
				 toa_stats_show);
#else
	pde = proc_create("toa_stats", 0444, init_net.proc_net,
			  &toa_stats_fops);
#endif
	return pde ? 0 : -ENOMEM;
}

static void toa_proc_exit(void)
{
	remove_proc_entry("toa_stats", init_net.proc_net);
}

/* ------------------------------------------------------------------------
 * Module setup and teardown
 */
static int __init toa_init(void)
{
	int err;

	err = toa_cfg_init();
	if (err)
		goto out_cfg;
	err = toa_table_init();
	if (err)
		goto out_cfg;
	err = toa_hooks_register();
	if (err)
		goto out_table;
	err = toa_proc_init();
	if (err)
		goto out_hooks;
	pr_info("version %s loaded (ipv6 hooks: %s, syn hook: %s)\n",
		TOA_VERSION, toa_hooks[TOA_H_SYN6].on ? "yes" : "no",
		toa_hooks[TOA_H_CONNREQ].on ? "yes" : "no");
	return 0;

out_hooks:
	toa_hooks_unregister();
out_table:
	toa_table_exit();
out_cfg:
	toa_cfg_exit();
	return err;
}

/*
 * Safe with live connections: once the probes are unregistered no handler
 * runs or will run, so every entry can be unlinked; rcu_barrier() then
 * waits for the frees queued by call_rcu() before the module text goes.
 */
static void __exit toa_exit(void)
{
	toa_proc_exit();
	toa_hooks_unregister();
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
