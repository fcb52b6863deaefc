// SPDX-License-Identifier: GPL-2.0
/*
 * Where toa hooks into the kernel, and how.
 *
 *   tcp_v4_syn_recv_sock, tcp_v6_syn_recv_sock
 *	a child socket was created from the segment that completes the
 *	handshake (or from a Fast Open SYN): toa_on_child().
 *   inet_getname, inet6_getname
 *	for a peer address (getpeername: peer 1, accept: peer 2):
 *	toa_on_getname() rewrites the result.
 *   tcp_v4_destroy_sock
 *	the socket dies (IPv6 TCP sockets reach it too): toa_on_destroy().
 *   tcp_conn_request (optional)
 *	a SYN reached a listener: toa_on_syn().
 *
 * Two ways to get there.
 *
 * ftrace (the default where it exists: x86_64, 4.4 and later, built as a
 * module).  One ftrace_ops per function, as livepatch does.  Entry-only
 * hooks (destroy, conn_request) run in the ftrace callback.  The other four
 * need the function's result, so their callback moves the instruction
 * pointer to a wrapper in this module, which calls the original function
 * and then does its work; the wrapper's own call to the original comes back
 * through the callback, which lets it through because it comes from this
 * module.  Nothing here can be skipped: the callbacks take no recursion
 * lock (none of them calls a function it hooks), there is no per-CPU
 * "handler running" state, and the wrappers use no pool of return slots.
 *
 * kprobes (the fallback, and hook_mode=kprobe): kprobes and kretprobes on
 * the same functions.  A kprobe handler is skipped when another one is
 * running on the same CPU (a softirq arriving during one), and a kretprobe
 * return is lost when its instances run out: every such miss is counted
 * in missed_<hook>, and the role fails verification on any.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/ftrace.h>
#include <linux/kallsyms.h>
#include <linux/ptrace.h>
#include <linux/percpu.h>
#include <linux/delay.h>
#include <linux/string.h>
#include <linux/net.h>
#include <linux/socket.h>
#include <linux/skbuff.h>
#include <linux/if_ether.h>
#include <net/sock.h>
#include <net/request_sock.h>
#include <net/inet_connection_sock.h>
#include "toa.h"

/*
 * Kernel interface differences, by version.  RHEL 7 (3.10 with backports)
 * follows the < 4.4 branches; derived from its source layout and not
 * proven by a build here.
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

#if defined(MODULE) && defined(CONFIG_X86_64) && \
	defined(CONFIG_DYNAMIC_FTRACE_WITH_REGS) && TOA_HAVE_OWN_REQ
#define TOA_FTRACE	1
#else
#define TOA_FTRACE	0
#endif

/*
 * Function arguments at function entry.  The generic helper exists on
 * every architecture that selects HAVE_FUNCTION_ARG_ACCESS_API (x86 since
 * 4.20, arm64, powerpc, s390, riscv, loongarch later).  Older kernels get
 * a minimal fallback for x86_64 and arm64 only.
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

static const struct {
	const char *name;	/* shown as missed_<name> and hook_<name> */
	const char *symbol;
	bool required;		/* IPv6 ones may be absent (ipv6 as module) */
} toa_hook_def[TOA_H_NR] = {
	[TOA_H_DESTROY]	= { "destroy",	    "tcp_v4_destroy_sock",  true },
	[TOA_H_GN4]	= { "getname_v4",   "inet_getname",	    true },
	[TOA_H_GN6]	= { "getname_v6",   "inet6_getname",	    false },
	[TOA_H_SYN4]	= { "syn_recv_v4",  "tcp_v4_syn_recv_sock", true },
	[TOA_H_SYN6]	= { "syn_recv_v6",  "tcp_v6_syn_recv_sock", false },
	[TOA_H_CONNREQ]	= { "conn_request", "tcp_conn_request",	    false },
};

static bool toa_hook_is_on[TOA_H_NR];
static bool toa_mode_ftrace;

const char *toa_hook_name(enum toa_hook_id id)
{
	return toa_hook_def[id].name;
}

bool toa_hook_on(enum toa_hook_id id)
{
	return toa_hook_is_on[id];
}

bool toa_hooks_ftrace(void)
{
	return toa_mode_ftrace;
}

/* The v4 hook sees v4-mapped connections on IPv6 listeners already. */
static bool toa_child_for_us(bool v6, const struct sk_buff *skb)
{
	return !(v6 && skb->protocol == htons(ETH_P_IP));
}

/* ========================================================================
 * ftrace mode
 */
#if TOA_FTRACE

#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 11, 0)
#define TOA_FREGS		struct ftrace_regs
#define toa_fregs_regs(f)	ftrace_get_regs(f)
#define TOA_FTRACE_RECURSION	0	/* default: no recursion guard */
#else
#define TOA_FREGS		struct pt_regs
#define toa_fregs_regs(f)	(f)
#define TOA_FTRACE_RECURSION	FTRACE_OPS_FL_RECURSION_SAFE
#endif

#ifdef CONFIG_TASKS_RCU
#define toa_sync_tasks()	synchronize_rcu_tasks()
#else
/* Without tasks RCU the kernel is not preemptible: RCU covers it. */
#define toa_sync_tasks()	synchronize_rcu()
#endif

#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 5, 0)
/* Keeps sysctl kernel.ftrace_enabled=0 from switching TOA off silently. */
#define TOA_FTRACE_PERMANENT	FTRACE_OPS_FL_PERMANENT
#else
#define TOA_FTRACE_PERMANENT	0
#endif

struct toa_fhook {
	struct ftrace_ops ops;
	enum toa_hook_id id;
	unsigned long orig;	/* function start, called by the wrapper */
	unsigned long wrapper;	/* 0: the work is done in the callback */
};

static struct toa_fhook toa_fhooks[TOA_H_NR];

/*
 * Wrappers in flight: a task may sleep inside the original function (the
 * socket lock in getname) and come back into this module's text later, so
 * unloading waits until none is left.  Per CPU: a task that sleeps may
 * finish on another CPU, but the sum is exact once no new one can start.
 */
static DEFINE_PER_CPU(long, toa_inflight);

/*
 * The wrappers stand in for the kernel's functions, so their parameters
 * must be exactly the kernel's: a missing one would be read from the stack
 * by the original.  Their types are taken from the kernel's own headers
 * (the ->syn_recv_sock and ->getname members), and every wrapper is
 * assigned to such a pointer below, so a kernel that changes either
 * signature fails this build instead of the running kernel.  Stable
 * kernels do change them: Debian's 6.1.192 and 6.12 gained a seventh
 * syn_recv_sock argument (opt_child_init), which Kbuild detects.
 */
typedef typeof(((struct inet_connection_sock_af_ops *)0)->syn_recv_sock)
	toa_syn_recv_fn;
typedef typeof(((struct proto_ops *)0)->getname) toa_getname_fn;

#ifdef TOA_SYN_RECV_CHILD_INIT
#define TOA_SYN_RECV_PARAMS						\
	const struct sock *sk, struct sk_buff *skb,			\
	struct request_sock *req, struct dst_entry *dst,		\
	struct request_sock *req_unhash, bool *own_req,			\
	void (*opt_child_init)(struct sock *newsk, const struct sock *sk)
#define TOA_SYN_RECV_ARGS \
	sk, skb, req, dst, req_unhash, own_req, opt_child_init
#else
#define TOA_SYN_RECV_PARAMS						\
	const struct sock *sk, struct sk_buff *skb,			\
	struct request_sock *req, struct dst_entry *dst,		\
	struct request_sock *req_unhash, bool *own_req
#define TOA_SYN_RECV_ARGS sk, skb, req, dst, req_unhash, own_req
#endif

#if LINUX_VERSION_CODE >= KERNEL_VERSION(4, 17, 0)
#define TOA_GETNAME_PARAMS struct socket *sock, struct sockaddr *uaddr, int peer
#define TOA_GETNAME_ARGS sock, uaddr, peer
#else
#define TOA_GETNAME_PARAMS \
	struct socket *sock, struct sockaddr *uaddr, int *len, int peer
#define TOA_GETNAME_ARGS sock, uaddr, len, peer
#endif

static struct sock *toa_syn_recv_call(enum toa_hook_id id,
				      TOA_SYN_RECV_PARAMS)
{
	toa_syn_recv_fn orig = (toa_syn_recv_fn)toa_fhooks[id].orig;
	struct sock *child;

	this_cpu_inc(toa_inflight);
	child = orig(TOA_SYN_RECV_ARGS);
	/* !*own_req: another CPU won the race, this child is thrown away. */
	if (child && (!own_req || *own_req) &&
	    toa_child_for_us(id == TOA_H_SYN6, skb))
		toa_on_child(child, skb);
	this_cpu_dec(toa_inflight);
	return child;
}

static struct sock *toa_syn_recv4_wrap(TOA_SYN_RECV_PARAMS)
{
	return toa_syn_recv_call(TOA_H_SYN4, TOA_SYN_RECV_ARGS);
}

static struct sock *toa_syn_recv6_wrap(TOA_SYN_RECV_PARAMS)
{
	return toa_syn_recv_call(TOA_H_SYN6, TOA_SYN_RECV_ARGS);
}

static int toa_getname_call(enum toa_hook_id id, TOA_GETNAME_PARAMS)
{
	toa_getname_fn orig = (toa_getname_fn)toa_fhooks[id].orig;
	int ret;

	this_cpu_inc(toa_inflight);
	ret = orig(TOA_GETNAME_ARGS);
	if (TOA_GETNAME_OK(ret) && peer)
		toa_on_getname(sock->sk, uaddr);
	this_cpu_dec(toa_inflight);
	return ret;
}

static int toa_getname4_wrap(TOA_GETNAME_PARAMS)
{
	return toa_getname_call(TOA_H_GN4, TOA_GETNAME_ARGS);
}

static int toa_getname6_wrap(TOA_GETNAME_PARAMS)
{
	return toa_getname_call(TOA_H_GN6, TOA_GETNAME_ARGS);
}

/* The build-time proof that the wrappers have the kernel's signatures. */
static const toa_syn_recv_fn toa_syn_recv_sig[] __maybe_unused = {
	toa_syn_recv4_wrap, toa_syn_recv6_wrap,
};
static const toa_getname_fn toa_getname_sig[] __maybe_unused = {
	toa_getname4_wrap, toa_getname6_wrap,
};

/*
 * Runs at the entry of a hooked function, preemption off, before the
 * function's first instruction.  Must stay cheap: inet_getname runs it for
 * every getsockname/getpeername/accept on the host.
 */
static void notrace toa_ftrace_cb(unsigned long ip, unsigned long parent_ip,
				  struct ftrace_ops *op, TOA_FREGS *fregs)
{
	struct toa_fhook *fh = container_of(op, struct toa_fhook, ops);
	struct pt_regs *regs = toa_fregs_regs(fregs);
	bool redirect = false;

	if (unlikely(!regs))
		return;
	switch (fh->id) {
	case TOA_H_DESTROY:
		toa_on_destroy((const struct sock *)toa_arg(regs, 0));
		return;
	case TOA_H_CONNREQ:
		if (toa_on_syn_wanted())
			toa_on_syn((const struct sock *)toa_arg(regs, 2),
				   (const struct sk_buff *)toa_arg(regs, 3));
		return;
	case TOA_H_SYN4:
	case TOA_H_SYN6:
		redirect = toa_on_child_wanted();
		break;
	case TOA_H_GN4:
	case TOA_H_GN6: {
		struct socket *sock = (struct socket *)toa_arg(regs, 0);
		int peer = (int)toa_arg(regs, TOA_GETNAME_PEER_ARG);

		redirect = toa_on_getname_wanted(sock->sk, peer);
		break;
	}
	default:
		return;
	}
	/* The wrapper's own call of the original: let it run. */
	if (redirect && !within_module(parent_ip, THIS_MODULE))
		instruction_pointer_set(regs, fh->wrapper);
}

/*
 * Start address of a kernel function, for calling it through a pointer.
 * kprobes resolve the symbol (kallsyms_lookup_name is not exported since
 * 5.7); with IBT the probe address lies past the ENDBR instruction, which
 * an indirect call must land on, so the symbol's offset is taken off.
 */
static unsigned long toa_func_start(const char *symbol)
{
	char buf[KSYM_SYMBOL_LEN];
	struct kprobe kp = { .symbol_name = symbol };
	unsigned long addr, off = 0;
	size_t n = strlen(symbol);
	const char *p;

	if (register_kprobe(&kp))
		return 0;
	addr = (unsigned long)kp.addr;
	unregister_kprobe(&kp);
	sprint_symbol(buf, addr);
	if (strncmp(buf, symbol, n) || buf[n] != '+')
		return 0;
	p = buf + n + 1;
	if (sscanf(p, "0x%lx/", &off) != 1 || off > 16)
		return 0;
	return addr - off;
}

static int toa_fhook_register(enum toa_hook_id id)
{
	struct toa_fhook *fh = &toa_fhooks[id];
	const char *symbol = toa_hook_def[id].symbol;
	char filter[KSYM_NAME_LEN];
	int err;

	memset(fh, 0, sizeof(*fh));
	fh->id = id;
	switch (id) {
	case TOA_H_SYN4:
		fh->wrapper = (unsigned long)toa_syn_recv4_wrap;
		break;
	case TOA_H_SYN6:
		fh->wrapper = (unsigned long)toa_syn_recv6_wrap;
		break;
	case TOA_H_GN4:
		fh->wrapper = (unsigned long)toa_getname4_wrap;
		break;
	case TOA_H_GN6:
		fh->wrapper = (unsigned long)toa_getname6_wrap;
		break;
	default:
		break;
	}
	if (fh->wrapper) {
		fh->orig = toa_func_start(symbol);
		if (!fh->orig)
			return -ENOENT;
	}
	fh->ops.func = toa_ftrace_cb;
	fh->ops.flags = FTRACE_OPS_FL_SAVE_REGS | TOA_FTRACE_RECURSION |
			TOA_FTRACE_PERMANENT |
			(fh->wrapper ? FTRACE_OPS_FL_IPMODIFY : 0);
	strscpy(filter, symbol, sizeof(filter));
	err = ftrace_set_filter(&fh->ops, (unsigned char *)filter,
				strlen(filter), 1);
	if (err)
		return err;
	err = register_ftrace_function(&fh->ops);
	if (err)
		ftrace_free_filter(&fh->ops);
	return err;
}

static void toa_fhooks_unregister(void)
{
	long inflight;
	int i, cpu, waited = 0;

	for (i = TOA_H_NR - 1; i >= 0; i--) {
		if (!toa_hook_is_on[i])
			continue;
		unregister_ftrace_function(&toa_fhooks[i].ops);
		ftrace_free_filter(&toa_fhooks[i].ops);
		toa_hook_is_on[i] = false;
	}
	/*
	 * No callback runs any more, and none can send a task to a wrapper.
	 * A task sent there just before may not have counted itself yet; it
	 * does before its next voluntary sleep, which a tasks-RCU grace
	 * period waits for.  Then wait for the count, and once more for the
	 * last instructions after a wrapper's decrement.
	 */
	toa_sync_tasks();
	for (;;) {
		inflight = 0;
		for_each_possible_cpu(cpu)
			inflight += per_cpu(toa_inflight, cpu);
		if (inflight <= 0)
			break;
		if (++waited % 500 == 0)
			pr_info("unload: waiting for %ld calls in progress\n",
				inflight);
		msleep(10);
	}
	toa_sync_tasks();
}

static int toa_fhooks_register(void)
{
	int i, err;

	for (i = 0; i < TOA_H_NR; i++) {
		err = toa_fhook_register(i);
		if (!err) {
			toa_hook_is_on[i] = true;
			continue;
		}
		if (toa_hook_def[i].required) {
			pr_warn("cannot hook %s with ftrace: %d\n",
				toa_hook_def[i].symbol, err);
			toa_fhooks_unregister();
			return err;
		}
		pr_warn("optional hook %s unavailable (%d), continuing\n",
			toa_hook_def[i].name, err);
	}
	return 0;
}
#endif /* TOA_FTRACE */

/* ========================================================================
 * kprobe mode
 */
struct toa_syn_recv_data {
	const struct sk_buff *skb;
	const bool *own_req;
};

static int toa_kp_syn_recv_entry(struct kretprobe_instance *ri,
				 struct pt_regs *regs)
{
	struct toa_syn_recv_data *d = (struct toa_syn_recv_data *)ri->data;

	if (!toa_on_child_wanted())
		return 1;
	d->skb = (const struct sk_buff *)toa_arg(regs, 1);
	d->own_req = TOA_HAVE_OWN_REQ ? (const bool *)toa_arg(regs, 5) : NULL;
	return 0;
}

static void toa_kp_syn_recv_done(struct kretprobe_instance *ri,
				 struct pt_regs *regs, bool v6)
{
	struct toa_syn_recv_data *d = (struct toa_syn_recv_data *)ri->data;
	struct sock *child = (struct sock *)regs_return_value(regs);

	if (child && (!d->own_req || *d->own_req) &&
	    toa_child_for_us(v6, d->skb))
		toa_on_child(child, d->skb);
}

static int toa_kp_syn_recv4_ret(struct kretprobe_instance *ri,
				struct pt_regs *regs)
{
	toa_kp_syn_recv_done(ri, regs, false);
	return 0;
}

static int toa_kp_syn_recv6_ret(struct kretprobe_instance *ri,
				struct pt_regs *regs)
{
	toa_kp_syn_recv_done(ri, regs, true);
	return 0;
}

struct toa_getname_data {
	const struct sock *sk;
	struct sockaddr *uaddr;
};

static int toa_kp_getname_entry(struct kretprobe_instance *ri,
				struct pt_regs *regs)
{
	struct toa_getname_data *d = (struct toa_getname_data *)ri->data;
	struct socket *sock = (struct socket *)toa_arg(regs, 0);
	int peer = (int)toa_arg(regs, TOA_GETNAME_PEER_ARG);

	/*
	 * Arm the return handler only for sockets with data: an armed
	 * instance is held while getname sleeps on the socket lock.
	 */
	if (!toa_on_getname_wanted(sock->sk, peer))
		return 1;
	d->sk = sock->sk;
	d->uaddr = (struct sockaddr *)toa_arg(regs, 1);
	return 0;
}

static int toa_kp_getname_ret(struct kretprobe_instance *ri,
			      struct pt_regs *regs)
{
	struct toa_getname_data *d = (struct toa_getname_data *)ri->data;
	int ret = (int)regs_return_value(regs);	/* int: upper bits undefined */

	if (TOA_GETNAME_OK(ret))
		toa_on_getname(d->sk, d->uaddr);
	return 0;
}

static int toa_kp_destroy_pre(struct kprobe *p, struct pt_regs *regs)
{
	toa_on_destroy((const struct sock *)toa_arg(regs, 0));
	return 0;
}

static int toa_kp_conn_request_pre(struct kprobe *p, struct pt_regs *regs)
{
	if (toa_on_syn_wanted())
		toa_on_syn((const struct sock *)toa_arg(regs, 2),
			   (const struct sk_buff *)toa_arg(regs, 3));
	return 0;
}

static struct kretprobe toa_rp[TOA_H_NR] = {
	[TOA_H_SYN4] = { .entry_handler = toa_kp_syn_recv_entry,
			 .handler = toa_kp_syn_recv4_ret,
			 .data_size = sizeof(struct toa_syn_recv_data) },
	[TOA_H_SYN6] = { .entry_handler = toa_kp_syn_recv_entry,
			 .handler = toa_kp_syn_recv6_ret,
			 .data_size = sizeof(struct toa_syn_recv_data) },
	[TOA_H_GN4] = { .entry_handler = toa_kp_getname_entry,
			.handler = toa_kp_getname_ret,
			.data_size = sizeof(struct toa_getname_data) },
	[TOA_H_GN6] = { .entry_handler = toa_kp_getname_entry,
			.handler = toa_kp_getname_ret,
			.data_size = sizeof(struct toa_getname_data) },
};

static struct kprobe toa_kp[TOA_H_NR] = {
	[TOA_H_DESTROY] = { .pre_handler = toa_kp_destroy_pre },
	[TOA_H_CONNREQ] = { .pre_handler = toa_kp_conn_request_pre },
};

static bool toa_is_kretprobe(enum toa_hook_id id)
{
	return toa_rp[id].handler != NULL;
}

static void toa_kprobes_unregister(void)
{
	struct kretprobe *rps[TOA_H_NR];
	struct kprobe *kps[TOA_H_NR];
	int i, nr = 0, nk = 0;

	for (i = TOA_H_NR - 1; i >= 0; i--) {
		if (!toa_hook_is_on[i])
			continue;
		if (toa_is_kretprobe(i))
			rps[nr++] = &toa_rp[i];
		else
			kps[nk++] = &toa_kp[i];
		toa_hook_is_on[i] = false;
	}
	/* Both wait until no handler of theirs runs any more. */
	if (nr)
		unregister_kretprobes(rps, nr);
	if (nk)
		unregister_kprobes(kps, nk);
}

static int toa_kprobes_register(int maxactive)
{
	int i, err;

	for (i = 0; i < TOA_H_NR; i++) {
		if (toa_is_kretprobe(i)) {
			toa_rp[i].kp.symbol_name = toa_hook_def[i].symbol;
			toa_rp[i].maxactive = maxactive;
			err = register_kretprobe(&toa_rp[i]);
		} else {
			toa_kp[i].symbol_name = toa_hook_def[i].symbol;
			err = register_kprobe(&toa_kp[i]);
		}
		if (!err) {
			toa_hook_is_on[i] = true;
			continue;
		}
		if (toa_hook_def[i].required) {
			pr_err("cannot probe %s: %d\n", toa_hook_def[i].symbol,
			       err);
			toa_kprobes_unregister();
			return err;
		}
		pr_warn("optional hook %s unavailable (%d), continuing\n",
			toa_hook_def[i].name, err);
	}
	return 0;
}

/* ========================================================================
 * Common
 */
unsigned long toa_hook_missed(enum toa_hook_id id)
{
	if (!toa_hook_is_on[id] || toa_mode_ftrace)
		return 0;
	if (toa_is_kretprobe(id))
		return (unsigned long)toa_rp[id].nmissed + toa_rp[id].kp.nmissed;
	return toa_kp[id].nmissed;
}

/*
 * Registration order: the cleanup hook first, so that no entry can be
 * created while its socket could still die unseen; producers last.
 * @mode: "auto" (ftrace where built in, else kprobes), "ftrace", "kprobe".
 */
int toa_hooks_register(const char *mode, int maxactive)
{
	if (strcmp(mode, "auto") && strcmp(mode, "ftrace") &&
	    strcmp(mode, "kprobe")) {
		pr_err("hook_mode '%s': use auto, ftrace or kprobe\n", mode);
		return -EINVAL;
	}
#if TOA_FTRACE
	if (strcmp(mode, "kprobe")) {
		int err = toa_fhooks_register();

		if (!err) {
			toa_mode_ftrace = true;
			return 0;
		}
		if (strcmp(mode, "ftrace") == 0)
			return err;
		pr_warn("ftrace hooks unavailable (%d): falling back to kprobes, which can miss under load\n",
			err);
	}
#else
	if (strcmp(mode, "ftrace") == 0) {
		pr_err("hook_mode=ftrace: not available in this build (needs x86_64, DYNAMIC_FTRACE_WITH_REGS, a module build)\n");
		return -EOPNOTSUPP;
	}
#endif
	toa_mode_ftrace = false;
	if (maxactive <= 0)
		maxactive = max_t(int, 64, 8 * num_possible_cpus());
	return toa_kprobes_register(maxactive);
}

void toa_hooks_unregister(void)
{
#if TOA_FTRACE
	if (toa_mode_ftrace) {
		toa_fhooks_unregister();
		return;
	}
#endif
	toa_kprobes_unregister();
}
