// SPDX-License-Identifier: GPL-2.0
/*
 * Storage of the toa module.
 *
 * Socket table: TOA data of established sockets, keyed by the socket
 * pointer.  The socket itself is not touched (sk_user_data belongs to other
 * subsystems), so the data must be removed when the socket dies: the kernel
 * reuses freed socket memory at once, and a stale entry would hand an old
 * client address to an unrelated connection.  Every entry also keeps the
 * connection's 4-tuple so a reader can prove the socket is still the one
 * the entry was made for.
 *
 * A server behind a proxy has an entry for nearly every connection, so the
 * table has no cap of its own: it is sized at load like the kernel's TCP
 * established hash (one bucket per 128 KiB of memory, the same rule), so it
 * stays as flat as the table the kernel looks those sockets up in.  The
 * only limits are the per-namespace quotas (max_entries for the initial
 * namespace, none by default; netns_max_entries for the others) and memory;
 * hitting either is counted, logged and fails the role's verification.
 *
 * SYN stash: TOA seen in a SYN, keyed by namespace and 4-tuple, until the
 * socket is created from the final ACK or the entry expires.
 *
 * Both are RCU hash tables: readers take no lock; writers take one of an
 * array of spinlocks with interrupts disabled, because kprobe handlers may
 * run with interrupts off.  Entries are freed by call_rcu.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/mm.h>
#include <linux/log2.h>
#include <linux/spinlock.h>
#include <linux/hash.h>
#include <linux/jhash.h>
#include <linux/random.h>
#include <linux/jiffies.h>
#include <linux/workqueue.h>
#include <linux/rculist.h>
#include <linux/ratelimit.h>
#include <net/ipv6.h>
#include "toa.h"

#define TOA_LOCK_BITS	10
#define TOA_MIN_BITS	12
#define TOA_MAX_BITS	24
#define TOA_SYN_TTL	(75 * HZ)	/* outlives SYN-ACK retransmits */
#define TOA_SYN_GC	(5 * HZ)

struct toa_sk_entry {
	struct hlist_node node;
	struct rcu_head rcu;
	const struct sock *sk;
	struct toa_net *tn;
	struct toa_tuple tuple;
	struct toa_addr addr;
};

struct toa_syn_entry {
	struct hlist_node node;
	struct rcu_head rcu;
	unsigned long expires;
	struct toa_net *tn;
	struct toa_tuple tuple;
	struct toa_addr addr;
};

static struct hlist_head *toa_sk_tab;
static struct hlist_head *toa_syn_tab;
static unsigned int toa_sk_bits, toa_syn_bits;
static spinlock_t toa_sk_locks[1 << TOA_LOCK_BITS];
static spinlock_t toa_syn_locks[1 << TOA_LOCK_BITS];
static atomic_t toa_sk_count = ATOMIC_INIT(0);
static atomic_t toa_syn_count = ATOMIC_INIT(0);
static struct kmem_cache *toa_sk_cache;
static u32 toa_syn_seed;

static void toa_syn_gc_work(struct work_struct *work);
static DECLARE_DELAYED_WORK(toa_syn_gc, toa_syn_gc_work);

unsigned int toa_sk_live(void)
{
	return atomic_read(&toa_sk_count);
}

unsigned int toa_syn_live(void)
{
	return atomic_read(&toa_syn_count);
}

unsigned int toa_table_buckets(void)
{
	return 1U << toa_sk_bits;
}

/* Take one slot of @tn's quota in @count; false when it is used up. */
static bool toa_reserve(struct toa_net *tn, atomic_t *count)
{
	unsigned int limit = toa_net_limit(tn);

	if (!limit) {
		atomic_inc(count);
		return true;
	}
	if (atomic_inc_return(count) > limit) {
		atomic_dec(count);
		return false;
	}
	return true;
}

static void toa_nomem(struct toa_net *tn)
{
	static DEFINE_RATELIMIT_STATE(rs, 5 * HZ, 1);

	toa_stat_inc(tn, TOA_STAT_ENTRIES_NOMEM);
	toa_gstat_inc(TOA_GSTAT_NOMEM);
	if (__ratelimit(&rs))
		pr_warn("out of memory for TOA data: new connections show the proxy's address\n");
}

/* ------------------------------------------------------------------------
 * Socket table
 */
static u32 toa_sk_hash(const struct sock *sk)
{
	return hash_ptr((void *)sk, toa_sk_bits);
}

static spinlock_t *toa_sk_lock(u32 h)
{
	return &toa_sk_locks[h & ((1 << TOA_LOCK_BITS) - 1)];
}

static void toa_sk_free_rcu(struct rcu_head *head)
{
	kmem_cache_free(toa_sk_cache,
			container_of(head, struct toa_sk_entry, rcu));
}

/* Unlink @e; caller holds its bucket lock. */
static void toa_sk_unlink(struct toa_sk_entry *e)
{
	hlist_del_rcu(&e->node);
	atomic_dec(&e->tn->sk_live);
	atomic_dec(&toa_sk_count);
	toa_stat_inc(e->tn, TOA_STAT_ENTRIES_FREE);
	call_rcu(&e->rcu, toa_sk_free_rcu);
}

/* Remove every entry of @sk from bucket @h; caller holds the lock. */
static bool toa_sk_unlink_sk(u32 h, const struct sock *sk)
{
	struct toa_sk_entry *e;
	struct hlist_node *tmp;
	bool found = false;

	hlist_for_each_entry_safe(e, tmp, &toa_sk_tab[h], node) {
		if (e->sk == sk) {
			toa_sk_unlink(e);
			found = true;
		}
	}
	return found;
}

int toa_sk_store(struct toa_net *tn, const struct sock *sk,
		 const struct toa_tuple *t, const struct toa_addr *a)
{
	u32 h = toa_sk_hash(sk);
	struct toa_sk_entry *e;
	unsigned long flags;

	if (!toa_reserve(tn, &tn->sk_live)) {
		toa_stat_inc(tn, TOA_STAT_ENTRIES_DROPPED_FULL);
		toa_gstat_inc(TOA_GSTAT_DROPPED_FULL);
		toa_limit_hit(tn, "entries");
		return -ENOSPC;
	}
	e = kmem_cache_alloc(toa_sk_cache, GFP_ATOMIC | __GFP_NOWARN);
	if (!e) {
		atomic_dec(&tn->sk_live);
		toa_nomem(tn);
		return -ENOMEM;
	}
	e->sk = sk;
	e->tn = tn;
	e->tuple = *t;
	e->addr = *a;
	toa_stat_inc(tn, TOA_STAT_ENTRIES_ALLOC);

	spin_lock_irqsave(toa_sk_lock(h), flags);
	if (toa_sk_unlink_sk(h, sk))
		toa_stat_inc(tn, TOA_STAT_ENTRIES_REPLACED);
	atomic_inc(&toa_sk_count);
	hlist_add_head_rcu(&e->node, &toa_sk_tab[h]);
	spin_unlock_irqrestore(toa_sk_lock(h), flags);
	return 0;
}

/*
 * Whether @sk holds TOA data; when it does, copy the entry's tuple to @t and
 * its address to @a, each only if non-NULL (NULL, NULL: a presence test).
 */
bool toa_sk_lookup(const struct sock *sk, struct toa_tuple *t,
		   struct toa_addr *a)
{
	u32 h = toa_sk_hash(sk);
	struct toa_sk_entry *e;
	bool found = false;

	rcu_read_lock();
	hlist_for_each_entry_rcu(e, &toa_sk_tab[h], node) {
		if (e->sk == sk) {
			if (t)
				*t = e->tuple;
			if (a)
				*a = e->addr;
			found = true;
			break;
		}
	}
	rcu_read_unlock();
	return found;
}

void toa_sk_forget(const struct sock *sk)
{
	u32 h = toa_sk_hash(sk);
	unsigned long flags;

	/* Lock-free check first: most sockets never had TOA data. */
	if (hlist_empty(&toa_sk_tab[h]))
		return;
	spin_lock_irqsave(toa_sk_lock(h), flags);
	toa_sk_unlink_sk(h, sk);
	spin_unlock_irqrestore(toa_sk_lock(h), flags);
}

/* ------------------------------------------------------------------------
 * SYN stash
 */
static u32 toa_syn_hash(const struct toa_tuple *t)
{
	return jhash2((const u32 *)t, sizeof(*t) / sizeof(u32),
		      toa_syn_seed) >> (32 - toa_syn_bits);
}

static spinlock_t *toa_syn_lock(u32 h)
{
	return &toa_syn_locks[h & ((1 << TOA_LOCK_BITS) - 1)];
}

static void toa_syn_free_rcu(struct rcu_head *head)
{
	kfree(container_of(head, struct toa_syn_entry, rcu));
}

static void toa_syn_unlink(struct toa_syn_entry *e)
{
	hlist_del_rcu(&e->node);
	atomic_dec(&e->tn->syn_live);
	atomic_dec(&toa_syn_count);
	toa_stat_inc(e->tn, TOA_STAT_SYN_STASH_FREE);
	call_rcu(&e->rcu, toa_syn_free_rcu);
}

static struct toa_syn_entry *toa_syn_find(u32 h, const struct toa_tuple *t)
{
	struct toa_syn_entry *e;

	hlist_for_each_entry(e, &toa_syn_tab[h], node)
		if (!memcmp(&e->tuple, t, sizeof(*t)))
			return e;
	return NULL;
}

int toa_syn_stash(struct toa_net *tn, const struct toa_tuple *t,
		  const struct toa_addr *a)
{
	u32 h = toa_syn_hash(t);
	struct toa_syn_entry *e, *old;
	unsigned long flags;

	if (!toa_reserve(tn, &tn->syn_live)) {
		toa_stat_inc(tn, TOA_STAT_SYN_STASH_DROPPED_FULL);
		toa_gstat_inc(TOA_GSTAT_SYN_DROPPED_FULL);
		toa_limit_hit(tn, "SYN stash");
		return -ENOSPC;
	}
	e = kmalloc(sizeof(*e), GFP_ATOMIC | __GFP_NOWARN);
	if (!e) {
		atomic_dec(&tn->syn_live);
		toa_nomem(tn);
		return -ENOMEM;
	}
	e->tn = tn;
	e->tuple = *t;
	e->addr = *a;
	e->expires = jiffies + TOA_SYN_TTL;
	toa_stat_inc(tn, TOA_STAT_SYN_STASHED);

	spin_lock_irqsave(toa_syn_lock(h), flags);
	old = toa_syn_find(h, t);	/* a repeated SYN replaces the old one */
	if (old)
		toa_syn_unlink(old);
	atomic_inc(&toa_syn_count);
	hlist_add_head_rcu(&e->node, &toa_syn_tab[h]);
	spin_unlock_irqrestore(toa_syn_lock(h), flags);

	if (!delayed_work_pending(&toa_syn_gc))
		schedule_delayed_work(&toa_syn_gc, TOA_SYN_GC);
	return 0;
}

/* Remove the stash entry of @t; copy it to @a when @a is set and it is live. */
bool toa_syn_take(const struct toa_tuple *t, struct toa_addr *a)
{
	struct toa_syn_entry *e;
	unsigned long flags;
	bool found = false;
	u32 h;

	if (!atomic_read(&toa_syn_count))
		return false;
	h = toa_syn_hash(t);
	spin_lock_irqsave(toa_syn_lock(h), flags);
	e = toa_syn_find(h, t);
	if (e) {
		if (a && time_before(jiffies, e->expires)) {
			*a = e->addr;
			found = true;
			toa_stat_inc(e->tn, TOA_STAT_SYN_STASH_USED);
		}
		toa_syn_unlink(e);
	}
	spin_unlock_irqrestore(toa_syn_lock(h), flags);
	return found;
}

/* Drop stash entries: expired ones, or all of @net's. */
static void toa_syn_sweep(u64 net)
{
	struct toa_syn_entry *e;
	struct hlist_node *tmp;
	unsigned long flags;
	u32 h;

	for (h = 0; h < (1U << toa_syn_bits); h++) {
		if (hlist_empty(&toa_syn_tab[h]))
			continue;
		spin_lock_irqsave(toa_syn_lock(h), flags);
		hlist_for_each_entry_safe(e, tmp, &toa_syn_tab[h], node) {
			if (net && e->tuple.net == net) {
				toa_syn_unlink(e);
			} else if (!net && time_after_eq(jiffies, e->expires)) {
				toa_stat_inc(e->tn, TOA_STAT_SYN_STASH_EXPIRED);
				toa_syn_unlink(e);
			}
		}
		spin_unlock_irqrestore(toa_syn_lock(h), flags);
	}
}

static void toa_syn_gc_work(struct work_struct *work)
{
	toa_syn_sweep(0);
	if (atomic_read(&toa_syn_count))
		schedule_delayed_work(&toa_syn_gc, TOA_SYN_GC);
}

/* ------------------------------------------------------------------------
 * Setup and teardown
 */

/*
 * Unlink socket entries: all of @tn's, or every one when @tn is NULL (at
 * exit, where none should be left: namespaces' exits took theirs).
 */
static void toa_sk_sweep(const struct toa_net *tn)
{
	struct toa_sk_entry *e;
	struct hlist_node *tmp;
	unsigned long flags;
	u32 h;

	for (h = 0; h < (1U << toa_sk_bits); h++) {
		if (hlist_empty(&toa_sk_tab[h]))
			continue;
		spin_lock_irqsave(toa_sk_lock(h), flags);
		hlist_for_each_entry_safe(e, tmp, &toa_sk_tab[h], node) {
			if (tn && e->tn != tn)
				continue;
			if (WARN_ON_ONCE(!tn)) {
				/* Its toa_net is gone: free it, count nothing. */
				hlist_del_rcu(&e->node);
				atomic_dec(&toa_sk_count);
				call_rcu(&e->rcu, toa_sk_free_rcu);
				continue;
			}
			toa_sk_unlink(e);
		}
		spin_unlock_irqrestore(toa_sk_lock(h), flags);
		cond_resched();
	}
}

/*
 * A namespace goes away: its sockets are normally gone already (they hold
 * a reference on it), but kernel sockets do not, and stash entries never
 * do.  Nothing of it may outlive its toa_net.
 */
void toa_table_net_exit(struct toa_net *tn, const struct net *net)
{
	if (atomic_read(&tn->syn_live))
		toa_syn_sweep((unsigned long)net);
	if (atomic_read(&tn->sk_live))
		toa_sk_sweep(tn);
}

/*
 * A constructor keeps the cache from being merged with other caches of its
 * size: /proc/slabinfo then shows toa_sk_entry with exactly our objects, and
 * kmem_cache_destroy() reports any object left behind at unload.
 */
static void toa_sk_entry_ctor(void *p)
{
	struct toa_sk_entry *e = p;

	INIT_HLIST_NODE(&e->node);
}

/* Bits for @buckets, or from memory: one bucket per 128 KiB, as TCP does. */
static unsigned int toa_table_bits(unsigned int buckets)
{
	struct sysinfo si;
	u64 mem;

	if (!buckets) {
		si_meminfo(&si);
		mem = (u64)si.totalram * si.mem_unit;
		buckets = (unsigned int)min_t(u64, mem >> 17, 1U << TOA_MAX_BITS);
	}
	buckets = clamp_t(unsigned int, buckets, 1U << TOA_MIN_BITS,
			  1U << TOA_MAX_BITS);
	return ilog2(roundup_pow_of_two(buckets));
}

int toa_table_init(unsigned int buckets)
{
	unsigned int i;

	toa_sk_bits = toa_table_bits(buckets);
	toa_syn_bits = max_t(unsigned int, toa_sk_bits - 4, 10);
	toa_sk_tab = vmalloc(sizeof(*toa_sk_tab) << toa_sk_bits);
	toa_syn_tab = vmalloc(sizeof(*toa_syn_tab) << toa_syn_bits);
	toa_sk_cache = kmem_cache_create("toa_sk_entry",
					 sizeof(struct toa_sk_entry), 0, 0,
					 toa_sk_entry_ctor);
	if (!toa_sk_tab || !toa_syn_tab || !toa_sk_cache) {
		vfree(toa_sk_tab);
		vfree(toa_syn_tab);
		if (toa_sk_cache)
			kmem_cache_destroy(toa_sk_cache);
		return -ENOMEM;
	}
	for (i = 0; i < (1U << toa_sk_bits); i++)
		INIT_HLIST_HEAD(&toa_sk_tab[i]);
	for (i = 0; i < (1U << toa_syn_bits); i++)
		INIT_HLIST_HEAD(&toa_syn_tab[i]);
	for (i = 0; i < ARRAY_SIZE(toa_sk_locks); i++) {
		spin_lock_init(&toa_sk_locks[i]);
		spin_lock_init(&toa_syn_locks[i]);
	}
	get_random_bytes(&toa_syn_seed, sizeof(toa_syn_seed));
	return 0;
}

/*
 * Called once every hook is gone and every namespace's exit has run, so
 * nothing can add entries any more (the sweep is a safety net); the stash
 * timer is stopped first because it re-arms itself.  rcu_barrier() waits
 * for every call_rcu() callback: they live in this module's text.
 */
void toa_table_exit(void)
{
	cancel_delayed_work_sync(&toa_syn_gc);
	if (atomic_read(&toa_sk_count))
		toa_sk_sweep(NULL);
	WARN_ON_ONCE(atomic_read(&toa_syn_count));
	rcu_barrier();
	kmem_cache_destroy(toa_sk_cache);
	vfree(toa_sk_tab);
	vfree(toa_syn_tab);
}
