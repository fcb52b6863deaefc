// SPDX-License-Identifier: GPL-2.0
/*
 * Packet pump of the toa.ko load test (tests/kmod/vm_load.py drives it).
 *
 * One process is one "flow": its own network namespace with a TUN device.
 * The process plays the layer-4 proxy on the TUN side (hand-made SYN, the
 * kernel's SYN-ACK read back, final ACK carrying a TOA option and a 16-byte
 * payload naming the handshake) and the server on the socket side
 * (listeners on IPv4, IPv6 and dual-stack IPv6 taking IPv4, an accept
 * thread that checks what accept() and getpeername() report).  Beside them
 * a thread makes plain loopback connections that must never be rewritten
 * and a thread calls getpeername() in a tight loop on TOA sockets.
 *
 * Every handshake has an id; the id alone decides the proxy's 4-tuple, the
 * injected client address and port, the listener and the TOA kind, so the
 * payload the server reads back says exactly what getpeername() must say.
 *
 * Threads: main (reads commands on stdin, answers one "done ..." line on
 * stdout each), pump (TUN), accept, hammer, plain.
 *
 *   toa_load_pump --flow I --flows N [--window W] [--syn-every K]
 *                 [--nofile N] [--plain-sleep-us U] [--hammer-pause-us U]
 *                 [--hammer-nice N] [--cpu C]
 *   toa_load_pump --plain-only [--plain-sleep-us U]   (current namespace)
 *
 * Commands: run N | hold N | hammer K | hammer-off | check | close | bg | bg-stop |
 * mark S (0: module loaded, 1: unload in progress, 2: unloaded) |
 * plain | report | quit.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define PORT4		80	/* IPv4 listener on L4 */
#define PORT6		80	/* IPv6-only listener on L6 */
#define PORT_DUAL	81	/* IPv6 listener on ::, takes IPv4 */
#define SPORT_BASE	32768	/* proxy source ports 32768..65535 */
#define TUPLE_BITS	22	/* 128 proxy addresses x 32768 ports */
#define MAGIC		0x544f414cu	/* "TOAL" */

enum { ST_FREE, ST_SYN, ST_ACK, ST_DONE, ST_LOST };
enum { KEEP_NONE, KEEP_HOLD, KEEP_HAMMER };
/* outcome of one check of one address */
enum { C_TOA, C_REAL, C_MISSING, C_WRONG, C_STALE, C_NR };
static const char *const cname[C_NR] = { "ok", "real", "missing", "wrong", "stale" };

struct slot {
	uint64_t id;
	uint32_t isn, sisn;
	double t;		/* last segment sent */
	double t_first;		/* first SYN sent */
	int tries;
	int keep;
	int state;		/* atomic */
};

struct held {
	int fd;
	uint64_t id;
};

struct hvec {
	struct held *v;
	size_t n, cap;
	pthread_mutex_t mu;
};

/* counters of one command (reset when it starts) */
struct tally {
	uint64_t c[C_NR];	/* per connection, the worse of accept() and getpeername() */
	uint64_t disagree;	/* accept() and getpeername() differ */
	uint64_t nodata, late, lost;
};

static int flow, flows = 1, window = 256, syn_every = 8;
static long plain_sleep_us = 10000, hammer_pause_us;
static int hammer_nice = 10;
static int tun_fd = -1, lsn[3] = { -1, -1, -1 };
static struct slot *ring;
static uint64_t mask;

static uint64_t next_id;	/* pump only */
static uint64_t target_id;	/* atomic: issue ids below this */
static uint64_t finished;	/* atomic: ids done or lost */
static uint64_t hold_from, hold_until;	/* atomic */
static int keep_kind;		/* atomic: KEEP_* for ids in [hold_from, hold_until) */
static int mod_state;		/* atomic: 0 loaded, 1 unloading, 2 unloaded */
static int quit;
static int stop_req;		/* atomic: main asks the pump to stop issuing */
static uint64_t issued;		/* atomic: copy of next_id for the other threads */
static struct tally tly;
static struct hvec held = { .mu = PTHREAD_MUTEX_INITIALIZER };
static struct hvec hams = { .mu = PTHREAD_MUTEX_INITIALIZER };
static uint64_t ham_calls, ham_c[C_NR];
static int ham_on, plain_on;
static uint64_t plain_n, plain_bad, plain_err;
static char plain_first_bad[200];

#define A_LOAD(p)	__atomic_load_n((p), __ATOMIC_SEQ_CST)
#define A_STORE(p, v)	__atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define A_ADD(p, v)	__atomic_add_fetch((p), (v), __ATOMIC_RELAXED)

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "toa_load_pump[%d]: ", flow);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", strerror(errno));
	exit(2);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nap(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------------
 * What an id means
 */
static int id_type(uint64_t id)		/* 0: v4, 1: v6, 2: v4 on the dual listener */
{
	return id % 3;
}

static unsigned int id_sport(uint64_t id)
{
	return SPORT_BASE + (id & 0x7fff);
}

static unsigned int id_pidx(uint64_t id)	/* proxy address index 0..127 */
{
	return (id >> 15) & 0x7f;
}

/* unique over every flow: the injected address space is shared */
static uint64_t id_global(uint64_t id)
{
	return id * flows + flow;
}

static unsigned int toa_port(uint64_t g)
{
	/* with the address fixing g's low 17 bits, the port fixes the rest;
	 * stays below 0xF989, the Fast Open magic */
	return 1024 + ((g >> 17) + (g & 0xffff)) % 60000;
}

static void toa_v4(uint64_t g, uint8_t a[4])	/* 198.18.0.0/15 */
{
	uint32_t x = 0xc6120000u + (uint32_t)(g & 0x1ffff);

	a[0] = x >> 24; a[1] = x >> 16; a[2] = x >> 8; a[3] = x;
}

static void toa_v6(uint64_t g, uint8_t a[16])	/* 2001:db8:7000::/64 + g */
{
	static const uint8_t pfx[8] = { 0x20, 0x01, 0x0d, 0xb8, 0x70, 0x00, 0, 0 };
	int i;

	memcpy(a, pfx, 8);
	for (i = 0; i < 8; i++)
		a[8 + i] = g >> (56 - 8 * i);
}

static void l4(uint8_t a[4]) { a[0] = 192; a[1] = 0; a[2] = 2; a[3] = 1; }
static void p4(unsigned int pidx, uint8_t a[4]) { l4(a); a[3] = 2 + pidx; }

static void l6(uint8_t a[16])
{
	memset(a, 0, 16);
	a[0] = 0x20; a[1] = 0x01; a[2] = 0x0d; a[3] = 0xb8; a[15] = 1;
}

static void p6(unsigned int pidx, uint8_t a[16]) { l6(a); a[15] = 2 + pidx; }

static void mapped(const uint8_t v4[4], uint8_t a[16])
{
	memset(a, 0, 16);
	a[10] = a[11] = 0xff;
	memcpy(a + 12, v4, 4);
}

/* The address getpeername() must report with (toa) and without the module. */
static void expect(uint64_t id, int toa, struct sockaddr_storage *ss)
{
	uint64_t g = id_global(id);
	int t = id_type(id);
	uint8_t a4[4];

	memset(ss, 0, sizeof(*ss));
	if (t == 1) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		if (toa) {
			toa_v6(g, s6->sin6_addr.s6_addr);
			s6->sin6_port = htons(toa_port(g));
		} else {
			p6(id_pidx(id), s6->sin6_addr.s6_addr);
			s6->sin6_port = htons(id_sport(id));
		}
		return;
	}
	if (toa)
		toa_v4(g, a4);
	else
		p4(id_pidx(id), a4);
	if (t == 0) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, a4, 4);
		s4->sin_port = htons(toa ? toa_port(g) : id_sport(id));
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		mapped(a4, s6->sin6_addr.s6_addr);
		s6->sin6_port = htons(toa ? toa_port(g) : id_sport(id));
	}
}

static int same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
	}
	return 0;
}

static void fmt_addr(const struct sockaddr_storage *ss, char *buf, size_t n)
{
	char h[INET6_ADDRSTRLEN] = "?";
	unsigned int port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		inet_ntop(AF_INET, &s->sin_addr, h, sizeof(h));
		port = ntohs(s->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, h, sizeof(h));
		port = ntohs(s->sin6_port);
	}
	snprintf(buf, n, "%s:%u", h, port);
}

/*
 * Judge one reported address.  @st is the module state around the call:
 * 0 loaded the whole time, 2 unloaded the whole time, 1 anything else (an
 * unload ran meanwhile: both answers are right).
 */
static int judge(uint64_t id, const struct sockaddr_storage *got, int st)
{
	struct sockaddr_storage want;

	expect(id, 1, &want);
	if (same(got, &want))
		return st == 2 ? C_STALE : C_TOA;
	expect(id, 0, &want);
	if (same(got, &want))
		return st == 0 ? C_MISSING : C_REAL;
	return C_WRONG;
}

static int worse(int a, int b)
{
	static const int rank[C_NR] = { [C_TOA] = 0, [C_REAL] = 0, [C_MISSING] = 1,
					[C_WRONG] = 3, [C_STALE] = 2 };
	return rank[a] >= rank[b] ? a : b;
}

static char first_bad[256], ham_first_bad[256];

static void note_bad(char *buf, uint64_t id, const char *what,
		     const struct sockaddr_storage *got, int c)
{
	struct sockaddr_storage want;
	char g[80], w[80];

	if (buf[0])
		return;
	expect(id, 1, &want);
	fmt_addr(got, g, sizeof(g));
	fmt_addr(&want, w, sizeof(w));
	snprintf(buf, sizeof(first_bad), "flow=%d:id=%llu:%s:%s:got=%s:want=%s",
		 flow, (unsigned long long)id, what, cname[c], g, w);
}

/* ------------------------------------------------------------------------
 * Packets
 */
static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s)
{
	while (n > 1) {
		s += (p[0] << 8) | p[1];
		p += 2;
		n -= 2;
	}
	if (n)
		s += p[0] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return ~s & 0xffff;
}

static void put16(uint8_t *p, unsigned int v) { p[0] = v >> 8; p[1] = v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, v & 0xffff); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

/* IPv4/IPv6 + TCP segment into @buf; returns its length. */
static size_t segment(uint8_t *buf, int v6, const uint8_t *src, const uint8_t *dst,
		      unsigned int sport, unsigned int dport, uint32_t seq, uint32_t ack,
		      unsigned int flags, const uint8_t *opt, size_t optlen,
		      const uint8_t *data, size_t dlen)
{
	size_t ihl = v6 ? 40 : 20, alen = v6 ? 16 : 4;
	size_t pad = (4 - optlen % 4) % 4, thl = 20 + pad + optlen, tl = thl + dlen;
	uint8_t *t = buf + ihl;
	uint32_t s;

	memset(buf, 0, ihl + thl);
	put16(t, sport);
	put16(t + 2, dport);
	put32(t + 4, seq);
	put32(t + 8, ack);
	t[12] = (thl / 4) << 4;
	t[13] = flags;
	put16(t + 14, 65535);
	memset(t + 20, 1, pad);			/* NOP padding in front */
	memcpy(t + 20 + pad, opt, optlen);
	memcpy(t + thl, data, dlen);
	s = sum16(src, alen, 0);
	s = sum16(dst, alen, s);
	s += 6 + tl;
	s = sum16(t, tl, s);
	put16(t + 16, fold(s));
	if (v6) {
		buf[0] = 0x60;
		put16(buf + 4, tl);
		buf[6] = 6;
		buf[7] = 64;
		memcpy(buf + 8, src, 16);
		memcpy(buf + 24, dst, 16);
	} else {
		buf[0] = 0x45;
		put16(buf + 2, 20 + tl);
		buf[6] = 0x40;
		buf[8] = 64;
		buf[9] = 6;
		memcpy(buf + 12, src, 4);
		memcpy(buf + 16, dst, 4);
		put16(buf + 10, fold(sum16(buf, 20, 0)));
	}
	return ihl + tl;
}

static size_t toa_option(uint64_t id, uint8_t *o)
{
	uint64_t g = id_global(id);

	if (id_type(id) == 1) {
		o[0] = (id / 3) & 1 ? 254 : 253;	/* both default IPv6 kinds */
		o[1] = 20;
		put16(o + 2, toa_port(g));
		toa_v6(g, o + 4);
		return 20;
	}
	o[0] = 200;
	o[1] = 8;
	put16(o + 2, toa_port(g));
	toa_v4(g, o + 4);
	return 8;
}

static void tuple(uint64_t id, int *v6, uint8_t src[16], uint8_t dst[16], unsigned int *dport)
{
	int t = id_type(id);

	*v6 = t == 1;
	if (*v6) {
		p6(id_pidx(id), src);
		l6(dst);
	} else {
		p4(id_pidx(id), src);
		l4(dst);
	}
	*dport = t == 0 ? PORT4 : t == 1 ? PORT6 : PORT_DUAL;
}

static void tun_write(const uint8_t *p, size_t n)
{
	/* a full TUN queue drops on the way in; retransmission covers it */
	if (write(tun_fd, p, n) < 0 && errno != EAGAIN && errno != ENOBUFS &&
	    errno != ENOMEM)
		die("write tun");
}

static void send_syn(struct slot *s)
{
	uint8_t src[16], dst[16], opt[28], pkt[128];
	unsigned int dport;
	size_t n = 4;
	int v6;

	tuple(s->id, &v6, src, dst, &dport);
	opt[0] = 2; opt[1] = 4; put16(opt + 2, 1460);		/* MSS */
	if (syn_every && s->id % syn_every == 0)		/* the same TOA on the SYN too */
		n += toa_option(s->id, opt + 4);
	tun_write(pkt, segment(pkt, v6, src, dst, id_sport(s->id), dport, s->isn, 0,
			       0x02, opt, n, NULL, 0));
	s->t = now();
	s->tries++;
}

static void send_ack(struct slot *s)
{
	uint8_t src[16], dst[16], opt[20], pkt[160], data[16];
	unsigned int dport;
	size_t n;
	int v6;

	tuple(s->id, &v6, src, dst, &dport);
	n = toa_option(s->id, opt);
	put32(data, MAGIC);
	put32(data + 4, flow);
	put32(data + 8, s->id >> 32);
	put32(data + 12, (uint32_t)s->id);
	tun_write(pkt, segment(pkt, v6, src, dst, id_sport(s->id), dport, s->isn + 1,
			       s->sisn + 1, 0x18, opt, n, data, sizeof(data)));
	s->t = now();
	s->tries++;
}

/* ------------------------------------------------------------------------
 * Pump thread: SYN out, SYN-ACK in, ACK out, retransmit, give up
 */
static void finish(struct slot *s, int state)
{
	int exp = A_LOAD(&s->state);

	while (exp == ST_SYN || exp == ST_ACK) {
		if (__atomic_compare_exchange_n(&s->state, &exp, state, 0,
						__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
			if (state == ST_LOST)
				A_ADD(&tly.lost, 1);
			A_ADD(&finished, 1);
			return;
		}
	}
}

static void on_packet(const uint8_t *p, ssize_t n)
{
	const uint8_t *t, *dst;
	uint64_t low, id;
	unsigned int dport, pidx;
	struct slot *s;

	if (n < 20)
		return;
	if ((p[0] >> 4) == 4 && p[9] == 6 && n >= (p[0] & 15) * 4 + 20) {
		t = p + (p[0] & 15) * 4;
		dst = p + 16;
		pidx = dst[3] - 2;
	} else if ((p[0] >> 4) == 6 && p[6] == 6 && n >= 60) {
		t = p + 40;
		dst = p + 24;
		pidx = dst[15] - 2;
	} else {
		return;
	}
	if ((t[13] & 0x12) != 0x12)		/* only SYN-ACKs matter */
		return;
	dport = t[2] << 8 | t[3];
	if (dport < SPORT_BASE || pidx > 0x7f)
		return;
	low = (uint64_t)pidx << 15 | (dport - SPORT_BASE);
	/* the in-flight id whose low TUPLE_BITS are @low */
	id = next_id - 1 - ((next_id - 1 - low) & ((1ull << TUPLE_BITS) - 1));
	s = &ring[id & mask];
	if (s->id != id || get32(t + 8) != s->isn + 1)
		return;
	if (A_LOAD(&s->state) == ST_SYN) {
		s->sisn = get32(t + 4);
		s->tries = 0;
		A_STORE(&s->state, ST_ACK);
		send_ack(s);
	} else if (A_LOAD(&s->state) == ST_ACK && now() - s->t > 0.2) {
		send_ack(s);		/* the kernel retransmitted: our ACK went missing */
	}
}

static void retransmit(double giveup)
{
	double t = now();
	uint64_t i;

	for (i = 0; i <= mask; i++) {
		struct slot *s = &ring[i];
		int st = A_LOAD(&s->state);

		if ((st != ST_SYN && st != ST_ACK) || t - s->t < 1.0)
			continue;
		if (t - s->t_first > giveup) {
			finish(s, ST_LOST);
			continue;
		}
		if (st == ST_SYN)
			send_syn(s);
		else
			send_ack(s);
	}
}

static void *pump(void *arg)
{
	uint8_t buf[2048];
	double last_scan = now();

	(void)arg;
	while (!A_LOAD(&quit)) {
		int busy = 0, k;

		if (A_LOAD(&stop_req)) {
			A_STORE(&target_id, next_id);
			A_STORE(&stop_req, 0);
		}
		for (k = 0; k < 64 && next_id < A_LOAD(&target_id); k++) {
			struct slot *s = &ring[next_id & mask];
			int st = A_LOAD(&s->state);

			if (st == ST_SYN || st == ST_ACK)
				break;			/* window full */
			s->id = next_id;
			s->isn = (uint32_t)(next_id * 2654435761u) ^ 0x5a5a0000u;
			s->tries = 0;
			s->t_first = now();
			s->keep = KEEP_NONE;
			if (next_id >= A_LOAD(&hold_from) && next_id < A_LOAD(&hold_until))
				s->keep = A_LOAD(&keep_kind);
			A_STORE(&s->state, ST_SYN);
			next_id++;
			A_STORE(&issued, next_id);
			send_syn(s);
			busy = 1;
		}
		for (k = 0; k < 256; k++) {
			ssize_t n = read(tun_fd, buf, sizeof(buf));

			if (n < 0) {
				if (errno != EAGAIN && errno != EINTR)
					die("read tun");
				break;
			}
			on_packet(buf, n);
			busy = 1;
		}
		if (now() - last_scan > 0.25) {
			retransmit(60);
			last_scan = now();
		}
		if (!busy) {
			struct pollfd pf = { .fd = tun_fd, .events = POLLIN };

			poll(&pf, 1, 5);
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * Accept thread
 */
static void hv_push(struct hvec *h, int fd, uint64_t id)
{
	pthread_mutex_lock(&h->mu);
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 4096;
		h->v = realloc(h->v, h->cap * sizeof(*h->v));
		if (!h->v)
			die("realloc");
	}
	h->v[h->n].fd = fd;
	h->v[h->n].id = id;
	h->n++;
	pthread_mutex_unlock(&h->mu);
}

static int read_id(int fd, uint64_t *id)
{
	uint8_t d[16];
	size_t got = 0;

	while (got < sizeof(d)) {
		ssize_t n = recv(fd, d + got, sizeof(d) - got, MSG_DONTWAIT);

		if (n > 0) {
			got += n;
			continue;
		}
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pf = { .fd = fd, .events = POLLIN };

			if (poll(&pf, 1, 3000) > 0)
				continue;
		}
		return -1;
	}
	if (get32(d) != MAGIC || get32(d + 4) != (uint32_t)flow)
		return -1;
	*id = (uint64_t)get32(d + 8) << 32 | get32(d + 12);
	return 0;
}

static void accept_one(int l)
{
	struct sockaddr_storage a, p;
	socklen_t al = sizeof(a), pl = sizeof(p);
	int s0, s1, st, ca, cp, c, fd;
	uint64_t id;
	struct slot *s;

	s0 = A_LOAD(&mod_state);
	fd = accept4(l, (struct sockaddr *)&a, &al, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
			return;
		die("accept");
	}
	if (read_id(fd, &id)) {
		A_ADD(&tly.nodata, 1);
		close(fd);
		return;
	}
	if (getpeername(fd, (struct sockaddr *)&p, &pl))
		die("getpeername");
	s1 = A_LOAD(&mod_state);
	st = s0 == s1 && s0 != 1 ? s0 : 1;
	ca = judge(id, &a, st);
	cp = judge(id, &p, st);
	c = worse(ca, cp);
	A_ADD(&tly.c[c], 1);
	if (!same(&a, &p))
		A_ADD(&tly.disagree, 1);
	if (c == C_MISSING || c == C_WRONG || c == C_STALE)
		note_bad(first_bad, id, ca == c ? "accept" : "getpeername", ca == c ? &a : &p, c);

	s = &ring[id & mask];
	if (s->id != id || A_LOAD(&s->state) != ST_ACK) {
		A_ADD(&tly.late, 1);		/* given up on, or a duplicate */
		close(fd);
		return;
	}
	if (s->keep == KEEP_HOLD)
		hv_push(&held, fd, id);
	else if (s->keep == KEEP_HAMMER)
		hv_push(&hams, fd, id);
	else
		close(fd);			/* SO_LINGER 0 from the listener: RST, no TIME_WAIT */
	finish(s, ST_DONE);
}

static void *acceptor(void *arg)
{
	struct epoll_event ev[3];
	int ep = epoll_create1(EPOLL_CLOEXEC), i;

	(void)arg;
	if (ep < 0)
		die("epoll_create1");
	for (i = 0; i < 3; i++) {
		struct epoll_event e = { .events = EPOLLIN, .data.fd = lsn[i] };

		if (epoll_ctl(ep, EPOLL_CTL_ADD, lsn[i], &e))
			die("epoll_ctl");
	}
	while (!A_LOAD(&quit)) {
		int n = epoll_wait(ep, ev, 3, 100), k, j;

		for (j = 0; j < n; j++)
			for (k = 0; k < 64; k++) {
				uint64_t f0 = A_LOAD(&finished);

				accept_one(ev[j].data.fd);
				if (A_LOAD(&finished) == f0)
					break;
			}
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * getpeername() in a tight loop on TOA sockets
 */
static void *hammer(void *arg)
{
	(void)arg;
	/* a tight loop, but behind the handshakes when the CPU is contended */
	if (setpriority(PRIO_PROCESS, syscall(SYS_gettid), hammer_nice))
		die("setpriority(%d)", hammer_nice);
	while (!A_LOAD(&quit)) {
		size_t i, n;

		if (!A_LOAD(&ham_on)) {
			nap(20000);
			continue;
		}
		pthread_mutex_lock(&hams.mu);	/* held for a sweep: no realloc meanwhile */
		n = hams.n;
		for (i = 0; i < n; i++) {
			struct sockaddr_storage p;
			socklen_t pl = sizeof(p);
			int s0 = A_LOAD(&mod_state), s1, c;

			if (getpeername(hams.v[i].fd, (struct sockaddr *)&p, &pl))
				die("getpeername (hammer)");
			s1 = A_LOAD(&mod_state);
			c = judge(hams.v[i].id, &p, s0 == s1 && s0 != 1 ? s0 : 1);
			A_ADD(&ham_c[c], 1);
			if (c == C_MISSING || c == C_WRONG || c == C_STALE)
				note_bad(ham_first_bad, hams.v[i].id, "hammer", &p, c);
		}
		pthread_mutex_unlock(&hams.mu);
		A_ADD(&ham_calls, n);
		if (hammer_pause_us)
			nap(hammer_pause_us);
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * Plain loopback connections: never rewritten
 */
static int plain_listener(int fam)
{
	struct sockaddr_storage ss;
	int one = 1, s = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct linger lg = { 1, 0 };

	memset(&ss, 0, sizeof(ss));
	if (s < 0)
		die("socket");
	setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	if (fam == AF_INET) {
		struct sockaddr_in *a = (void *)&ss;

		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else {
		struct sockaddr_in6 *a = (void *)&ss;

		setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
	}
	if (bind(s, (struct sockaddr *)&ss, fam == AF_INET ? sizeof(struct sockaddr_in) :
		 sizeof(struct sockaddr_in6)) || listen(s, 128))
		die("plain listener");
	return s;
}

static void plain_once(int lsock, int fam)
{
	struct sockaddr_storage la, ca, sa, pa;
	socklen_t ll = sizeof(la), cl = sizeof(ca), sl = sizeof(sa), pl = sizeof(pa);
	struct linger lg = { 1, 0 };
	int c, s;

	getsockname(lsock, (struct sockaddr *)&la, &ll);
	c = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0)
		die("socket");
	setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	if (connect(c, (struct sockaddr *)&la, ll)) {
		A_ADD(&plain_err, 1);
		close(c);
		return;
	}
	s = accept4(lsock, (struct sockaddr *)&sa, &sl, SOCK_CLOEXEC);
	if (s < 0) {
		A_ADD(&plain_err, 1);
		close(c);
		return;
	}
	getsockname(c, (struct sockaddr *)&ca, &cl);
	getpeername(s, (struct sockaddr *)&pa, &pl);
	if (!same(&ca, &sa) || !same(&ca, &pa)) {
		A_ADD(&plain_bad, 1);
		if (!plain_first_bad[0]) {
			char x[80], y[80];

			fmt_addr(&pa, x, sizeof(x));
			fmt_addr(&ca, y, sizeof(y));
			snprintf(plain_first_bad, sizeof(plain_first_bad),
				 "plain:got=%s:want=%s", x, y);
		}
	}
	A_ADD(&plain_n, 1);
	close(s);
	close(c);
}

static void *plain(void *arg)
{
	int l4s = plain_listener(AF_INET), l6s = plain_listener(AF_INET6);
	unsigned long i = 0;

	(void)arg;
	while (!A_LOAD(&quit)) {
		if (!A_LOAD(&plain_on)) {
			nap(20000);
			continue;
		}
		int v6 = i++ % 2;

		plain_once(v6 ? l6s : l4s, v6 ? AF_INET6 : AF_INET);
		if (plain_sleep_us)
			nap(plain_sleep_us);
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * Setup
 */
static void sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd) != 0) {
		errno = 0;
		die("command failed: %s", cmd);
	}
}

static void put_sysctl(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0 || write(fd, val, strlen(val)) < 0)
		die("write %s", path);
	close(fd);
}

/*
 * Only segments with SYN set (the SYN-ACKs) reach the TUN's reader: the
 * resets of every close() and duplicate ACKs are dropped in the kernel, in
 * the TUN's transmit path, instead of costing a read() each.  A socket
 * filter program (TUNSETFILTEREBPF, Linux >= 4.16: classic filters are for
 * TAP devices only); without it the pump reads and ignores them.
 */
static struct bpf_insn insn(int code, int dst, int src, int off, int imm)
{
	struct bpf_insn i = { .code = code, .dst_reg = dst, .src_reg = src,
			      .off = off, .imm = imm };
	return i;
}

static void tun_filter(void)
{
#ifdef TUNSETFILTEREBPF
	struct bpf_insn code[] = {
		insn(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0),	/* r6 = skb */
		insn(BPF_LD | BPF_ABS | BPF_B, 0, 0, 0, 0),	/* IP version */
		insn(BPF_ALU64 | BPF_RSH | BPF_K, 0, 0, 0, 4),
		insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 6, 6),	/* IPv6: to 10 */
		insn(BPF_LD | BPF_ABS | BPF_B, 0, 0, 0, 0),
		insn(BPF_ALU64 | BPF_AND | BPF_K, 0, 0, 0, 0xf),
		insn(BPF_ALU64 | BPF_LSH | BPF_K, 0, 0, 0, 2),	/* IPv4 header length */
		insn(BPF_ALU64 | BPF_MOV | BPF_X, 7, 0, 0, 0),
		insn(BPF_LD | BPF_IND | BPF_B, 0, 7, 0, 13),	/* TCP flags */
		insn(BPF_JMP | BPF_JA, 0, 0, 1, 0),
		insn(BPF_LD | BPF_ABS | BPF_B, 0, 0, 0, 40 + 13),
		insn(BPF_ALU64 | BPF_AND | BPF_K, 0, 0, 0, 0x02),	/* SYN */
		insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2, 0),
		insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0xffff),	/* keep */
		insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
		insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0),	/* drop */
		insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};
	union bpf_attr attr;
	int fd;

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insns = (uintptr_t)code;
	attr.insn_cnt = sizeof(code) / sizeof(code[0]);
	attr.license = (uintptr_t)"GPL";
	fd = syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
	if (fd >= 0 && ioctl(tun_fd, TUNSETFILTEREBPF, &fd) == 0)
		return;
	fprintf(stderr, "toa_load_pump[%d]: no TUN filter (%s): reading every segment\n",
		flow, strerror(errno));
#else
	fprintf(stderr, "toa_load_pump[%d]: built without TUNSETFILTEREBPF: reading every segment\n",
		flow);
#endif
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity(%d)", cpu);
}

static void setup_netns(void)
{
	struct ifreq ifr;
	char name[IFNAMSIZ];

	if (unshare(CLONE_NEWNET))
		die("unshare(CLONE_NEWNET)");
	snprintf(name, sizeof(name), "toal%d", flow);
	tun_fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (tun_fd < 0)
		die("open /dev/net/tun");
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	memcpy(ifr.ifr_name, name, sizeof(name));
	if (ioctl(tun_fd, TUNSETIFF, &ifr))
		die("TUNSETIFF");
	fcntl(tun_fd, F_SETFL, fcntl(tun_fd, F_GETFL) | O_NONBLOCK);
	tun_filter();
	sh("ip link set lo up && ip addr add 192.0.2.1/24 dev %s && "
	   "ip -6 addr add 2001:db8::1/64 dev %s nodad && "
	   "ip link set %s txqueuelen 20000 up >&2", name, name, name);
	/* this namespace's own settings: a deep accept queue, no SYN cookies */
	put_sysctl("/proc/sys/net/core/somaxconn", "65535");
	put_sysctl("/proc/sys/net/ipv4/tcp_max_syn_backlog", "65536");
	put_sysctl("/proc/sys/net/ipv4/tcp_syncookies", "0");
}

static int listener(int fam, int v6only, const uint8_t *addr, unsigned int port)
{
	struct sockaddr_storage ss;
	struct linger lg = { 1, 0 };
	int one = 1, s = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	socklen_t len;

	if (s < 0)
		die("socket");
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* inherited by every accepted socket: close() resets, no TIME_WAIT */
	setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	memset(&ss, 0, sizeof(ss));
	if (fam == AF_INET) {
		struct sockaddr_in *a = (void *)&ss;

		a->sin_family = AF_INET;
		memcpy(&a->sin_addr, addr, 4);
		a->sin_port = htons(port);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (void *)&ss;

		setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
		a->sin6_family = AF_INET6;
		if (addr)
			memcpy(&a->sin6_addr, addr, 16);
		a->sin6_port = htons(port);
		len = sizeof(*a);
	}
	if (bind(s, (struct sockaddr *)&ss, len) || listen(s, 65535))
		die("listener port %u", port);
	return s;
}

static void raise_nofile(long n)
{
	struct rlimit rl = { n, n };

	if (n && setrlimit(RLIMIT_NOFILE, &rl))
		die("setrlimit(RLIMIT_NOFILE, %ld)", n);
}

/* ------------------------------------------------------------------------
 * Commands
 */
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void reset_tally(void)
{
	memset(&tly, 0, sizeof(tly));
	first_bad[0] = 0;
}

static void say_tally(const char *cmd, uint64_t n, double secs)
{
	say("done %s n=%llu ok=%llu real=%llu missing=%llu wrong=%llu stale=%llu "
	    "disagree=%llu nodata=%llu late=%llu lost=%llu secs=%.3f first_bad=%s",
	    cmd, (unsigned long long)n,
	    (unsigned long long)A_LOAD(&tly.c[C_TOA]), (unsigned long long)A_LOAD(&tly.c[C_REAL]),
	    (unsigned long long)A_LOAD(&tly.c[C_MISSING]),
	    (unsigned long long)A_LOAD(&tly.c[C_WRONG]),
	    (unsigned long long)A_LOAD(&tly.c[C_STALE]),
	    (unsigned long long)A_LOAD(&tly.disagree), (unsigned long long)A_LOAD(&tly.nodata),
	    (unsigned long long)A_LOAD(&tly.late), (unsigned long long)A_LOAD(&tly.lost),
	    secs, first_bad[0] ? first_bad : "-");
}

/* Issue @n handshakes (kept as @keep) and wait until every one is done. */
static void issue_and_wait(const char *cmd, uint64_t n, int keep)
{
	double t0 = now();
	uint64_t start = A_LOAD(&target_id);

	reset_tally();
	A_STORE(&keep_kind, keep);
	A_STORE(&hold_from, keep ? start : 0);
	A_STORE(&hold_until, keep ? start + n : 0);
	A_STORE(&target_id, start + n);
	while (A_LOAD(&finished) < start + n)
		nap(2000);
	say_tally(cmd, n, now() - t0);
}

static void check_held(void)
{
	double t0 = now();
	size_t i;

	reset_tally();
	pthread_mutex_lock(&held.mu);
	for (i = 0; i < held.n; i++) {
		struct sockaddr_storage p;
		socklen_t pl = sizeof(p);
		int s0 = A_LOAD(&mod_state), s1, c;

		if (getpeername(held.v[i].fd, (struct sockaddr *)&p, &pl))
			die("getpeername (held)");
		s1 = A_LOAD(&mod_state);
		c = judge(held.v[i].id, &p, s0 == s1 && s0 != 1 ? s0 : 1);
		tly.c[c]++;
		if (c == C_MISSING || c == C_WRONG || c == C_STALE)
			note_bad(first_bad, held.v[i].id, "held", &p, c);
	}
	say_tally("check", held.n, now() - t0);
	pthread_mutex_unlock(&held.mu);
}

static void close_held(void)
{
	double t0 = now();
	size_t i, n;

	pthread_mutex_lock(&held.mu);
	n = held.n;
	for (i = 0; i < n; i++)
		close(held.v[i].fd);
	held.n = 0;
	pthread_mutex_unlock(&held.mu);
	say("done close n=%zu secs=%.3f", n, now() - t0);
}

static void report(void)
{
	say("done report hammer_calls=%llu hammer_ok=%llu hammer_real=%llu hammer_missing=%llu "
	    "hammer_wrong=%llu hammer_stale=%llu hammer_sockets=%zu plain=%llu plain_bad=%llu "
	    "plain_err=%llu next_id=%llu first_bad=%s plain_first_bad=%s",
	    (unsigned long long)A_LOAD(&ham_calls), (unsigned long long)A_LOAD(&ham_c[C_TOA]),
	    (unsigned long long)A_LOAD(&ham_c[C_REAL]),
	    (unsigned long long)A_LOAD(&ham_c[C_MISSING]),
	    (unsigned long long)A_LOAD(&ham_c[C_WRONG]),
	    (unsigned long long)A_LOAD(&ham_c[C_STALE]), hams.n,
	    (unsigned long long)A_LOAD(&plain_n), (unsigned long long)A_LOAD(&plain_bad),
	    (unsigned long long)A_LOAD(&plain_err), (unsigned long long)A_LOAD(&target_id),
	    ham_first_bad[0] ? ham_first_bad : "-", plain_first_bad[0] ? plain_first_bad : "-");
}

static void usage(void)
{
	fprintf(stderr, "usage: toa_load_pump --flow I --flows N [--window W] [--syn-every K] "
		"[--nofile N] [--plain-sleep-us U] [--hammer-pause-us U] | --plain-only\n");
	exit(2);
}

int main(int argc, char **argv)
{
	pthread_t th[4];
	char line[128];
	int i, plain_only = 0, nth = 0;
	long nofile = 0, cpu = -1;
	double bg_t0 = 0;
	uint64_t bg_start = 0;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--plain-only")) {
			plain_only = 1;
			continue;
		}
		if (!v)
			usage();
		if (!strcmp(a, "--flow"))
			flow = atoi(v);
		else if (!strcmp(a, "--flows"))
			flows = atoi(v);
		else if (!strcmp(a, "--window"))
			window = atoi(v);
		else if (!strcmp(a, "--syn-every"))
			syn_every = atoi(v);
		else if (!strcmp(a, "--nofile"))
			nofile = atol(v);
		else if (!strcmp(a, "--plain-sleep-us"))
			plain_sleep_us = atol(v);
		else if (!strcmp(a, "--hammer-pause-us"))
			hammer_pause_us = atol(v);
		else if (!strcmp(a, "--hammer-nice"))
			hammer_nice = atoi(v);
		else if (!strcmp(a, "--cpu"))
			cpu = atol(v);
		else
			usage();
		i++;
	}
	if (window < 1 || (window & (window - 1)) || flows < 1 || flow < 0 || flow >= flows)
		usage();
	raise_nofile(nofile);
	if (cpu >= 0)
		pin(cpu);	/* every thread of the flow: wake-ups stay on one CPU */

	if (!plain_only) {
		uint8_t a[16];

		mask = window - 1;
		ring = calloc(window, sizeof(*ring));
		if (!ring)
			die("calloc");
		setup_netns();
		l4(a);
		lsn[0] = listener(AF_INET, 0, a, PORT4);
		l6(a);
		lsn[1] = listener(AF_INET6, 1, a, PORT6);
		lsn[2] = listener(AF_INET6, 0, NULL, PORT_DUAL);
		if (pthread_create(&th[nth++], NULL, pump, NULL) ||
		    pthread_create(&th[nth++], NULL, acceptor, NULL) ||
		    pthread_create(&th[nth++], NULL, hammer, NULL))
			die("pthread_create");
	}
	if (pthread_create(&th[nth++], NULL, plain, NULL))
		die("pthread_create");
	say("ready pid=%d flow=%d", (int)getpid(), flow);

	while (fgets(line, sizeof(line), stdin)) {
		char cmd[32] = "";
		unsigned long long n = 0;

		sscanf(line, "%31s %llu", cmd, &n);
		if (!strcmp(cmd, "quit")) {
			break;
		} else if (!strcmp(cmd, "plain")) {
			A_STORE(&plain_on, (int)n);
			say("done plain");
		} else if (!strcmp(cmd, "report")) {
			report();
		} else if (plain_only) {
			say("error %s: plain-only", cmd);
		} else if (!strcmp(cmd, "run")) {
			issue_and_wait("run", n, KEEP_NONE);
		} else if (!strcmp(cmd, "hold")) {
			issue_and_wait("hold", n, KEEP_HOLD);
		} else if (!strcmp(cmd, "hammer")) {
			issue_and_wait("hammer", n, KEEP_HAMMER);
			A_STORE(&ham_on, 1);
		} else if (!strcmp(cmd, "hammer-off")) {
			size_t k;

			A_STORE(&ham_on, 0);
			pthread_mutex_lock(&hams.mu);
			for (k = 0; k < hams.n; k++)
				close(hams.v[k].fd);
			hams.n = 0;
			pthread_mutex_unlock(&hams.mu);
			say("done hammer-off");
		} else if (!strcmp(cmd, "check")) {
			check_held();
		} else if (!strcmp(cmd, "close")) {
			close_held();
		} else if (!strcmp(cmd, "mark")) {
			A_STORE(&mod_state, (int)n);
			say("done mark %llu", n);
		} else if (!strcmp(cmd, "bg")) {
			reset_tally();
			bg_t0 = now();
			bg_start = A_LOAD(&target_id);
			A_STORE(&keep_kind, KEEP_NONE);
			A_STORE(&hold_from, 0);
			A_STORE(&hold_until, 0);
			A_STORE(&target_id, UINT64_MAX);
			say("done bg");
		} else if (!strcmp(cmd, "bg-stop")) {
			uint64_t end;

			/* the pump stops issuing and says where */
			A_STORE(&stop_req, 1);
			while (A_LOAD(&stop_req))
				nap(2000);
			end = A_LOAD(&issued);
			while (A_LOAD(&finished) < end)
				nap(2000);
			say_tally("bg-stop", end - bg_start, now() - bg_t0);
		} else {
			say("error unknown command %s", cmd);
		}
	}
	A_STORE(&quit, 1);
	for (i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	return 0;
}
