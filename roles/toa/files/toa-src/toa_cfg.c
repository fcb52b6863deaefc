// SPDX-License-Identifier: GPL-2.0
/*
 * Runtime configuration of the toa module: which option kinds carry TOA and
 * which sources may send it.  The whole configuration lives in one
 * RCU-protected object: the packet path reads a consistent snapshot without
 * locks, and a sysfs write builds a new object and swaps it in.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/mutex.h>
#include <linux/inet.h>
#include <net/ipv6.h>
#include "toa.h"

#define TOA_MAX_CIDRS	256

struct toa_config __rcu *toa_cfg;

/* Serialises writers; also makes module exit and a late sysfs write exclusive. */
static DEFINE_MUTEX(toa_cfg_mutex);
static bool toa_cfg_dead;

static void toa_cfg_defaults(struct toa_config *c)
{
	memset(&c->k4, 0, sizeof(c->k4));
	memset(&c->k6, 0, sizeof(c->k6));
	toa_kind_set(&c->k4, 200);
	toa_kind_set(&c->k6, 253);
	toa_kind_set(&c->k6, 254);
	c->ncidrs = 0;
}

static struct toa_config *toa_cfg_alloc(unsigned int ncidrs)
{
	return kzalloc(sizeof(struct toa_config) +
		       ncidrs * sizeof(struct toa_cidr), GFP_KERNEL);
}

/* Publish @new and free the old object once no reader can see it. */
static void toa_cfg_publish(struct toa_config *new)
{
	struct toa_config *old;

	old = rcu_dereference_protected(toa_cfg,
					lockdep_is_held(&toa_cfg_mutex));
	rcu_assign_pointer(toa_cfg, new);
	mutex_unlock(&toa_cfg_mutex);
	if (old) {
		synchronize_rcu();
		kfree(old);
	}
}

/* Caller holds the mutex; returns the current object or NULL before init. */
static const struct toa_config *toa_cfg_locked(void)
{
	return rcu_dereference_protected(toa_cfg,
					 lockdep_is_held(&toa_cfg_mutex));
}

/* ------------------------------------------------------------------------
 * Option kinds: "200" or "253,254".
 */
static int toa_parse_kinds(const char *name, const char *val,
			   struct toa_kinds *out)
{
	char *buf, *s, *tok;
	int err = 0;

	memset(out, 0, sizeof(*out));
	buf = kstrdup(val, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	s = strim(buf);
	while (!err && (tok = strsep(&s, ",")) != NULL) {
		unsigned int kind;

		tok = strim(tok);
		if (!*tok)
			continue;
		/* 0 (EOL) and 1 (NOP) have no length byte: never TOA. */
		if (kstrtouint(tok, 10, &kind) || kind < 2 || kind > 255) {
			pr_warn("%s: bad option kind '%s' (want 2..255)\n",
				name, tok);
			err = -EINVAL;
			break;
		}
		toa_kind_set(out, kind);
	}
	kfree(buf);
	return err;
}

static int toa_set_kinds(const char *val, const struct kernel_param *kp)
{
	bool v6 = kp->arg != NULL;	/* arg is non-NULL for ipv6_kinds */
	const struct toa_config *cur;
	struct toa_config *new;
	struct toa_kinds k;
	int err;

	err = toa_parse_kinds(kp->name, val, &k);
	if (err)
		return err;

	mutex_lock(&toa_cfg_mutex);
	cur = toa_cfg_locked();
	new = toa_cfg_alloc(cur ? cur->ncidrs : 0);
	if (toa_cfg_dead || !new) {
		mutex_unlock(&toa_cfg_mutex);
		kfree(new);
		return toa_cfg_dead ? -ENODEV : -ENOMEM;
	}
	if (cur)
		memcpy(new, cur, sizeof(*cur) +
		       cur->ncidrs * sizeof(struct toa_cidr));
	else
		toa_cfg_defaults(new);
	if (v6)
		new->k6 = k;
	else
		new->k4 = k;
	toa_cfg_publish(new);
	return 0;
}

static int toa_print_kinds(char *buf, const struct toa_kinds *k)
{
	unsigned int kind;
	int n = 0;

	for (kind = 0; kind < 256; kind++)
		if (toa_kind_test(k, kind))
			n += scnprintf(buf + n, PAGE_SIZE - n, "%s%u",
				       n ? "," : "", kind);
	return n;
}

static int toa_get_kinds(char *buf, const struct kernel_param *kp)
{
	bool v6 = kp->arg != NULL;
	const struct toa_config *cur;
	struct toa_config def;
	int n;

	rcu_read_lock();
	cur = rcu_dereference(toa_cfg);
	if (!cur) {
		toa_cfg_defaults(&def);
		cur = &def;
	}
	n = toa_print_kinds(buf, v6 ? &cur->k6 : &cur->k4);
	rcu_read_unlock();
	return n;
}

/*
 * A parameter given at load time allocates a configuration before init runs;
 * if a later parameter is rejected, init and exit never run but the kernel
 * still calls .free, so the object is released there too.
 */
static void toa_cfg_free_param(void *arg)
{
	toa_cfg_exit();
}

static const struct kernel_param_ops toa_kinds_ops = {
	.set = toa_set_kinds,
	.get = toa_get_kinds,
	.free = toa_cfg_free_param,
};

static int toa_v6_marker;
module_param_cb(ipv4_kinds, &toa_kinds_ops, NULL, 0644);
MODULE_PARM_DESC(ipv4_kinds,
		 "TCP option kinds carrying an IPv4 TOA of length 8, comma separated (default 200)");
module_param_cb(ipv6_kinds, &toa_kinds_ops, &toa_v6_marker, 0644);
MODULE_PARM_DESC(ipv6_kinds,
		 "TCP option kinds carrying an IPv6 TOA of length 20, comma separated (default 253,254)");

/* ------------------------------------------------------------------------
 * Trusted sources: "10.0.0.0/8,192.0.2.7,2001:db8::/32"; empty trusts all.
 */

/* Clear every bit after the first @plen bits of @b (@nbytes long). */
static void toa_mask_bits(u8 *b, unsigned int nbytes, unsigned int plen)
{
	unsigned int i;

	for (i = 0; i < nbytes; i++) {
		if (plen >= 8) {
			plen -= 8;
			continue;
		}
		b[i] &= (u8)(0xff00 >> plen);
		plen = 0;
	}
}

static bool toa_prefix_match(const u8 *a, const u8 *net, unsigned int plen)
{
	unsigned int full = plen / 8, rest = plen % 8;

	if (memcmp(a, net, full))
		return false;
	return !rest || !((a[full] ^ net[full]) & (u8)(0xff00 >> rest));
}

static int toa_parse_cidr(const char *tok, struct toa_cidr *c)
{
	const char *slash = strchr(tok, '/');
	int alen = slash ? slash - tok : strlen(tok);
	unsigned int plen, max;
	const char *end;
	u8 raw[16];

	memset(c, 0, sizeof(*c));
	if (strnchr(tok, alen, ':')) {
		if (!in6_pton(tok, alen, raw, -1, &end) || end != tok + alen)
			return -EINVAL;
		c->fam = TOA_FAM_V6;
		memcpy(c->net.s6_addr, raw, 16);
		max = 128;
	} else {
		if (!in4_pton(tok, alen, raw, -1, &end) || end != tok + alen)
			return -EINVAL;
		c->fam = TOA_FAM_V4;
		c->net.s6_addr[10] = 0xff;
		c->net.s6_addr[11] = 0xff;
		memcpy(&c->net.s6_addr[12], raw, 4);
		max = 32;
	}
	plen = max;
	if (slash && (kstrtouint(slash + 1, 10, &plen) || plen > max))
		return -EINVAL;
	c->plen = plen;
	if (c->fam == TOA_FAM_V4)
		toa_mask_bits(&c->net.s6_addr[12], 4, plen);
	else
		toa_mask_bits(c->net.s6_addr, 16, plen);
	return 0;
}

/* Parse @val into @new->cidr; @new has room for @max entries. */
static int toa_parse_cidrs(const char *val, struct toa_config *new,
			   unsigned int max)
{
	char *buf, *s, *tok;
	int err = 0;

	buf = kstrdup(val, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	s = strim(buf);
	new->ncidrs = 0;
	while (!err && (tok = strsep(&s, ",")) != NULL) {
		tok = strim(tok);
		if (!*tok)
			continue;
		if (new->ncidrs >= max ||
		    toa_parse_cidr(tok, &new->cidr[new->ncidrs])) {
			pr_warn("trusted_cidrs: bad CIDR '%s'\n", tok);
			err = -EINVAL;
			break;
		}
		new->ncidrs++;
	}
	kfree(buf);
	return err;
}

static int toa_set_cidrs(const char *val, const struct kernel_param *kp)
{
	unsigned int max = 1;
	const struct toa_config *cur;
	struct toa_config *new;
	const char *p;
	int err;

	for (p = val; *p; p++)
		max += *p == ',';
	if (max > TOA_MAX_CIDRS) {
		pr_warn("trusted_cidrs: more than %d entries\n", TOA_MAX_CIDRS);
		return -EINVAL;
	}
	new = toa_cfg_alloc(max);
	if (!new)
		return -ENOMEM;
	err = toa_parse_cidrs(val, new, max);
	if (err) {
		kfree(new);
		return err;
	}

	mutex_lock(&toa_cfg_mutex);
	if (toa_cfg_dead) {
		mutex_unlock(&toa_cfg_mutex);
		kfree(new);
		return -ENODEV;
	}
	cur = toa_cfg_locked();
	if (cur) {
		new->k4 = cur->k4;
		new->k6 = cur->k6;
	} else {
		struct toa_config def;

		toa_cfg_defaults(&def);
		new->k4 = def.k4;
		new->k6 = def.k6;
	}
	toa_cfg_publish(new);
	return 0;
}

static int toa_get_cidrs(char *buf, const struct kernel_param *kp)
{
	const struct toa_config *cur;
	unsigned int i;
	int n = 0;

	rcu_read_lock();
	cur = rcu_dereference(toa_cfg);
	for (i = 0; cur && i < cur->ncidrs; i++) {
		const struct toa_cidr *c = &cur->cidr[i];

		if (c->fam == TOA_FAM_V4)
			n += scnprintf(buf + n, PAGE_SIZE - n, "%s%pI4/%u",
				       n ? "," : "", &c->net.s6_addr[12],
				       c->plen);
		else
			n += scnprintf(buf + n, PAGE_SIZE - n, "%s%pI6c/%u",
				       n ? "," : "", &c->net, c->plen);
	}
	rcu_read_unlock();
	return n;
}

static const struct kernel_param_ops toa_cidrs_ops = {
	.set = toa_set_cidrs,
	.get = toa_get_cidrs,
	.free = toa_cfg_free_param,
};

module_param_cb(trusted_cidrs, &toa_cidrs_ops, NULL, 0644);
MODULE_PARM_DESC(trusted_cidrs,
		 "Comma separated IPv4/IPv6 CIDRs of proxies allowed to send TOA; empty trusts every source");

bool toa_cfg_trusted(const struct toa_config *cfg, const struct toa_tuple *t)
{
	unsigned int i;

	if (!cfg->ncidrs)
		return true;
	for (i = 0; i < cfg->ncidrs; i++) {
		const struct toa_cidr *c = &cfg->cidr[i];

		if (c->fam != t->fam)
			continue;
		if (c->fam == TOA_FAM_V4 ?
		    toa_prefix_match(&t->raddr.s6_addr[12],
				     &c->net.s6_addr[12], c->plen) :
		    toa_prefix_match(t->raddr.s6_addr, c->net.s6_addr,
				     c->plen))
			return true;
	}
	return false;
}

/* Make sure a configuration exists even when no parameter was given. */
int toa_cfg_init(void)
{
	struct toa_config *new;

	mutex_lock(&toa_cfg_mutex);
	if (toa_cfg_locked()) {
		mutex_unlock(&toa_cfg_mutex);
		return 0;
	}
	new = toa_cfg_alloc(0);
	if (!new) {
		mutex_unlock(&toa_cfg_mutex);
		return -ENOMEM;
	}
	toa_cfg_defaults(new);
	toa_cfg_publish(new);
	return 0;
}

/*
 * Called once no probe can run any more (module exit, failed init, and the
 * parameters' .free); idempotent.  The dead flag turns a sysfs write racing
 * with rmmod into -ENODEV instead of a leak.
 */
void toa_cfg_exit(void)
{
	struct toa_config *old;

	mutex_lock(&toa_cfg_mutex);
	toa_cfg_dead = true;
	old = rcu_dereference_protected(toa_cfg,
					lockdep_is_held(&toa_cfg_mutex));
	RCU_INIT_POINTER(toa_cfg, NULL);
	mutex_unlock(&toa_cfg_mutex);
	if (old) {
		synchronize_rcu();
		kfree(old);
	}
}
