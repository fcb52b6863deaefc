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
 * SYN stash: TOA seen in a SYN, keyed by the 4-tuple, until the socket is
 * created from the final ACK or the entry expires.
 *
 * Both are RCU hash tables: readers take no lock; writers take one of a
 * small array of spinlocks with interrupts disabled, because kprobe
 * handlers may run with interrupts off.  Entries are freed by call_rcu.
 * Both tables are bounded by max_entries.
 */
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/hash.h>
#include <linux/jhash.h>
#include <linux/random.h>
#include <linux/jiffies.h>
#include <linux/workqueue.h>
#include <linux/rculist.h>
#include <net/ipv6.h>
#include "toa.h"

#define TOA_SK_BITS	12
#define TOA_SYN_BITS	10
#define TOA_LOCK_BITS	8
#define TOA_SYN_TTL	(75 * HZ)	/* outlives SYN-ACK retransmits */
#define TOA_SYN_GC	(5 * HZ)

struct toa_sk_entry {
	struct hlist_node node;
	struct rcu_head rcu;
	const struct sock *sk;
	struct toa_tuple tuple;
	struct toa_addr addr;
};

struct toa_syn_entry {
	struct hlist_node node;
	struct rcu_head rcu;
	unsigned long expires;
	struct toa_tuple tuple;
	struct toa_addr addr;
};

static struct hlist_head toa_sk_tab[1 << TOA_SK_BITS];
static struct hlist_head toa_syn_tab[1 << TOA_SYN_BITS];
static spinlock_t toa_sk_locks[1 << TOA_LOCK_BITS];
static spinlock_t toa_syn_locks[1 << TOA_LOCK_BITS];
static atomic_t toa_sk_count = ATOMIC_INIT(0);
static atomic_t toa_syn_count = ATOMIC_INIT(0);
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

/* Reserve one slot of the max_entries budget; false when full. */
static bool toa_reserve(atomic_t *count)
{
	if (atomic_inc_return(count) > READ_ONCE(toa_max_entries)) {
		atomic_dec(count);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------------
 * Socket table
 */
static u32 toa_sk_hash(const struct sock *sk)
{
	return hash_ptr((void *)sk, TOA_SK_BITS);
}

static spinlock_t *toa_sk_lock(u32 h)
{
	return &toa_sk_locks[h & ((1 << TOA_LOCK_BITS) - 1)];
}

static void toa_sk_free_rcu(struct rcu_head *head)
{
	kfree(container_of(head, struct toa_sk_entry, rcu));
	toa_stat_inc(TOA_STAT_ENTRIES_FREE);
}

/* Unlink @e; caller holds its bucket lock. */
static void toa_sk_unlink(struct toa_sk_entry *e)
{
	hlist_del_rcu(&e->node);
	atomic_dec(&toa_sk_count);
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

int toa_sk_store(const struct sock *sk, const struct toa_tuple *t,
		 const struct toa_addr *a)
{
	u32 h = toa_sk_hash(sk);
	struct toa_sk_entry *e;
	unsigned long flags;

	if (!toa_reserve(&toa_sk_count)) {
		toa_stat_inc(TOA_STAT_ENTRIES_DROPPED_FULL);
		return -ENOSPC;
	}
	e = kmalloc(sizeof(*e), GFP_ATOMIC);
	if (!e) {
		atomic_dec(&toa_sk_count);
		toa_stat_inc(TOA_STAT_ENTRIES_NOMEM);
		return -ENOMEM;
	}
	e->sk = sk;
	e->tuple = *t;
	e->addr = *a;
	toa_stat_inc(TOA_STAT_ENTRIES_ALLOC);

	spin_lock_irqsave(toa_sk_lock(h), flags);
	if (toa_sk_unlink_sk(h, sk))
		toa_stat_inc(TOA_STAT_ENTRIES_REPLACED);
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
		      toa_syn_seed) >> (32 - TOA_SYN_BITS);
}

static spinlock_t *toa_syn_lock(u32 h)
{
	return &toa_syn_locks[h & ((1 << TOA_LOCK_BITS) - 1)];
}

static void toa_syn_free_rcu(struct rcu_head *head)
{
	kfree(container_of(head, struct toa_syn_entry, rcu));
	toa_stat_inc(TOA_STAT_SYN_STASH_FREE);
}

static void toa_syn_unlink(struct toa_syn_entry *e)
{
	hlist_del_rcu(&e->node);
	atomic_dec(&toa_syn_count);
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

int toa_syn_stash(const struct toa_tuple *t, const struct toa_addr *a)
{
	u32 h = toa_syn_hash(t);
	struct toa_syn_entry *e, *old;
	unsigned long flags;

	if (!toa_reserve(&toa_syn_count)) {
		toa_stat_inc(TOA_STAT_SYN_STASH_DROPPED_FULL);
		return -ENOSPC;
	}
	e = kmalloc(sizeof(*e), GFP_ATOMIC);
	if (!e) {
		atomic_dec(&toa_syn_count);
		toa_stat_inc(TOA_STAT_ENTRIES_NOMEM);
		return -ENOMEM;
	}
	e->tuple = *t;
	e->addr = *a;
	e->expires = jiffies + TOA_SYN_TTL;
	toa_stat_inc(TOA_STAT_SYN_STASHED);

	spin_lock_irqsave(toa_syn_lock(h), flags);
	old = toa_syn_find(h, t);	/* a repeated SYN replaces the old one */
	if (old)
		toa_syn_unlink(old);
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
		}
		toa_syn_unlink(e);
	}
	spin_unlock_irqrestore(toa_syn_lock(h), flags);
	if (found)
		toa_stat_inc(TOA_STAT_SYN_STASH_USED);
	return found;
}

/* Drop expired stash entries (all of them when @all). */
static void toa_syn_sweep(bool all)
{
	struct toa_syn_entry *e;
	struct hlist_node *tmp;
	unsigned long flags;
	u32 h;

	for (h = 0; h < ARRAY_SIZE(toa_syn_tab); h++) {
		if (hlist_empty(&toa_syn_tab[h]))
			continue;
		spin_lock_irqsave(toa_syn_lock(h), flags);
		hlist_for_each_entry_safe(e, tmp, &toa_syn_tab[h], node) {
			if (all || time_after_eq(jiffies, e->expires)) {
				if (!all)
					toa_stat_inc(TOA_STAT_SYN_STASH_EXPIRED);
				toa_syn_unlink(e);
			}
		}
		spin_unlock_irqrestore(toa_syn_lock(h), flags);
	}
}

static void toa_syn_gc_work(struct work_struct *work)
{
	toa_syn_sweep(false);
	if (atomic_read(&toa_syn_count))
		schedule_delayed_work(&toa_syn_gc, TOA_SYN_GC);
}

/* ------------------------------------------------------------------------
 * Setup and teardown
 */
int toa_table_init(void)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(toa_sk_tab); i++)
		INIT_HLIST_HEAD(&toa_sk_tab[i]);
	for (i = 0; i < ARRAY_SIZE(toa_syn_tab); i++)
		INIT_HLIST_HEAD(&toa_syn_tab[i]);
	for (i = 0; i < ARRAY_SIZE(toa_sk_locks); i++) {
		spin_lock_init(&toa_sk_locks[i]);
		spin_lock_init(&toa_syn_locks[i]);
	}
	get_random_bytes(&toa_syn_seed, sizeof(toa_syn_seed));
	return 0;
}

/*
 * Empty both tables.  Only called once every probe is unregistered, so
 * nothing can add entries any more; the stash timer is stopped first
 * because it re-arms itself.
 */
void toa_table_flush(void)
{
	struct toa_sk_entry *e;
	struct hlist_node *tmp;
	unsigned long flags;
	u32 h;

	cancel_delayed_work_sync(&toa_syn_gc);
	toa_syn_sweep(true);
	for (h = 0; h < ARRAY_SIZE(toa_sk_tab); h++) {
		spin_lock_irqsave(toa_sk_lock(h), flags);
		hlist_for_each_entry_safe(e, tmp, &toa_sk_tab[h], node)
			toa_sk_unlink(e);
		spin_unlock_irqrestore(toa_sk_lock(h), flags);
	}
}

/* Wait for every call_rcu() callback: they live in this module's text. */
void toa_table_exit(void)
{
	toa_table_flush();
	rcu_barrier();
}
