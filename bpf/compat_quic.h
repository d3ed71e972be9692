/* SPDX-License-Identifier: Apache-2.0 */
/*
 * compat_quic.h — udpgrm's BESPOKE dissector with digest 0xDEAD (QUIC) for compat.bpf.c. Needs
 * quic_sni.h (the Initial decryption the proxy's own program uses; built with -DGRM_WITH_SNI).
 *
 * Semantics (udpgrm's, reference §4.5), producing the same 32-bit value as a CBPF program:
 *  - datagram (with its UDP header) under 32 bytes, or a long header whose DCID length is not
 *    8..20: DIS_BAD; fewer than 32 payload bytes: DIS_LOAD.
 *  - DCID: long header at byte 6 (its length at byte 5), short header at byte 1.
 *  - Initial (first byte's top nibble 0xC): the SNI of its ClientHello picks the app of the first
 *    entry naming it (0x80000000 | app), or app 0 when no entry does. Not QUIC v1, a CID over 20
 *    bytes or a header shorter than its fields: DIS_BAD (udpgrm's header parse errors).
 *  - otherwise, and for Initials without a readable SNI: a DCID starting with 0x01 is ours: bytes
 *    1-2 are the cookie (big-endian); cookie 0 means "new flow for the app at byte 4". Any other
 *    DCID: new flow for app 0.
 * Differences (deliberate): the SNI match ignores case (names are lower-cased by quic_sni.h; DNS
 * names are case-insensitive) and is exact (udpgrm compares 61 bytes, so longer names match by
 * prefix); the ClientHello may be split into several CRYPTO frames (quic_sni.h reassembles);
 * Initials in datagrams under 1,200 bytes (which RFC 9000 §14.1 forbids) are routed by DCID.
 */
#ifndef COMPAT_QUIC_H
#define COMPAT_QUIC_H

#include "quic_sni.h"

#define QUIC_DEAD_DIGEST 0xDEAD
#define QUIC_MIN_DATAGRAM 32 /* udpgrm's: with the UDP header */
#define QUIC_MIN_INITIAL 1200
#define QUIC_SNI_HOSTNAME GRM_COMPAT_BESPOKE_SNI_LEN
#define QUIC_SNI_ENTRY (2 + QUIC_SNI_HOSTNAME) /* {u8 app, u8 reserved, u8 hostname[62]} */
#define QUIC_MAX_SNI_ENTRIES GRM_COMPAT_MAX_BESPOKE_SNI
#define QUIC_NEW_FLOW 0x80000000u /* | app */

/* The SNI reader's input (the start of the UDP payload) and output. Internal, per CPU. */
struct c_quic_scratch {
	__u8 data[QUIC_SNI_SCAN_BYTES];
	char sni[QUIC_SNI_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct c_quic_scratch);
} c_quic_scratch SEC(".maps");

/* SNI of a client Initial (plen = UDP payload length): its length with the name in the scratch,
 * 0 without one, -QUIC_SNI_E_* when the header does not parse. A global function, so the verifier
 * checks it on its own and the SNI reader's stack does not add to the caller's. */
__attribute__((noinline)) int grmc_quic_sni(struct sk_reuseport_md *md, __u32 plen)
{
	__u32 zero = 0;
	struct c_quic_scratch *s = bpf_map_lookup_elem(&c_quic_scratch, &zero);
	__u32 n = plen;
	int r;

	if (!s)
		return -QUIC_SNI_E_INTERNAL;
	if (n < QUIC_MIN_INITIAL)
		return 0;
	/* A constant 1,200 bytes, then the tail up to QUIC_SNI_SCAN_BYTES (the volatile round trip
	 * keeps the bound check and the helper on one register, as in grm.bpf.c). */
	if (bpf_skb_load_bytes(md, 8, s->data, QUIC_MIN_INITIAL) < 0)
		return 0;
	{
		volatile __u32 vtail = n - QUIC_MIN_INITIAL;
		__u64 tail = vtail;
		if (tail > QUIC_SNI_SCAN_BYTES - QUIC_MIN_INITIAL)
			tail = QUIC_SNI_SCAN_BYTES - QUIC_MIN_INITIAL;
		if (tail > 0 && bpf_skb_load_bytes(md, 8 + QUIC_MIN_INITIAL, s->data + QUIC_MIN_INITIAL, tail) < 0)
			return 0;
	}
	r = quic_initial_sni(s->data, plen, s->sni);
	/* Zero the name's tail (0xff mask while j < r, as quic_sni_derive does): entries compare
	 * whole, zero-padded. */
	for (int j = 0; j < QUIC_SNI_MAX; j++)
		s->sni[j] &= (char)((__s32)(j - r) >> 31);
	return r;
}

/* The app of the first hostname entry equal to the SNI (len bytes, lower case, zero-padded in
 * the scratch by grmc_quic_sni), else 0. Branch-free byte compare: the verifier walks it once. */
static __always_inline __u32 quic_sni_app(const struct grm_compat_group *g, int len)
{
	__u32 zero = 0, n = g->dis.filter_len;
	struct c_quic_scratch *s = bpf_map_lookup_elem(&c_quic_scratch, &zero);

	if (!s || len <= 0 || len > QUIC_SNI_HOSTNAME)
		return 0;
	for (__u32 i = 0; i < QUIC_MAX_SNI_ENTRIES; i++) {
		const __u8 *e = &g->dis.payload[i * QUIC_SNI_ENTRY];
		__u32 diff = 0;
		if (i >= n)
			break;
		for (int j = 0; j < QUIC_SNI_HOSTNAME; j++) {
			__s32 c = e[2 + j], t = c - 'A';
			/* 0x20 for 'A'..'Z' (t in 0..25): lower case */
			c |= (((t >> 31) ^ 1) & ((t - 26) >> 31) & 1) << 5;
			diff |= (__u32)c ^ (__u8)s->sni[j];
		}
		if (diff == 0)
			return e[0];
	}
	return 0;
}

/* Runs udpgrm's 0xDEAD dissector: DIS_OK with *ret (a cookie, or QUIC_NEW_FLOW | app). */
static __noinline int quic_dead_run(struct sk_reuseport_md *md, const struct grm_compat_group *g,
				    __u32 len, __u32 *ret)
{
	__u8 h[QUIC_MIN_DATAGRAM];
	__u8 d0, d1, d2, d4;
	int r;

	if (!g || !ret)
		return DIS_BAD;
	if (g->dis.bespoke_digest != QUIC_DEAD_DIGEST)
		return DIS_BAD; /* udpgrm knows no other digest */
	if (len < QUIC_MIN_DATAGRAM)
		return DIS_BAD;
	if (bpf_skb_load_bytes(md, UDP_HDR_LEN, h, QUIC_MIN_DATAGRAM) != 0)
		return DIS_LOAD;
	if (h[0] & 0x80) {
		if (h[5] < 8 || h[5] > 20)
			return DIS_BAD;
		d0 = h[6], d1 = h[7], d2 = h[8], d4 = h[10];
	} else {
		d0 = h[1], d1 = h[2], d2 = h[3], d4 = h[5];
	}
	if ((h[0] >> 4) == 0xc) {
		r = grmc_quic_sni(md, len - UDP_HDR_LEN);
		if (r == -QUIC_SNI_E_VERSION || r == -QUIC_SNI_E_CID || r == -QUIC_SNI_E_SHORT)
			return DIS_BAD;
		if (r > 0) {
			*ret = QUIC_NEW_FLOW | quic_sni_app(g, r);
			return DIS_OK;
		}
	}
	if (d0 == 1) {
		__u32 cookie = (__u32)d1 << 8 | d2;
		*ret = cookie ? cookie : QUIC_NEW_FLOW | d4;
	} else {
		*ret = QUIC_NEW_FLOW;
	}
	return DIS_OK;
}

#endif
