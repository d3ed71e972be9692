// SPDX-License-Identifier: Apache-2.0
/*
 * grm.bpf.c — sk_reuseport program of udpgrm-proxy: steers QUIC datagrams between the socket
 * generations of a reuseport group. ABI, CID layout and the steering table: grm_abi.h.
 * Note for clang 14: ctx fields are read into locals exactly once.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "grm_abi.h"

#ifdef GRM_WITH_SNI
#include "quic_sni.h"
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET6_ 10
#define QUIC_V1 0x00000001u
#define QUIC_V2 0x6b3343cfu
#define HDR_BYTES 26 /* 1 + version 4 + dcid len 1 + dcid 20 */
#define HDR_BUF 40   /* HDR_BYTES plus slack: SipHash reads whole words past a short nonce */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GRM_MAX_GROUPS);
	__type(key, __u32);
	__type(value, struct grm_group);
} grm_groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GRM_MAX_GROUPS);
	__type(key, struct grm_group_key);
	__type(value, __u32);
} grm_group_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GRM_MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} grm_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, GRM_MAX_GROUPS * GRM_MAX_SLOTS * GRM_MAX_WORKERS);
	__type(key, __u32);
	__type(value, __u64);
} grm_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GRM_MAX_CONFIGS);
	__type(key, __u32);
	__type(value, struct grm_cid_key);
} grm_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, GRM_MAX_ATTEMPTS);
	__type(key, struct grm_attempt_key);
	__type(value, struct grm_attempt);
} grm_attempts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GRM_MAX_GROUPS);
	__type(key, __u32);
	__type(value, struct grm_group_stats);
} grm_gstats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GRM_MAX_GROUPS * GRM_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct grm_gen_stats);
} grm_genstats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GRM_MAX_NAMES);
	__type(key, struct grm_name_key);
	__type(value, struct grm_name_val);
} grm_names SEC(".maps");

/* Per-packet working memory, off the 512-byte BPF stack (the SNI reader needs most of it).
 * Internal (not in grm_abi.h, not pinned by name). */
struct pkt_scratch {
	__u8 hdr[HDR_BUF];
	struct grm_attempt_key ak;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pkt_scratch);
} pkt_scratch SEC(".maps");

#ifdef GRM_WITH_SNI
struct sni_scratch_buf {
	__u8 data[QUIC_SNI_SCAN_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct sni_scratch_buf);
} sni_scratch SEC(".maps");
#endif

/* ---- SipHash-2-4 over a nonce of 4..16 bytes (zero padded to 24 bytes) ---- */

#define ROTL(x, b) (__u64)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                   \
	do {                                                                       \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);          \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                             \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                             \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);          \
	} while (0)

static __always_inline __u64 le64(const __u8 *p)
{
	return (__u64)p[0] | (__u64)p[1] << 8 | (__u64)p[2] << 16 | (__u64)p[3] << 24 |
	       (__u64)p[4] << 32 | (__u64)p[5] << 40 | (__u64)p[6] << 48 | (__u64)p[7] << 56;
}

/* SipHash-2-4 of the nlen (4..16) bytes at n. n must have 16 readable bytes past n + nlen rounded
 * down to 8 (the caller guarantees 24): the last partial word is read whole and masked. */
static __always_inline __u64 siphash24(__u64 k0, __u64 k1, const __u8 *n, __u32 nlen)
{
	__u64 v0 = k0 ^ 0x736f6d6570736575ULL;
	__u64 v1 = k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k0 ^ 0x6c7967656e657261ULL;
	__u64 v3 = k1 ^ 0x7465646279746573ULL;
	__u64 m, b;
	__u32 rest = nlen & 7;

	if (nlen >= 8) {
		m = le64(n);
		v3 ^= m; SIPROUND; SIPROUND; v0 ^= m;
	}
	if (nlen >= 16) {
		m = le64(n + 8);
		v3 ^= m; SIPROUND; SIPROUND; v0 ^= m;
	}
	/* Last block: the remaining nlen % 8 bytes and the length. */
	if (nlen >= 16)
		b = 0;
	else if (nlen >= 8)
		b = le64(n + 8);
	else
		b = le64(n);
	b &= rest ? (~0ULL >> (64 - 8 * rest)) : 0;
	b |= (__u64)(nlen & 0xff) << 56;
	v3 ^= b; SIPROUND; SIPROUND; v0 ^= b;
	v2 ^= 0xff;
	SIPROUND; SIPROUND; SIPROUND; SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* Decodes one of our CIDs. cid points at 28 readable bytes (zero past the packet);
 * want_len is the DCID length a long header states, 0 for short headers (length from the config). */
static __always_inline int cid_decode(const __u8 *cid, __u32 want_len, __u32 *slot, __u32 *worker)
{
	__u32 cfg = cid[0] >> GRM_CONFIG_SHIFT;
	struct grm_cid_key *k;
	__u32 len, nlen, e, r, sw, check;
	__u64 h, a;

	if (cfg == GRM_CONFIG_UNROUTABLE)
		return -1;
	k = bpf_map_lookup_elem(&grm_keys, &cfg);
	if (!k || !(k->flags & GRM_KEY_LIVE))
		return -1;
	len = k->cid_len;
	if (len < GRM_CID_MIN_LEN || len > GRM_CID_MAX_LEN)
		return -1;
	if (want_len && want_len != len)
		return -1;
	nlen = len - GRM_CID_NONCE_OFFSET;
	h = siphash24(k->k0, k->k1, cid + GRM_CID_NONCE_OFFSET, nlen);
	e = 0;
#pragma unroll
	for (int i = 0; i < GRM_CID_ROUTE_BYTES; i++)
		e = e << 8 | cid[GRM_CID_ROUTE_OFFSET + i];
	r = e ^ (__u32)(h & ((1ULL << GRM_CID_ROUTE_BITS) - 1));
	sw = r >> GRM_CHECK_BITS;
	a = (h >> GRM_CID_ROUTE_BITS) | 1;
	check = (__u32)((((__u64)(sw + 1) * a) & ((1ULL << GRM_CHECK_PRODUCT_BITS) - 1)) >>
			(GRM_CHECK_PRODUCT_BITS - GRM_CHECK_BITS));
	if ((r & ((1u << GRM_CHECK_BITS) - 1)) != check)
		return -1;
	*slot = sw >> GRM_WORKER_BITS;
	*worker = sw & ((1u << GRM_WORKER_BITS) - 1);
	return 0;
}

static __always_inline int same_addr(const __u32 *a, const __u32 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

static __always_inline struct grm_group_stats *gstats(__u32 gid)
{
	return bpf_map_lookup_elem(&grm_gstats, &gid);
}

static __always_inline struct grm_gen_stats *genstats(__u32 gid, __u32 slot)
{
	__u32 idx = gid * GRM_MAX_SLOTS + (slot & (GRM_MAX_SLOTS - 1));
	return bpf_map_lookup_elem(&grm_genstats, &idx);
}

static __always_inline int select_key(struct sk_reuseport_md *md, struct grm_sock_key *key)
{
	__u32 index = GRM_SOCK_INDEX(key->group, key->slot, key->worker);
	return bpf_sk_select_reuseport(md, &grm_socks, &index, 0);
}

/* Picks a live socket among the first n worker indices of a slot, starting at hash % n and probing
 * over holes. A global function: the verifier checks it once, not once per loop iteration.
 * Returns the worker index, or -1. */
__attribute__((noinline)) int grm_select_in_slot(struct sk_reuseport_md *md, __u32 gid, __u32 slot,
						 __u32 n, __u32 hash)
{
	struct grm_sock_key key = {};
	__u32 start;

	if (n == 0 || n > GRM_MAX_WORKERS)
		return -1;
	start = hash % n;
	key.group = gid;
	key.slot = slot;
	for (__u32 i = 0; i < GRM_PROBES; i++) {
		if (i >= n)
			break;
		key.worker = (start + i) % n;
		if (select_key(md, &key) == 0)
			return key.worker;
	}
	return -1;
}

static __always_inline int select_in_slot(struct sk_reuseport_md *md, struct grm_group *g, __u32 gid,
					  __u32 slot, __u32 hash, struct grm_sock_key *out)
{
	int w;

	if (slot >= GRM_MAX_SLOTS || g->slot_state[slot] != GRM_SLOT_IN_USE)
		return -1;
	w = grm_select_in_slot(md, gid, slot, g->slot_workers[slot], hash);
	if (w < 0)
		return -1;
	out->group = gid;
	out->slot = slot;
	out->worker = w;
	return 0;
}

/* New connection (or a datagram we cannot route by CID): working slot of the app, else the
 * newest generation that still has a live socket (counted), else drop (counted). */
static __always_inline int select_new(struct sk_reuseport_md *md, struct grm_group *g, __u32 gid,
				      __u32 app, __u32 hash, struct grm_group_stats *gs,
				      struct grm_sock_key *out)
{
	__u32 working;
	struct grm_gen_stats *ss;

	app &= GRM_MAX_APPS - 1;
	working = g->working_slot[app];
	if (select_in_slot(md, g, gid, working, hash, out) == 0)
		return 0;
	for (__u32 i = 0; i < GRM_MAX_SLOTS; i++) {
		__u32 slot = g->fallback_order[app][i];
		if (slot >= GRM_MAX_SLOTS)
			break;
		if (slot == working)
			continue;
		if (select_in_slot(md, g, gid, slot, hash, out) == 0) {
			if (gs)
				gs->fallbacks++;
			ss = genstats(gid, slot);
			if (ss)
				ss->fallbacks++;
			return 0;
		}
	}
	return -1;
}

#ifdef GRM_WITH_SNI
/* App for a new connection from the SNI of its first Initial: the app number, or
 * GRM_SNI_NONE (no readable SNI in this datagram) / GRM_SNI_UNMATCHED (no app lists the name).
 * A global function so the verifier checks it on its own. */
#define GRM_SNI_NONE -1
#define GRM_SNI_UNMATCHED -2
__attribute__((noinline)) int grm_app_by_sni(struct sk_reuseport_md *md, __u32 gid, __u32 plen)
{
	__u32 zero = 0, one = 1;
	struct sni_scratch_buf *buf = bpf_map_lookup_elem(&sni_scratch, &zero);
	struct sni_scratch_buf *kbuf = bpf_map_lookup_elem(&sni_scratch, &one);
	struct grm_name_key *key;
	struct grm_name_val *v;
	char *sni;
	__u32 n = plen, dot = 0;
	int len;

	if (!buf || !kbuf)
		return GRM_SNI_NONE;
	/* Client Initials are padded to >= 1200 bytes (RFC 9000 14.1); shorter datagrams carry no
	 * usable ClientHello. Load a constant 1200 bytes, then the tail up to QUIC_SNI_SCAN_BYTES
	 * (the volatile round trip keeps the bound check and the helper on one register). */
	if (n < 1200)
		return GRM_SNI_NONE;
	if (bpf_skb_load_bytes(md, 8, buf->data, 1200) < 0)
		return GRM_SNI_NONE;
	{
		volatile __u32 vtail = n - 1200;
		__u64 tail = vtail;
		if (tail > QUIC_SNI_SCAN_BYTES - 1200)
			tail = QUIC_SNI_SCAN_BYTES - 1200;
		if (tail > 0 && bpf_skb_load_bytes(md, 8 + 1200, buf->data + 1200, tail) < 0)
			return GRM_SNI_NONE;
	}
	/* The second scratch entry holds the name and the lookup key: the SNI reader needs most of
	 * the 512-byte BPF stack. */
	key = (struct grm_name_key *)kbuf->data;
	sni = (char *)kbuf->data + 128;
	len = quic_initial_sni(buf->data, plen, sni);
	if (len <= 0 || len > QUIC_SNI_MAX || len > GRM_NAME_MAX)
		return GRM_SNI_NONE;
	__builtin_memset(key, 0, sizeof(*key));
	key->group = gid;
	for (int i = 0; i < GRM_NAME_MAX && i < QUIC_SNI_MAX; i++) {
		char c = i < len ? sni[i] : 0;
		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		key->name[i] = c;
	}
	for (int i = 1; i < GRM_NAME_MAX; i++) {
		if (key->name[i] == '.') {
			dot = i;
			break;
		}
	}
	v = bpf_map_lookup_elem(&grm_names, key);
	if (!v && dot) {
		/* Wildcard: "*" followed by the name from its first dot ("*.example.com"). */
		key->name[0] = '*';
		for (int i = 1; i < GRM_NAME_MAX; i++) {
			__u32 from = dot + i - 1;
			key->name[i] = from < GRM_NAME_MAX ? key->name[from & (GRM_NAME_MAX - 1)] : 0;
		}
		v = bpf_map_lookup_elem(&grm_names, key);
	}
	if (!v)
		return GRM_SNI_UNMATCHED;
	return v->app & (GRM_MAX_APPS - 1);
}
#endif

enum pkt_kind { PKT_GARBAGE, PKT_SHORT, PKT_NEW, PKT_LONG_OTHER };

SEC("sk_reuseport")
int grm_select(struct sk_reuseport_md *md)
{
	/* Read every ctx field once (clang 14 merges repeated reads into one the verifier rejects). */
	__u32 len = md->len;
	__u32 hash = md->hash;
	struct bpf_sock *sk = md->sk;
	void *data = md->data;
	void *data_end = md->data_end;
	struct grm_group_key gk = {};
	struct grm_group *g;
	struct grm_group_stats *gs;
	struct grm_gen_stats *ss;
	struct grm_sock_key key = {};
	struct grm_attempt_key *ak;
	struct pkt_scratch *p = 0;
	__u32 zero = 0;
	struct grm_attempt *at;
	__u8 *hdr;
	__u32 gid, plen, n, slot, worker, kind = PKT_GARBAGE, app = 0, dcid_len = 0;
	__u8 *dcid;

	if (!sk)
		return SK_PASS;
	gk.family = sk->family;
	gk.port = sk->src_port;
	if (gk.family == AF_INET6_) {
		/* volatile: keeps clang from turning these into pointer arithmetic on sk. */
		__u32 *a6 = (__u32 *)gk.addr;
		a6[0] = *(volatile __u32 *)&sk->src_ip6[0];
		a6[1] = *(volatile __u32 *)&sk->src_ip6[1];
		a6[2] = *(volatile __u32 *)&sk->src_ip6[2];
		a6[3] = *(volatile __u32 *)&sk->src_ip6[3];
	} else {
		*(__u32 *)gk.addr = sk->src_ip4;
	}
	{
		__u32 port = gk.port & (GRM_MAX_PORTS - 1);
		__u32 *idp = bpf_map_lookup_elem(&grm_ports, &port);
		__u32 id = idp ? *idp : 0;
		if (id == GRM_PORT_SHARED) {
			idp = bpf_map_lookup_elem(&grm_group_ids, &gk);
			id = idp ? *idp : 0;
		}
		g = id ? bpf_map_lookup_elem(&grm_groups, &id) : 0;
	}
	/* Not ours (or another address on a port we serve): the kernel's choice. */
	if (!g || !(g->flags & GRM_GROUP_IN_USE) || g->addr.family != gk.family || g->addr.port != gk.port ||
	    !same_addr((const __u32 *)g->addr.addr, (const __u32 *)gk.addr)) {
		gs = gstats(0);
		if (gs)
			gs->packets++;
		return SK_PASS;
	}
	gid = g->id;
	if (gid == 0 || gid >= GRM_MAX_GROUPS)
		return SK_PASS;
	gs = gstats(gid);
	if (gs)
		gs->packets++;
	plen = len > 8 ? len - 8 : 0;
	if (data + 8 + HDR_BUF <= data_end) {
		/* Common case: the header is in the linear part of the skb; read it in place. */
		hdr = data + 8;
		n = HDR_BYTES;
	} else {
		/* Short or non-linear datagram: copy into zeroed scratch (helper zero-fills on failure). */
		p = bpf_map_lookup_elem(&pkt_scratch, &zero);
		if (!p)
			return SK_PASS;
		hdr = p->hdr;
		__builtin_memset(hdr, 0, HDR_BUF);
		{
			/* volatile: keeps the bound check and the helper's size on one register. */
			volatile __u32 vn = plen;
			__u64 nn = vn;
			if (nn > HDR_BYTES)
				nn = HDR_BYTES;
			if (nn >= 1 && bpf_skb_load_bytes(md, 8, hdr, nn) != 0)
				nn = 0;
			n = nn;
		}
	}
	dcid = hdr + 1;

	if (n >= 1) {
		__u8 b0 = hdr[0];
		if (!(b0 & 0x80)) {
			if (plen >= 1 + GRM_CID_MIN_LEN)
				kind = PKT_SHORT;
		} else if (n >= 6) {
			__u32 ver = (__u32)hdr[1] << 24 | (__u32)hdr[2] << 16 | (__u32)hdr[3] << 8 | hdr[4];
			__u32 type = (b0 >> 4) & 3;
			dcid_len = hdr[5];
			dcid = hdr + 6;
			if (dcid_len <= GRM_CID_MAX_LEN && 6 + dcid_len <= n) {
				int is_new = (ver == QUIC_V1 && (type == 0 || type == 1)) ||
					     (ver == QUIC_V2 && (type == 1 || type == 2));
				kind = is_new ? PKT_NEW : PKT_LONG_OTHER;
			}
		}
	}

	if (kind == PKT_GARBAGE) {
		if (gs)
			gs->unparseable++;
		if (g->flags & GRM_GROUP_DROP_UNPARSEABLE)
			goto drop;
		goto new_conn;
	}

	if (kind == PKT_NEW) {
		/* Datagrams of an attempt in flight stay on the socket its first datagram chose. */
		if (!p)
			p = bpf_map_lookup_elem(&pkt_scratch, &zero);
		if (!p)
			return SK_PASS;
		ak = &p->ak;
		ak->group = gid;
		ak->len = dcid_len;
#pragma unroll
		for (int i = 0; i < GRM_CID_MAX_LEN; i++)
			ak->dcid[i] = i < dcid_len ? hdr[6 + i] : 0;
		at = bpf_map_lookup_elem(&grm_attempts, ak);
		if (at && at->expires_ns > bpf_ktime_get_ns()) {
			key = at->sock;
			if (select_key(md, &key) == 0) {
				if (gs)
					gs->attempt_hits++;
				goto delivered;
			}
		}
	}

	/* Short headers, and long headers that may carry one of our CIDs. */
	if (kind == PKT_SHORT || dcid_len >= GRM_CID_MIN_LEN) {
		__u32 want = kind == PKT_SHORT ? 0 : dcid_len;
		if (cid_decode(dcid, want, &slot, &worker) == 0) {
			key.group = gid;
			key.slot = slot;
			key.worker = worker;
			if (select_key(md, &key) == 0) {
				if (gs)
					gs->cid_ok++;
				ss = genstats(gid, slot);
				if (ss)
					ss->cid_ok++;
				goto delivered;
			}
			if (gs)
				gs->cid_gone++;
			ss = genstats(gid, slot);
			if (ss)
				ss->cid_gone++;
		} else if (kind != PKT_NEW && gs) {
			gs->cid_fail++;
		}
	}

	if (kind == PKT_NEW) {
#ifdef GRM_WITH_SNI
		if (g->flags & GRM_GROUP_HAS_NAMES) {
			int r = grm_app_by_sni(md, gid, plen);
			if (r >= 0) {
				app = r & (GRM_MAX_APPS - 1);
				if (gs)
					gs->sni_match[app]++;
			} else if (gs) {
				if (r == GRM_SNI_UNMATCHED)
					gs->sni_unmatched++;
				else
					gs->sni_none++;
			}
		}
#endif
		if (select_new(md, g, gid, app, hash, gs, &key) != 0)
			goto drop;
		{
			struct grm_attempt rec = {};
			rec.expires_ns = bpf_ktime_get_ns() + (__u64)g->attempt_ttl_ms * 1000000ULL;
			rec.sock = key;
			bpf_map_update_elem(&grm_attempts, ak, &rec, BPF_ANY);
		}
		if (gs)
			gs->new_conns++;
		ss = genstats(gid, key.slot);
		if (ss)
			ss->new_conns++;
		goto delivered;
	}

new_conn:
	/* A CID we cannot route (foreign, forged, its socket gone) or garbage: the working generation
	 * of the default app, never the kernel's hash over draining sockets. */
	if (select_new(md, g, gid, 0, hash, gs, &key) != 0)
		goto drop;
delivered:
	ss = genstats(gid, key.slot);
	if (ss)
		ss->packets++;
	return SK_PASS;
drop:
	if (gs)
		gs->drops++;
	return SK_DROP;
}
