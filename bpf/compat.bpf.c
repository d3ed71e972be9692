// SPDX-License-Identifier: Apache-2.0
/*
 * compat.bpf.c — udpgrm's socket-option API for any UDP service (the proxy's own steering is
 * grm.bpf.c). Model, writers of each map and the registration sequence: grm_abi.h, section
 * "udpgrm compatibility". Errno values follow udpgrm (reference: shared/udpgrm-api.md §2.3).
 * Note for clang 14: ctx fields are read into locals exactly once.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/if_ether.h>
#include <asm-generic/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "grm_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET_ 2
#define AF_INET6_ 10
#define SOCK_DGRAM_ 2
#define SOL_SOCKET_ 1
#define SO_REUSEPORT_ 15
#define PAGE_SIZE_ 4096
#define NSEC_PER_SEC 1000000000ULL

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GRM_COMPAT_MAX_GROUPS);
	__type(key, struct grm_group_key);
	__type(value, struct grm_compat_group);
} grmc_groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GRM_COMPAT_MAX_GROUPS * GRM_COMPAT_MAX_GENS);
	__type(key, struct grm_compat_slot_key);
	__type(value, struct grm_compat_slot);
} grmc_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, GRM_COMPAT_MAX_SOCKETS);
	__type(key, __u64);
	__type(value, __u64);
} grmc_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct grm_compat_sock);
} grmc_sk SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, GRM_COMPAT_RING_BYTES);
} grmc_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, GRM_COMPAT_MAX_FLOWS);
	__type(key, struct grm_compat_flow_key);
	__type(value, struct grm_compat_flow);
} grmc_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, GRM_COMPAT_MAX_GROUPS);
	__type(key, struct grm_group_key);
	__type(value, struct grm_compat_stats);
} grmc_stats SEC(".maps");

/* Written by the agent only; here so the object creates (and pins) it with the others. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GRM_COMPAT_MAX_GROUPS);
	__type(key, struct grm_group_key);
	__type(value, struct grm_compat_agent_stats);
} grmc_agent SEC(".maps");

/* Working memory off the 512-byte stack: a new group and its zeroed counters, the caller's option
 * bytes. Internal (not in grm_abi.h, not pinned by name). */
struct c_scratch {
	struct grm_compat_group group;
	struct grm_compat_stats stats;
	union {
		struct grm_compat_dissector dis;
		__u8 raw[sizeof(struct grm_compat_dissector)];
	} opt;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct c_scratch);
} c_scratch SEC(".maps");

/* Dissectors producing a cookie or an app (udpgrm's "cbpf" return convention). */
#include "compat_cbpf.h"
#ifdef GRM_WITH_SNI
#include "compat_quic.h"
#endif

#define STAT(s, field)                    \
	do {                              \
		if (s)                    \
			(s)->field++;     \
	} while (0)

/* The bound address of a socket, as a group key. Returns -1 for other families. */
static __always_inline int group_key_of(struct bpf_sock *sk, struct grm_group_key *k)
{
	__u32 family = sk->family;

	__builtin_memset(k, 0, sizeof(*k));
	k->family = family;
	k->port = sk->src_port;
	if (family == AF_INET6_) {
		__u32 *a6 = (__u32 *)k->addr;
		a6[0] = *(volatile __u32 *)&sk->src_ip6[0];
		a6[1] = *(volatile __u32 *)&sk->src_ip6[1];
		a6[2] = *(volatile __u32 *)&sk->src_ip6[2];
		a6[3] = *(volatile __u32 *)&sk->src_ip6[3];
		return 0;
	}
	if (family == AF_INET_) {
		*(__u32 *)k->addr = sk->src_ip4;
		return 0;
	}
	return -1;
}

/* udpgrm's TO_WRK_GEN: each of A apps owns 32 / A slots; generations wrap within them. */
static __always_inline __u32 slot_of(__u32 max_apps, __u32 app, __u32 gen)
{
	__u32 apps = max_apps >= 1 && max_apps <= GRM_COMPAT_MAX_APPS ? max_apps : 1;
	__u32 per = GRM_COMPAT_MAX_GENS / apps;

	return (app % apps) * per + gen % per;
}

static __always_inline __u16 cookie_pack(__u32 slot, __u32 idx)
{
	__u32 c = GRM_COMPAT_COOKIE_CS_SEED ^ (idx & 0xf) ^ ((idx >> 4) & 0xf) ^ (slot & 0xf) ^ ((slot >> 4) & 0xf);
	__u32 cs = (c & 7) ^ ((c >> 3) & 1);

	return (__u16)((idx & 0xff) << 8 | cs << 5 | (slot & 0x1f));
}

/* ---- FLOW: learn on send (and FLOW_ASSURE) ---- */

enum tx_result { TX_OK, TX_CONFLICT, TX_ERROR };

static __always_inline __u64 flow_timeout_ns(const struct grm_compat_group *g)
{
	__u32 t = g->dis.flow_entry_timeout_sec;
	return (__u64)(t ? t : GRM_COMPAT_FLOW_DEFAULT_TIMEOUT_SEC) * NSEC_PER_SEC;
}

/* The socket st sent to (or asserted) the remote fk: create, take over an expired entry, or
 * refresh its own; a live entry of another socket is never moved (udpgrm's rule). Counters as
 * udpgrm: a take-over counts as a create too. */
static __always_inline int flow_tx(struct grm_compat_group *g, struct grm_compat_sock *st,
				   struct grm_compat_flow_key *fk, struct grm_compat_stats *s)
{
	struct grm_compat_flow *f, nf = {};
	__u64 now = bpf_ktime_get_ns();

	STAT(s, tx_total);
	nf.cookie = st->cookie;
	nf.last_tx_ns = now;
	nf.slot = st->gen == GRM_COMPAT_NONE ? GRM_COMPAT_MAX_GENS : slot_of(g->dis.max_apps, st->app, st->gen);
	f = bpf_map_lookup_elem(&grmc_flows, fk);
	if (f && now - f->last_tx_ns <= flow_timeout_ns(g)) {
		if (f->cookie != st->cookie) {
			STAT(s, tx_flow_update_conflict);
			return TX_CONFLICT;
		}
		f->last_tx_ns = now;
		f->slot = nf.slot;
		STAT(s, tx_flow_update_ok);
		return TX_OK;
	}
	/* Whole-value replace, so the receive side never sees a new owner with an old timestamp. */
	if (bpf_map_update_elem(&grmc_flows, fk, &nf, f ? BPF_EXIST : BPF_NOEXIST) != 0) {
		STAT(s, tx_flow_create_error);
		return TX_ERROR;
	}
	STAT(s, tx_flow_create_ok);
	if (f)
		STAT(s, tx_flow_create_from_expired_ok);
	return TX_OK;
}

/* IPv4 peers of a dual-stack socket are ::ffff:a.b.c.d to the app, while their datagrams carry the
 * IPv4 address: key them as IPv4. Sends to mapped addresses reach the sendmsg4 hook already (the
 * kernel's UDPv6 send hands them to UDPv4); a FLOW_ASSURE with such a sockaddr_in6 needs this
 * (udpgrm keys it apart, so that flow never matches). */
static __always_inline void flow_key_unmap(struct grm_compat_flow_key *fk)
{
	__u32 *a6 = (__u32 *)fk->addr;

	if (a6[0] == 0 && a6[1] == 0 && a6[2] == bpf_htonl(0xffff)) {
		a6[0] = a6[3];
		a6[2] = 0;
		a6[3] = 0;
	}
}

static __always_inline int on_sendmsg(struct bpf_sock_addr *ctx, int v6)
{
	struct bpf_sock *sk = ctx->sk;
	struct grm_compat_flow_key fk = {};
	struct grm_group_key gk;
	struct grm_compat_group *g;
	struct grm_compat_sock *st;

	if (!sk)
		return 1;
	st = bpf_sk_storage_get(&grmc_sk, sk, 0, 0);
	if (!st || group_key_of(sk, &gk) != 0)
		return 1;
	g = bpf_map_lookup_elem(&grmc_groups, &gk);
	/* Same address in another netns is another group: its sends must not own this one's flows. */
	if (!g || g->dis.dissector_type != GRM_COMPAT_DISSECTOR_FLOW || g->netns_cookie != st->netns_cookie)
		return 1;
	if (v6) {
		__u32 *a6 = (__u32 *)fk.addr;
		a6[0] = ctx->user_ip6[0];
		a6[1] = ctx->user_ip6[1];
		a6[2] = ctx->user_ip6[2];
		a6[3] = ctx->user_ip6[3];
		flow_key_unmap(&fk);
	} else {
		*(__u32 *)fk.addr = ctx->user_ip4;
	}
	fk.port = ctx->user_port & 0xffff;
	fk.random_id = g->random_id;
	flow_tx(g, st, &fk, bpf_map_lookup_elem(&grmc_stats, &gk));
	return 1;
}

SEC("cgroup/sendmsg4")
int grmc_sendmsg4(struct bpf_sock_addr *ctx)
{
	return on_sendmsg(ctx, 0);
}

SEC("cgroup/sendmsg6")
int grmc_sendmsg6(struct bpf_sock_addr *ctx)
{
	return on_sendmsg(ctx, 1);
}

/* ---- bind: per-socket storage for SO_REUSEPORT UDP sockets ---- */

static __always_inline int on_bind(struct bpf_sock_addr *ctx)
{
	__u32 type = ctx->type, protocol = ctx->protocol;
	struct grm_compat_sock *st;
	int reuseport = 0;

	if (type != SOCK_DGRAM_ || protocol != IPPROTO_UDP)
		return 1;
	/* Only SO_REUSEPORT sockets can join a group; others get no storage (EBADF later). */
	if (bpf_getsockopt(ctx, SOL_SOCKET_, SO_REUSEPORT_, &reuseport, sizeof(reuseport)) != 0 || !reuseport)
		return 1;
	st = bpf_sk_storage_get(&grmc_sk, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return 1;
	st->cookie = bpf_get_socket_cookie(ctx);
	st->netns_cookie = bpf_get_netns_cookie(ctx);
	st->gen = GRM_COMPAT_NONE;
	st->idx = GRM_COMPAT_NONE;
	st->app = 0;
	return 1;
}

SEC("cgroup/bind4")
int grmc_bind4(struct bpf_sock_addr *ctx)
{
	return on_bind(ctx);
}

SEC("cgroup/bind6")
int grmc_bind6(struct bpf_sock_addr *ctx)
{
	return on_bind(ctx);
}

/* ---- setsockopt ---- */

static __always_inline int fail(int err)
{
	bpf_set_retval(-err);
	return 0;
}

/* udpgrm's sizes for partial buffers: the largest of these that fits optlen is copied. */
static __always_inline __u32 size_class(__s32 optlen)
{
	if (optlen >= 632)
		return 632;
	if (optlen >= 376)
		return 376;
	if (optlen >= 116)
		return 116;
	if (optlen >= 28)
		return 28;
	if (optlen >= 16)
		return 16;
	if (optlen >= 12)
		return 12;
	if (optlen >= 8)
		return 8;
	return 4;
}

/* Copies the caller's option (size class n) into zeroed scratch. Constant sizes for the verifier. */
static __always_inline int copy_opt(__u8 *dst, __u8 *optval, __u8 *end, __u32 n)
{
	__builtin_memset(dst, 0, 632);
#define COPY_IF(sz)                                           \
	if (n == sz) {                                        \
		if (optval + sz > end)                        \
			return -1;                            \
		__builtin_memcpy(dst, optval, sz);            \
		return 0;                                     \
	}
	COPY_IF(632)
	COPY_IF(376)
	COPY_IF(116)
	COPY_IF(28)
	COPY_IF(16)
	COPY_IF(12)
	COPY_IF(8)
	COPY_IF(4)
#undef COPY_IF
	return -1;
}

/* A dissector may only be set on creation. udpgrm's rules; for BESPOKE (which udpgrm leaves
 * unchecked) its documented intent: a digest, at most 8 hostname entries and 4 apps. */
static __always_inline int dissector_valid(const struct grm_compat_dissector *d)
{
	__u32 type = d->dissector_type & ~GRM_COMPAT_DISSECTOR_FLAG_VERBOSE;

	if (type == GRM_COMPAT_DISSECTOR_FLOW || type == GRM_COMPAT_DISSECTOR_NOOP)
		return d->filter_len == 0 && d->max_apps == 0 && d->bespoke_digest == 0;
	if (type == GRM_COMPAT_DISSECTOR_CBPF)
		return d->filter_len >= 1 && d->filter_len <= GRM_COMPAT_MAX_INSTR &&
		       d->max_apps <= GRM_COMPAT_MAX_APPS && d->bespoke_digest == 0;
#ifdef GRM_WITH_SNI
	if (type == GRM_COMPAT_DISSECTOR_BESPOKE)
		return d->bespoke_digest != 0 && d->filter_len <= QUIC_MAX_SNI_ENTRIES &&
		       d->max_apps <= GRM_COMPAT_MAX_APPS;
#endif
	return 0;
}

/* Same configuration: type without flags, then bytes 4..631. */
static __always_inline int dissector_same(const struct grm_compat_dissector *stored,
					  const struct grm_compat_dissector *given)
{
	const __u32 *a = (const __u32 *)stored, *b = (const __u32 *)given;

	if (stored->dissector_type != (given->dissector_type & ~GRM_COMPAT_DISSECTOR_FLAG_VERBOSE))
		return 0;
	for (int i = 1; i < (int)(sizeof(*stored) / 4); i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

/* noinline (here and fill_sock_gen): a subprogram's prototype puts the struct in the object's BTF,
 * where scripts/gen-grm-abi.mjs reads every ABI layout. */
static __noinline int send_msg(struct grm_compat_msg *m)
{
	return bpf_ringbuf_output(&grmc_ring, m, sizeof(*m), 0);
}

static __always_inline int post(__u32 type, __u32 value, __u32 app, __u64 cookie, struct grm_group_key *gk)
{
	struct grm_compat_msg m = {};

	m.type = type;
	m.tgid = bpf_get_current_pid_tgid() >> 32;
	m.value = value;
	m.app = app;
	m.cookie = cookie;
	m.group = *gk;
	return send_msg(&m);
}

static __always_inline int flow_key_from_sockaddr(const __u8 *sa, __s32 optlen, struct grm_compat_flow_key *fk)
{
	__u16 family = *(const __u16 *)sa;

	__builtin_memset(fk, 0, sizeof(*fk));
	fk->port = *(const __u16 *)(sa + 2);
	if (family == AF_INET_ && optlen >= 16) {
		__builtin_memcpy(fk->addr, sa + 4, 4);
		return 0;
	}
	if (family == AF_INET6_ && optlen >= 28) {
		__builtin_memcpy(fk->addr, sa + 8, 16);
		flow_key_unmap(fk);
		return 0;
	}
	return -1;
}

SEC("cgroup/setsockopt")
int grmc_setsockopt(struct bpf_sockopt *ctx)
{
	__s32 level = ctx->level, optname = ctx->optname, optlen = ctx->optlen;
	struct bpf_sock *sk = ctx->sk;
	__u8 *optval = ctx->optval, *end = ctx->optval_end;
	struct grm_compat_group *g;
	struct grm_compat_stats *stats;
	struct grm_compat_sock *st;
	struct grm_group_key gk;
	struct c_scratch *sc;
	__u32 zero = 0, value, msg = 0, created = 0;

	if (level != GRM_COMPAT_SOL_UDP || optname < GRM_COMPAT_OPT_WORKING_GEN || optname > GRM_COMPAT_OPT_SOCKET_APP) {
		/* Not ours. Beyond a page the program sees a truncated copy: let the kernel use the
		 * caller's buffer as it is. */
		if (optlen > PAGE_SIZE_)
			ctx->optlen = 0;
		return 1;
	}
	/* Another hook of the chain already answered. */
	if (optlen == -1 || bpf_get_retval() != 0)
		return 1;
	sc = bpf_map_lookup_elem(&c_scratch, &zero);
	if (!sc)
		return fail(ENOBUFS);
	if (optlen < 4 || copy_opt(sc->opt.raw, optval, end, size_class(optlen)) != 0)
		return fail(EFAULT);
	value = *(__u32 *)sc->opt.raw;
	if (!sk)
		return fail(EBADF);
	st = bpf_sk_storage_get(&grmc_sk, sk, 0, 0);
	if (!st || group_key_of(sk, &gk) != 0)
		return fail(EBADF);
	g = bpf_map_lookup_elem(&grmc_groups, &gk);
	if (g && g->netns_cookie != st->netns_cookie)
		return fail(EBADF);

	/* Post the agent's record before any change, so a full ring (EAGAIN) changes nothing. */
	if (optname == GRM_COMPAT_OPT_WORKING_GEN)
		msg = GRM_COMPAT_MSG_SET_WORKING_GEN;
	else if (optname == GRM_COMPAT_OPT_DISSECTOR)
		msg = GRM_COMPAT_MSG_DISSECTOR;
	else if (optname == GRM_COMPAT_OPT_SOCKET_GEN && (value != st->gen || st->idx == GRM_COMPAT_NONE))
		msg = GRM_COMPAT_MSG_REGISTER_SOCKET;
	if (msg && post(msg, value, st->app, st->cookie, &gk) != 0)
		return fail(EAGAIN);

	if (!g) {
		/* First option on this address creates the group: FLOW unless this call sets the dissector. */
		struct grm_compat_group *ng = &sc->group;
		__builtin_memset(ng, 0, sizeof(*ng));
		ng->dis.dissector_type = GRM_COMPAT_DISSECTOR_FLOW;
		if (optname == GRM_COMPAT_OPT_DISSECTOR) {
			if (!dissector_valid(&sc->opt.dis))
				return fail(EPERM);
			ng->dis = sc->opt.dis;
			ng->dis.dissector_type &= ~GRM_COMPAT_DISSECTOR_FLAG_VERBOSE;
			if (sc->opt.dis.dissector_type & GRM_COMPAT_DISSECTOR_FLAG_VERBOSE)
				ng->flags |= GRM_COMPAT_GROUP_VERBOSE;
		}
		ng->netns_cookie = st->netns_cookie;
		ng->random_id = bpf_get_prandom_u32();
		int r = bpf_map_update_elem(&grmc_groups, &gk, ng, BPF_NOEXIST);
		if (r == 0) {
			created = 1;
			__builtin_memset(&sc->stats, 0, sizeof(sc->stats));
			bpf_map_update_elem(&grmc_stats, &gk, &sc->stats, BPF_ANY);
		} else if (r != -EEXIST) {
			return fail(EBADF); /* 512 groups */
		}
		g = bpf_map_lookup_elem(&grmc_groups, &gk);
		if (!g || g->netns_cookie != st->netns_cookie)
			return fail(EBADF);
	}

	switch (optname) {
	case GRM_COMPAT_OPT_WORKING_GEN:
		/* No check that the generation has sockets (udpgrm's rule): the app orders it. */
		g->working_gen[st->app % GRM_COMPAT_MAX_APPS] = value;
		break;
	case GRM_COMPAT_OPT_SOCKET_GEN:
		st->gen = value;
		break;
	case GRM_COMPAT_OPT_DISSECTOR:
		if (created)
			break;
		if (!dissector_same(&g->dis, &sc->opt.dis))
			return fail(EPERM);
		if (sc->opt.dis.dissector_type & GRM_COMPAT_DISSECTOR_FLAG_VERBOSE)
			g->flags |= GRM_COMPAT_GROUP_VERBOSE;
		else
			g->flags &= ~GRM_COMPAT_GROUP_VERBOSE;
		break;
	case GRM_COMPAT_OPT_FLOW_ASSURE: {
		struct grm_compat_flow_key fk;
		if (g->dis.dissector_type != GRM_COMPAT_DISSECTOR_FLOW)
			return fail(EPERM);
		if (flow_key_from_sockaddr(sc->opt.raw, optlen, &fk) != 0)
			return fail(EPERM);
		fk.random_id = g->random_id;
		stats = bpf_map_lookup_elem(&grmc_stats, &gk);
		if (flow_tx(g, st, &fk, stats) != TX_OK)
			return fail(EEXIST);
		break;
	}
	case GRM_COMPAT_OPT_SOCKET_APP:
		if (value == st->app)
			break;
		if (st->gen != GRM_COMPAT_NONE || st->idx != GRM_COMPAT_NONE)
			return fail(EEXIST);
		if (value >= g->dis.max_apps)
			return fail(EOVERFLOW);
		st->app = value;
		break;
	}
	ctx->optlen = -1; /* handled: the kernel's UDP setsockopt never sees it */
	return 1;
}

/* ---- getsockopt ---- */

static __noinline void fill_sock_gen(struct grm_compat_sock_gen *r, __u32 gen, __u32 idx, __u16 cookie)
{
	r->socket_gen = gen;
	r->socket_idx = idx;
	r->grm_cookie = cookie;
	r->reserved = 0;
}

static __always_inline int get_fail(struct bpf_sockopt *ctx, int err)
{
	ctx->retval = -err;
	return 1;
}

SEC("cgroup/getsockopt")
int grmc_getsockopt(struct bpf_sockopt *ctx)
{
	__s32 level = ctx->level, optname = ctx->optname, optlen = ctx->optlen, retval = ctx->retval;
	struct bpf_sock *sk = ctx->sk;
	__u8 *optval = ctx->optval, *end = ctx->optval_end;
	struct grm_compat_group *g = 0;
	struct grm_compat_sock *st = 0;
	struct grm_group_key gk;
	__u32 n;

	if (level != GRM_COMPAT_SOL_UDP || optname < GRM_COMPAT_OPT_WORKING_GEN || optname > GRM_COMPAT_OPT_SOCKET_APP)
		return 1;
	/* Only what the kernel does not know (another hook may have answered). */
	if (retval != -ENOPROTOOPT)
		return 1;
	if (optlen < 4)
		return get_fail(ctx, EFAULT);
	n = size_class(optlen);
	if (sk) {
		st = bpf_sk_storage_get(&grmc_sk, sk, 0, 0);
		if (group_key_of(sk, &gk) == 0)
			g = bpf_map_lookup_elem(&grmc_groups, &gk);
	}
	switch (optname) {
	case GRM_COMPAT_OPT_WORKING_GEN: {
		/* -1 when no group exists: how an app probes for udpgrm. */
		__u32 app = st ? st->app : 0;
		if (optval + 4 > end)
			return get_fail(ctx, EFAULT);
		*(__u32 *)optval = g ? g->working_gen[app % GRM_COMPAT_MAX_APPS] : GRM_COMPAT_NONE;
		n = 4;
		break;
	}
	case GRM_COMPAT_OPT_SOCKET_GEN: {
		__u32 max_apps = g ? g->dis.max_apps : 0;
		if (!st)
			return get_fail(ctx, EBADFD);
		if (n >= 12) {
			struct grm_compat_sock_gen *r = (void *)optval;
			if ((void *)(r + 1) > (void *)end)
				return get_fail(ctx, EFAULT);
			/* From the current gen and idx (idx may still be the previous registration's). */
			fill_sock_gen(r, st->gen, st->idx, cookie_pack(slot_of(max_apps, st->app, st->gen), st->idx));
			n = 12;
			if (optlen >= 16 && optval + 16 <= end) {
				*(__u32 *)(optval + 12) = 0;
				n = 16;
			}
		} else if (n == 8) {
			if (optval + 8 > end)
				return get_fail(ctx, EFAULT);
			((__u32 *)optval)[0] = st->gen;
			((__u32 *)optval)[1] = st->idx;
		} else {
			if (optval + 4 > end)
				return get_fail(ctx, EFAULT);
			*(__u32 *)optval = st->gen;
			n = 4;
		}
		break;
	}
	case GRM_COMPAT_OPT_DISSECTOR:
		if (!g)
			return get_fail(ctx, EBADFD);
		if (n == 28)
			n = 16; /* no 28-byte class on the read side */
#define COPY_OUT(sz)                                          \
	if (n == sz) {                                        \
		if (optval + sz > end)                        \
			return get_fail(ctx, EFAULT);         \
		__builtin_memcpy(optval, &g->dis, sz);        \
	}
		COPY_OUT(632)
		COPY_OUT(376)
		COPY_OUT(116)
		COPY_OUT(16)
		COPY_OUT(12)
		COPY_OUT(8)
		COPY_OUT(4)
#undef COPY_OUT
		break;
	case GRM_COMPAT_OPT_FLOW_ASSURE:
		return get_fail(ctx, EPERM);
	case GRM_COMPAT_OPT_SOCKET_APP:
		if (!st)
			return get_fail(ctx, EBADFD);
		if (optval + 4 > end)
			return get_fail(ctx, EFAULT);
		*(__u32 *)optval = st->app;
		n = 4;
		break;
	default:
		return get_fail(ctx, EPERM);
	}
	ctx->optlen = n;
	ctx->retval = 0;
	return 1;
}

/* ---- sk_reuseport: steering of compat groups ---- */

/* The remote address and port of a datagram (FLOW's key). */
static __always_inline int remote_of(struct sk_reuseport_md *md, __u32 eth_protocol, struct grm_compat_flow_key *fk)
{
	__u16 sport = 0;

	__builtin_memset(fk, 0, sizeof(*fk));
	if (eth_protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes_relative(md, 12, fk->addr, 4, BPF_HDR_START_NET) != 0)
			return -1;
	} else if (eth_protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes_relative(md, 8, fk->addr, 16, BPF_HDR_START_NET) != 0)
			return -1;
	} else {
		return -1;
	}
	if (bpf_skb_load_bytes(md, 0, &sport, 2) != 0)
		return -1;
	fk->port = sport;
	return 0;
}

/* New flow: the app's working generation, index hash % max_idx, probing past dead entries. */
static __always_inline int select_new(struct sk_reuseport_md *md, struct grm_compat_group *g,
				      struct grm_group_key *gk, __u32 app, __u32 hash,
				      struct grm_compat_stats *s)
{
	struct grm_compat_slot_key skey = {};
	struct grm_compat_slot *sl;
	__u32 n, start, slot;

	STAT(s, rx_new_flow_total);
	slot = slot_of(g->dis.max_apps, app, g->working_gen[app % GRM_COMPAT_MAX_APPS]);
	skey.group = *gk;
	skey.slot = slot;
	sl = bpf_map_lookup_elem(&grmc_slots, &skey);
	n = sl ? sl->max_idx : 0;
	if (!sl || n == 0 || n > GRM_COMPAT_MAX_SOCKETS_IN_GEN)
		goto error;
	start = hash % n;
	for (__u32 i = 0; i < GRM_COMPAT_MAX_SOCKETS_IN_GEN; i++) {
		__u64 cookie;
		if (i >= n)
			break;
		cookie = sl->cookies[(start + i) % n & (GRM_COMPAT_MAX_SOCKETS_IN_GEN - 1)];
		if (cookie && bpf_sk_select_reuseport(md, &grmc_socks, &cookie, 0) == 0) {
			STAT(s, rx_new_flow_working_gen_dispatch_ok);
			if (s)
				s->slot_rx_new_flow[slot & (GRM_COMPAT_MAX_GENS - 1)]++;
			return 0;
		}
	}
error:
	/* Nothing live in the working generation: the kernel's hash over the whole group (udpgrm). */
	STAT(s, rx_new_flow_working_gen_dispatch_error);
	return -1;
}

/* Existing flow named by a 16-bit udpgrm cookie: the socket at that index of that slot. */
static __always_inline int select_by_cookie(struct sk_reuseport_md *md, struct grm_group_key *gk,
					    __u32 cookie, struct grm_compat_stats *s)
{
	struct grm_compat_slot_key skey = {};
	struct grm_compat_slot *sl;
	__u32 slot = cookie & 0x1f, idx = cookie >> 8 & 0xff;
	__u64 sock;
	long r;

	if (cookie_pack(slot, idx) != cookie) {
		/* Random bytes pass the 3-bit check one time in eight. */
		STAT(s, rx_flow_new_unseen);
		STAT(s, rx_flow_new_bad_cookie);
		return -1;
	}
	skey.group = *gk;
	skey.slot = slot;
	sl = bpf_map_lookup_elem(&grmc_slots, &skey);
	sock = sl ? sl->cookies[idx] : 0;
	if (!sock) {
		STAT(s, rx_flow_new_unseen);
		return -1;
	}
	r = bpf_sk_select_reuseport(md, &grmc_socks, &sock, 0);
	if (r == 0) {
		STAT(s, rx_flow_ok);
		if (s)
			s->slot_rx_existing_flow[slot]++;
		return 0;
	}
	if (r == -EBADFD || r == -EAFNOSUPPORT || r == -EPROTOTYPE)
		STAT(s, rx_flow_rg_conflict);
	else
		STAT(s, rx_flow_other_error); /* e.g. the socket closed, its cookie still in the slot */
	return -1;
}

SEC("sk_reuseport")
int grmc_select(struct sk_reuseport_md *md)
{
	__u32 hash = md->hash, eth_protocol = md->eth_protocol, len = md->len;
	struct bpf_sock *sk = md->sk;
	struct grm_compat_flow_key fk;
	struct grm_compat_group *g;
	struct grm_compat_stats *s;
	struct grm_compat_flow *f;
	struct grm_group_key gk;
	__u32 app = 0, type, ret = 0;
	int r;

	if (!sk || group_key_of(sk, &gk) != 0)
		return SK_PASS;
	g = bpf_map_lookup_elem(&grmc_groups, &gk);
	if (!g)
		return SK_PASS; /* deleted group: unsteered */
	s = bpf_map_lookup_elem(&grmc_stats, &gk);
	STAT(s, rx_processed_total);
	type = g->dis.dissector_type;
	switch (type) {
	case GRM_COMPAT_DISSECTOR_FLOW:
		if (remote_of(md, eth_protocol, &fk) != 0) {
			STAT(s, rx_packet_too_short_error);
			break;
		}
		STAT(s, rx_dissected_ok_total);
		fk.random_id = g->random_id;
		f = bpf_map_lookup_elem(&grmc_flows, &fk);
		if (!f || bpf_ktime_get_ns() - f->last_tx_ns > flow_timeout_ns(g)) {
			/* udpgrm counts an expired flow as unseen too (had_expired is a subset). */
			STAT(s, rx_flow_new_unseen);
			if (f)
				STAT(s, rx_flow_new_had_expired);
		} else {
			__u64 cookie = f->cookie;
			__u32 slot = f->slot;
			long e = bpf_sk_select_reuseport(md, &grmc_socks, &cookie, 0);
			if (e == 0) {
				STAT(s, rx_flow_ok);
				if (s && slot < GRM_COMPAT_MAX_GENS)
					s->slot_rx_existing_flow[slot]++;
				return SK_PASS;
			}
			/* The kernel's answers for a socket of another reuseport group (same address,
			 * e.g. one bound to a device): -EBADFD, or -EAFNOSUPPORT / -EPROTOTYPE for
			 * another family / protocol (net/core/filter.c sk_select_reuseport). */
			if (e == -EBADFD || e == -EAFNOSUPPORT || e == -EPROTOTYPE)
				STAT(s, rx_flow_rg_conflict);
			else
				STAT(s, rx_flow_other_error);
		}
		break;
	case GRM_COMPAT_DISSECTOR_NOOP:
		/* udpgrm counts every NOOP datagram as a dissected, unseen flow. */
		STAT(s, rx_dissected_ok_total);
		STAT(s, rx_flow_new_unseen);
		break;
	case GRM_COMPAT_DISSECTOR_CBPF:
#ifdef GRM_WITH_SNI
	case GRM_COMPAT_DISSECTOR_BESPOKE:
#endif
		if (type == GRM_COMPAT_DISSECTOR_CBPF)
			r = cbpf_run(md, g, len, eth_protocol, &ret);
#ifdef GRM_WITH_SNI
		else
			r = quic_dead_run(md, g, len, &ret);
#endif
		if (r != DIS_OK) {
			/* udpgrm leaves these to the kernel's hash over the whole group. */
			if (r == DIS_LOAD)
				STAT(s, rx_packet_too_short_error);
			else
				STAT(s, rx_cbpf_prog_error);
			return SK_PASS;
		}
		STAT(s, rx_dissected_ok_total);
		if (ret - 0x80000000u < g->dis.max_apps) {
			app = ret - 0x80000000u; /* a new flow of that app */
			STAT(s, rx_flow_new_unseen);
		} else if (ret > 0xffff) {
			STAT(s, rx_flow_new_unseen); /* a new flow of app 0 (e.g. RET -1) */
		} else if (select_by_cookie(md, &gk, ret, s) == 0) {
			return SK_PASS;
		}
		break;
	default:
		STAT(s, rx_internal_state_error);
		return SK_PASS;
	}
	select_new(md, g, &gk, app, hash, s);
	return SK_PASS;
}
