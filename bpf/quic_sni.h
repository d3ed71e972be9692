/* SPDX-License-Identifier: Apache-2.0 */
/*
 * quic_sni.h — read the TLS server_name from a QUIC v1 client Initial, inside eBPF.
 *
 *   int quic_initial_sni(const __u8 *buf, __u32 len, char sni_out[QUIC_SNI_MAX]);
 *
 * buf: per-CPU scratch (a PERCPU_ARRAY value of at least QUIC_SNI_SCAN_BYTES bytes) holding the
 * first min(len, QUIC_SNI_SCAN_BYTES) bytes of the UDP payload; len: the UDP payload length.
 * Returns the SNI length (> 0) with sni_out NUL-terminated and lowercased; 0 if this datagram
 * carries no SNI; -QUIC_SNI_E_* (< 0) if it is not a QUIC v1 Initial or does not parse.
 *
 * What it does (RFC 9000 §17.2.2, RFC 9001 §5):
 *  1. long header: fixed bit, version 1, type Initial, DCID/SCID <= 20 bytes, token, Length.
 *  2. Initial secrets from the DCID: HKDF-Extract with the v1 salt, HKDF-Expand-Label "client in",
 *     then "quic key" / "quic iv" / "quic hp" (HMAC-SHA256 in quic_sni_crypto.h; the v1 salt's
 *     HMAC pad states are precomputed constants, so 14 SHA-256 compressions per datagram).
 *  3. header protection: AES-128 of the 16-byte sample, unmask first byte and packet number.
 *  4. payload: AES-128-CTR keystream as AES-128-GCM generates it (J0 = IV^PN || 1, first payload
 *     block uses counter 2), decrypted lazily — only as far as the frame walk has to read.
 *     The GCM tag is NOT verified: a forged Initial can at most choose where its own connection
 *     attempt is steered, which it can do anyway by sending whatever SNI it likes. Do not use the
 *     result for anything but steering.
 *  5. frames: PADDING, PING, ACK (skipped), CRYPTO. Each CRYPTO fragment is copied to its stream
 *     offset in scratch (up to QUIC_SNI_MAX_FRAGS per datagram, offsets < QUIC_SNI_REASM_CAP), and
 *     the ClientHello is parsed each time the contiguous prefix from offset 0 grows, stopping as
 *     soon as server_name is found (RFC 9001 A.2: ~260 bytes decrypted, not the whole 1162).
 *  6. ClientHello: legacy fields, then the extension list up to extension 0 (server_name), first
 *     host_name entry. Names of QUIC_SNI_MAX bytes or more: -QUIC_SNI_E_TOO_LONG (never truncated,
 *     a truncated name could match the wrong route); empty or with a byte outside [A-Za-z0-9._-]
 *     (RFC 6066: ASCII, IDNs as A-labels): -QUIC_SNI_E_NAME.
 *  7. fallback scan: if the prefix from offset 0 ends before server_name (but this datagram does
 *     start the ClientHello), the CRYPTO bytes present are scanned for a server_name extension:
 *     type 0x0000, three nested lengths that agree (ext = list + 2 = name + 5), name_type 0,
 *     hostname characters only, all bytes present in this datagram. Needed for Chrome: its
 *     "chaos protection" cuts the ~2 kB ClientHello (post-quantum key share) into many CRYPTO
 *     frames spread over two Initials — the 1st carries bytes [0, ~60) and the tail [~1000, end),
 *     the 2nd the middle — so the extension list cannot be walked from the 1st datagram alone.
 *     A false match needs ~7 specific bytes plus a hostname-shaped run inside random data; the
 *     result only steers the sender's own connection attempt.
 *
 * Returns 0 (no SNI in this datagram) when:
 *  - server_name is in another datagram: Chrome randomises extension order, so sometimes it lies
 *    in the middle part (2nd datagram); in 5 of 5 captures here it was in the 1st. Datagrams
 *    not holding CRYPTO offset 0 (Chrome's 2nd, retransmission tails) also return 0: the caller
 *    must steer every Initial of one attempt alike, by DCID (the same for all of them), e.g. a
 *    DCID-keyed LRU written when the first datagram was steered.
 *  - the ClientHello is complete and has no server_name (IP literal), or a datagram carries only
 *    ACK/PING/PADDING.
 * Only the first QUIC_SNI_SCAN_BYTES bytes of the datagram are looked at; only the first packet
 * of a coalesced datagram is parsed.
 *
 * Versions: only QUIC v1 (0x00000001). QUIC v2 (RFC 9369: other salt, labels "quicv2 ..." and
 * type bits), drafts, grease and version negotiation return -QUIC_SNI_E_VERSION; the caller
 * should steer them like any new flow without SNI (the server answers with Version Negotiation
 * or handles v2 itself). Initials whose DCID is shorter than 8 bytes (which RFC 9000 §7.2 tells
 * servers to drop) are still decoded.
 *
 * BPF usage:
 *   #include <linux/bpf.h>            (or vmlinux.h)
 *   #include <bpf/bpf_helpers.h>
 *   #include "quic_sni.h"
 *   ... in the sk_reuseport program (see bpf/sni-test/sni_test.bpf.c, sni_test_reuseport):
 *   len = md->len - 8;                        UDP payload length (md->len includes the UDP header)
 *   copy = min(len, QUIC_SNI_SCAN_BYTES), bounded so the verifier sees 1..1280 (scan_len() there);
 *   bpf_skb_load_bytes(md, 8, buf, copy);     buf: the caller's own PERCPU_ARRAY value (1280 B)
 *   n = quic_initial_sni(buf, len, sni);      char sni[QUIC_SNI_MAX] on the stack or in a map
 * Call it only for long-header packets not already steered by CID (new connection attempts).
 * This header declares, in BPF builds only:
 *   - map `quic_sni_scratch` (PERCPU_ARRAY, 1 entry, value struct quic_sni_scratch, 5336 bytes):
 *     the working memory. Do not declare a map of that name; do not use it for anything else.
 *   - global (non-static, noinline) BPF functions named quic_sni_* — the verifier checks each once,
 *     on its own, whatever the number of call sites (the test object: ~98k instructions processed
 *     in total for a program calling quic_initial_sni once, limit 1M); data-dependent loops run in bpf_loop()
 *     callbacks with their state in the scratch map, so the verifier's work does not grow with the
 *     packet. Needs BTF (-g) and kernel >= 5.17 (bpf_loop); checked on 6.18 for xdp and sk_reuseport.
 *   - constant tables in .rodata (AES S-box + 4 KiB of T-tables, SHA-256 constants, labels).
 * Stack: up to ~270 bytes in frames below the caller (quic_sni_run ~80 incl. bpf_loop's inlined
 * slots + SHA-256 176), so keep the calling program's own stack under ~240 bytes (the test
 * program uses 192; the verifier checks the sum, max 512). Not re-entrant per CPU (per-CPU scratch), which holds for sk_reuseport, XDP and TC.
 * clang 14 pitfalls met here (worth knowing in the caller too): a copy loop from a constant
 * global can make it drop earlier stores (see QUIC_SNI_OPAQUE in quic_sni_crypto.h), and
 * min()-style size arguments to helpers need an empty asm to stay bounded (scan_len()).
 * A 32-byte static const array landed in section .rodata.cst32 while its BTF said .rodata, and
 * the kernel rejected the object's BTF: group such constants in a struct (quic_sni_hash_consts).
 *
 * Cost (2-core test VM, kernel 6.18, clang 14, BPF_PROG_TEST_RUN average over 2000 runs):
 * ~10 us for an Initial whose SNI is in the first ~300 bytes (RFC 9001 A.2, quiche), ~20 us when
 * the whole 1.2 kB payload must be decrypted (split ClientHello; Chrome's 1st Initial, with the
 * fallback scan), ~0.1 us to reject a non-v1 packet. The 14 SHA-256 compressions (~0.43 us each) are ~60% of it, AES ~0.1 us per block;
 * the same C built for userspace takes ~6 us. It runs once per connection attempt.
 * Kernel bpf_crypto kfuncs (6.10+) are not usable here: the verifier refuses bpf_crypto_decrypt
 * in sk_reuseport programs ("calling kernel function ... is not allowed"; they are for TC/XDP),
 * contexts must be created from a syscall program, and there is no SHA/HMAC among them.
 *
 * Userspace: the same file compiles as plain C (no __bpf__): the map becomes a static struct,
 * bpf_loop a plain loop (see bpf/sni-test/sni_check.c).
 */
#ifndef QUIC_SNI_H
#define QUIC_SNI_H

#define QUIC_SNI_MAX 64          /* bytes incl. room for NUL */
#define QUIC_SNI_SCAN_BYTES 1280 /* size of the scratch buffer holding the start of the UDP payload */

/* Negative return values are -QUIC_SNI_E_*. */
enum quic_sni_error {
	QUIC_SNI_E_INTERNAL = 1,    /* scratch map lookup failed */
	QUIC_SNI_E_SHORT = 2,       /* datagram shorter than its header/Length fields say */
	QUIC_SNI_E_NOT_INITIAL = 3, /* short header, fixed bit clear, or long header but not Initial */
	QUIC_SNI_E_VERSION = 4,     /* not QUIC v1 */
	QUIC_SNI_E_CID = 5,         /* DCID or SCID longer than 20 bytes */
	QUIC_SNI_E_FRAME = 6,       /* decrypted payload has a frame not allowed/parsable (or bad key) */
	QUIC_SNI_E_TLS = 7,         /* CRYPTO data is not a well-formed ClientHello */
	QUIC_SNI_E_TOO_LONG = 8,    /* server_name has QUIC_SNI_MAX bytes or more */
	QUIC_SNI_E_NAME = 9,        /* server_name is empty or has a byte outside [A-Za-z0-9._-] */
};

#if defined(__bpf__)
#define QUIC_SNI_SUBPROG __attribute__((noinline)) /* global: verified once, on its own */
#define quic_sni_loop(n, cb, ctx) bpf_loop((n), (cb), (ctx), 0)
#else
#include <stdint.h>
#include <string.h>
#include <linux/types.h>
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#define QUIC_SNI_SUBPROG static __attribute__((noinline))
static long quic_sni_loop(__u32 n, long (*cb)(__u32, void *), void *ctx)
{
	__u32 i;

	for (i = 0; i < n; i++)
		if (cb(i, ctx))
			return i + 1;
	return n;
}
#endif

#define QUIC_SNI_PKT_MASK 2047  /* b[0..2048): datagram, payload decrypted in place */
#define QUIC_SNI_REASM_OFF 2048 /* b[2048..4096): CRYPTO bytes placed at their stream offsets */
#define QUIC_SNI_REASM_CAP 2040 /* CRYPTO offsets kept (a datagram carries at most ~1.2 kB) */
#define QUIC_SNI_MAX_FRAGS 32   /* CRYPTO frames remembered per datagram (Chrome: 5-12 seen) */
#define QUIC_SNI_MAX_EXTS 64    /* ClientHello extensions walked before giving up */
#define QUIC_SNI__MORE 1000     /* internal: ClientHello prefix ends before server_name */

struct quic_sni_sha256 {
	__u32 h[8];
	__u32 w[64];
	__u8 block[64];
};

struct quic_sni_frag {
	__u16 off; /* CRYPTO stream offset */
	__u16 len;
	__u16 pos; /* where its data sits in b[] */
	__u16 pad;
};

/* Per-CPU working memory (the value of map quic_sni_scratch). */
struct quic_sni_scratch {
	__u8 b[4096 + 16]; /* +16: slack for 8-byte copies at the end of the reassembly area */
	struct quic_sni_sha256 sha;
	__u32 hmac_ipad[8];
	__u32 hmac_opad[8];
	__u8 hmac_key[32];
	__u8 hmac_msg[56];
	__u32 hmac_msg_len;
	__u8 hmac_out[32];
	__u32 aes_rk[44];
	__u8 aes_key[16];
	__u8 aes_in[16];
	__u8 aes_out[16];
	__u8 pkt_key[16];
	__u8 hp_key[16];
	__u8 iv[16]; /* 12 used: IV, then nonce = IV ^ packet number */
	__u32 dgram_len; /* UDP payload length */
	__u32 len;       /* valid bytes in b[] = min(dgram_len, QUIC_SNI_SCAN_BYTES) */
	__u32 pay;       /* offset of the first payload byte (after the packet number) */
	__u32 pt_end;    /* end of readable plaintext: min(packet end - tag, len) */
	__u32 clipped;   /* the packet goes on beyond b[len] */
	__u32 dec;       /* b[pay..dec) is decrypted */
	__u32 want;      /* decrypt up to here */
	__u32 pos;       /* frame walk cursor */
	__u32 skip_varints; /* ACK frame fields still to skip */
	__u32 nfrag;
	struct quic_sni_frag frag[QUIC_SNI_MAX_FRAGS];
	__u32 prefix;   /* CRYPTO bytes [0, prefix) are all present in the reassembly area */
	__u32 grew;     /* prefix grew during this assembly pass */
	__u32 cp_src, cp_dst, cp_len;
	__u32 crypto_end; /* end of the highest CRYPTO fragment kept */
	__u32 scan_frag, scan_pos; /* fallback server_name scan: fragment, reassembly offset */
	__u32 cov, cov_end;        /* coverage check cursor and end */
	__u32 name_pos, name_len;
	int result;     /* > 0 SNI length, 0 none, < 0 error, QUIC_SNI__MORE still looking */
	char sni[QUIC_SNI_MAX];
};

#if defined(__bpf__)
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct quic_sni_scratch);
} quic_sni_scratch SEC(".maps");
#else
static __thread struct quic_sni_scratch quic_sni_scratch_mem;
#endif

#include "quic_sni_crypto.h"

/* bpf_loop's context must live on the stack: it carries the scratch pointer to the callbacks. */
struct quic_sni_cbctx {
	struct quic_sni_scratch *s;
};

#define QUIC_SNI_PB(s, i) ((s)->b[(i) & QUIC_SNI_PKT_MASK])
#define QUIC_SNI_RB(s, i) ((s)->b[QUIC_SNI_REASM_OFF + ((i) & QUIC_SNI_PKT_MASK)])

/* QUIC variable-length integer at b[p] (RFC 9000 §16), without branches: the verifier then
 * sees one path whatever the encoded length. Reads 8 bytes; b[] has slack for that. */
static __always_inline __u64 quic_sni_varint(struct quic_sni_scratch *s, __u32 p, __u32 *vlen)
{
	__u32 q = p & QUIC_SNI_PKT_MASK;
	__u8 b0 = s->b[q];
	__u32 n = 1u << (b0 >> 6);
	__u64 v = ((__u64)(b0 & 0x3f) << 56) | ((__u64)s->b[q + 1] << 48) |
		  ((__u64)s->b[q + 2] << 40) | ((__u64)s->b[q + 3] << 32) |
		  ((__u64)s->b[q + 4] << 24) | ((__u64)s->b[q + 5] << 16) |
		  ((__u64)s->b[q + 6] << 8) | (__u64)s->b[q + 7];

	*vlen = n;
	return v >> ((8 - n) * 8);
}

/* HKDF-Expand-Label infos (RFC 8446 §7.1) with the HKDF-Expand counter byte 0x01 appended. */
static const __u8 quic_sni_info_client_in[56] = "\x00\x20\x0ftls13 client in\x00\x01";
static const __u8 quic_sni_info_key[56] = "\x00\x10\x0etls13 quic key\x00\x01";
static const __u8 quic_sni_info_iv[56] = "\x00\x0c\x0dtls13 quic iv\x00\x01";
static const __u8 quic_sni_info_hp[56] = "\x00\x10\x0dtls13 quic hp\x00\x01";
#define QUIC_SNI_INFO_CLIENT_IN_LEN 20
#define QUIC_SNI_INFO_KEY_LEN 19
#define QUIC_SNI_INFO_IV_LEN 18
#define QUIC_SNI_INFO_HP_LEN 18

static __always_inline void quic_sni_set_msg(struct quic_sni_scratch *s, const __u8 *info, __u32 len)
{
	int i;

	QUIC_SNI_OPAQUE(info);
	for (i = 0; i < 56; i++)
		s->hmac_msg[i] = info[i];
	s->hmac_msg_len = len;
}

/* Initial secrets from the DCID at b[6..6+dcid_len): pkt_key, iv, hp_key (RFC 9001 §5.2). */
QUIC_SNI_SUBPROG int quic_sni_derive(struct quic_sni_scratch *s)
{
	const __u32 *ipad, *opad;
	__u32 dcid_len;
	int i;

	if (!s)
		return -1;
	dcid_len = s->b[5];
	if (dcid_len > 20)
		return -1;
	/* initial_secret = HKDF-Extract(salt, DCID) = HMAC(salt, DCID); the salt's pad states are
	 * constants (quic_sni_tables.h; sni_check compares them with quic_sni_hmac_setkey) */
	ipad = quic_sni_hash_consts.salt_ipad;
	opad = quic_sni_hash_consts.salt_opad;
	QUIC_SNI_OPAQUE(ipad);
	QUIC_SNI_OPAQUE(opad);
	for (i = 0; i < 8; i++) {
		s->hmac_ipad[i] = ipad[i];
		s->hmac_opad[i] = opad[i];
	}
	for (i = 0; i < 56; i++) {
		/* keep DCID bytes (i < dcid_len), zero the rest: mask is 0xff iff i - dcid_len < 0 */
		__u8 keep = (__u8)((__s32)(i - (__s32)dcid_len) >> 31);

		s->hmac_msg[i] = (i < 20 ? s->b[6 + (i < 20 ? i : 0)] : 0) & keep;
	}
	s->hmac_msg_len = dcid_len;
	quic_sni_hmac(s);
	/* client_initial_secret = HKDF-Expand-Label(initial_secret, "client in", "", 32) */
	for (i = 0; i < 32; i++)
		s->hmac_key[i] = s->hmac_out[i];
	quic_sni_hmac_setkey(s);
	quic_sni_set_msg(s, quic_sni_info_client_in, QUIC_SNI_INFO_CLIENT_IN_LEN);
	quic_sni_hmac(s);
	for (i = 0; i < 32; i++)
		s->hmac_key[i] = s->hmac_out[i];
	quic_sni_hmac_setkey(s);
	quic_sni_set_msg(s, quic_sni_info_key, QUIC_SNI_INFO_KEY_LEN);
	quic_sni_hmac(s);
	for (i = 0; i < 16; i++)
		s->pkt_key[i] = s->hmac_out[i];
	quic_sni_set_msg(s, quic_sni_info_iv, QUIC_SNI_INFO_IV_LEN);
	quic_sni_hmac(s);
	for (i = 0; i < 12; i++)
		s->iv[i] = s->hmac_out[i];
	quic_sni_set_msg(s, quic_sni_info_hp, QUIC_SNI_INFO_HP_LEN);
	quic_sni_hmac(s);
	for (i = 0; i < 16; i++)
		s->hp_key[i] = s->hmac_out[i];
	return 0;
}

/* Decrypt (CTR keystream of AES-128-GCM) whole blocks of b[dec..) until b[..want) is plaintext. */
QUIC_SNI_SUBPROG int quic_sni_decrypt(struct quic_sni_scratch *s)
{
	__u32 want, dec, blk;
	int i, k;

	if (!s)
		return -1;
	want = s->want < s->pt_end ? s->want : s->pt_end;
	for (i = 0; i < QUIC_SNI_SCAN_BYTES / 16 + 1; i++) {
		dec = s->dec;
		if (dec >= want)
			break;
		blk = (dec - s->pay) / 16;
		for (k = 0; k < 12; k++)
			s->aes_in[k] = s->iv[k];
		quic_sni_put_be32(&s->aes_in[12], blk + 2);
		quic_sni_aes128_block(s);
		for (k = 0; k < 16; k++)
			s->b[(dec + k) & QUIC_SNI_PKT_MASK] ^= s->aes_out[k];
		s->dec = dec + 16;
	}
	return 0;
}

/* Copy cp_len bytes b[cp_src..] -> reassembly area at cp_dst: 8 at a time, then the tail byte
 * by byte (fragments arrive in any order, so nothing past the end may be touched). */
QUIC_SNI_SUBPROG int quic_sni_copy(struct quic_sni_scratch *s)
{
	__u32 src, dst, len, o;
	int i;

	if (!s)
		return -1;
	src = s->cp_src;
	dst = s->cp_dst;
	len = s->cp_len;
	for (i = 0; i < QUIC_SNI_REASM_CAP / 8; i++) {
		o = i * 8;
		if (o + 8 > len)
			break;
		__builtin_memcpy(&s->b[QUIC_SNI_REASM_OFF + ((dst + o) & QUIC_SNI_PKT_MASK)],
				 &s->b[(src + o) & QUIC_SNI_PKT_MASK], 8);
	}
	o = len & ~7u;
	for (i = 0; i < 7; i++) {
		if (o + i >= len)
			break;
		QUIC_SNI_RB(s, dst + o + i) = QUIC_SNI_PB(s, src + o + i);
	}
	return 0;
}

/* Copy server_name b[REASM+name_pos..+name_len) to s->sni, lowercased, NUL-terminated; host name
 * characters only. */
QUIC_SNI_SUBPROG int quic_sni_copy_name(struct quic_sni_scratch *s)
{
	__u32 pos, len;
	int i;

	if (!s)
		return -QUIC_SNI_E_INTERNAL;
	pos = s->name_pos;
	len = s->name_len;
	if (len == 0)
		return -QUIC_SNI_E_NAME;
	if (len >= QUIC_SNI_MAX)
		return -QUIC_SNI_E_TOO_LONG;
	for (i = 0; i < QUIC_SNI_MAX; i++)
		s->sni[i] = 0;
	for (i = 0; i < QUIC_SNI_MAX - 1; i++) {
		__u8 c;

		if ((__u32)i >= len)
			break;
		c = QUIC_SNI_RB(s, pos + i);
		if (c >= 'A' && c <= 'Z')
			c |= 0x20;
		/* RFC 6066: an ASCII host name (IDNs as A-labels); '_' is seen in the wild */
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
			return -QUIC_SNI_E_NAME;
		s->sni[i] = c;
	}
	return len;
}

/* Parse the ClientHello prefix b[REASM..REASM+prefix) (RFC 8446 §4.1.2) up to server_name.
 * Returns SNI length, 0 (complete, no server_name), QUIC_SNI__MORE, or -QUIC_SNI_E_*. */
QUIC_SNI_SUBPROG int quic_sni_parse_ch(struct quic_sni_scratch *s)
{
	__u32 avail, ch_end, ext_end, p, n;
	int i;

	if (!s)
		return -QUIC_SNI_E_INTERNAL;
	avail = s->prefix;
	if (avail < 4)
		return QUIC_SNI__MORE;
	if (QUIC_SNI_RB(s, 0) != 1) /* handshake type client_hello */
		return -QUIC_SNI_E_TLS;
	ch_end = 4 + (((__u32)QUIC_SNI_RB(s, 1) << 16) | ((__u32)QUIC_SNI_RB(s, 2) << 8) |
		      QUIC_SNI_RB(s, 3));
	p = 4 + 2 + 32; /* legacy_version, random */
	if (p + 1 > avail)
		return QUIC_SNI__MORE;
	n = QUIC_SNI_RB(s, p); /* legacy_session_id */
	if (n > 32)
		return -QUIC_SNI_E_TLS;
	p += 1 + n;
	if (p + 2 > avail)
		return QUIC_SNI__MORE;
	n = ((__u32)QUIC_SNI_RB(s, p) << 8) | QUIC_SNI_RB(s, p + 1); /* cipher_suites */
	p += 2 + n;
	if (p + 1 > avail)
		return p > ch_end ? -QUIC_SNI_E_TLS : QUIC_SNI__MORE;
	n = QUIC_SNI_RB(s, p); /* legacy_compression_methods */
	p += 1 + n;
	if (p + 2 > avail)
		return p > ch_end ? -QUIC_SNI_E_TLS : QUIC_SNI__MORE;
	n = ((__u32)QUIC_SNI_RB(s, p) << 8) | QUIC_SNI_RB(s, p + 1); /* extensions length */
	p += 2;
	ext_end = p + n;
	if (ext_end > ch_end)
		return -QUIC_SNI_E_TLS;
	for (i = 0; i < QUIC_SNI_MAX_EXTS; i++) {
		__u32 type, len;

		if (p + 4 > ext_end)
			return p == ext_end ? 0 : -QUIC_SNI_E_TLS;
		if (p + 4 > avail)
			return QUIC_SNI__MORE;
		type = ((__u32)QUIC_SNI_RB(s, p) << 8) | QUIC_SNI_RB(s, p + 1);
		len = ((__u32)QUIC_SNI_RB(s, p + 2) << 8) | QUIC_SNI_RB(s, p + 3);
		p += 4;
		if (p + len > ext_end)
			return -QUIC_SNI_E_TLS;
		if (type == 0) {
			/* ServerNameList: u16 list length, then name_type 0 (host_name), u16 length, name */
			if (p + len > avail)
				return QUIC_SNI__MORE;
			if (len < 5 || QUIC_SNI_RB(s, p + 2) != 0)
				return -QUIC_SNI_E_TLS;
			n = ((__u32)QUIC_SNI_RB(s, p + 3) << 8) | QUIC_SNI_RB(s, p + 4);
			if (5 + n > len)
				return -QUIC_SNI_E_TLS;
			s->name_pos = p + 5;
			s->name_len = n;
			return quic_sni_copy_name(s);
		}
		p += len;
	}
	return -QUIC_SNI_E_TLS;
}

/* One step of reassembly: fragment i % nfrag extends the contiguous prefix if it starts inside it.
 * A whole pass over the fragments without growth ends the loop. */
static long quic_sni_assemble_cb(__u32 i, void *ctx)
{
	struct quic_sni_scratch *s = ((struct quic_sni_cbctx *)ctx)->s;
	struct quic_sni_frag *f;
	__u32 idx, prefix, end;

	if (!s || s->nfrag == 0 || s->nfrag > QUIC_SNI_MAX_FRAGS)
		return 1;
	idx = i % s->nfrag;
	if (idx == 0) {
		if (i > 0 && !s->grew)
			return 1;
		s->grew = 0;
	}
	QUIC_SNI_OPAQUE(idx); /* keep the mask: clang drops it (idx < nfrag <= 32), the verifier needs it */
	f = &s->frag[idx & (QUIC_SNI_MAX_FRAGS - 1)];
	prefix = s->prefix;
	end = (__u32)f->off + f->len;
	if (f->off > prefix || end <= prefix)
		return 0;
	s->prefix = end; /* its bytes are already in the reassembly area */
	s->grew = 1;
	return 0;
}

/* Grow the contiguous CRYPTO prefix from the fragments seen so far and re-parse if it grew. */
QUIC_SNI_SUBPROG int quic_sni_assemble(struct quic_sni_scratch *s)
{
	struct quic_sni_cbctx cb = { .s = s };
	__u32 before;

	if (!s)
		return -QUIC_SNI_E_INTERNAL;
	before = s->prefix;
	s->grew = 0;
	/* nfrag passes over the nfrag fragments, or fewer (a pass without growth ends it) */
	quic_sni_loop(s->nfrag * s->nfrag, quic_sni_assemble_cb, &cb);
	if (s->prefix != before)
		s->result = quic_sni_parse_ch(s);
	return 0;
}

/* One frame (or up to 8 bytes of PADDING, or one ACK field) per call. */
static long quic_sni_walk_cb(__u32 i, void *ctx)
{
	struct quic_sni_scratch *s = ((struct quic_sni_cbctx *)ctx)->s;
	__u32 pos, end, type, vl1, vl2, data;
	__u64 v1, v2;

	(void)i;
	if (!s)
		return 1;
	pos = s->pos;
	end = s->pt_end;
	if (pos >= end)
		return 1;
	s->want = pos + 40; /* largest fixed part: ACK type + 4 varints of up to 8 bytes */
	quic_sni_decrypt(s);

	if (s->skip_varints) { /* inside an ACK frame */
		quic_sni_varint(s, pos, &vl1);
		s->skip_varints--;
		s->pos = pos + vl1;
		if (pos + vl1 > end)
			goto bad;
		return 0;
	}

	type = QUIC_SNI_PB(s, pos);
	if (type == 0x00) { /* PADDING: skip 8 zero bytes at once when possible */
		__u64 w = 0;
		int k;

		if (pos + 8 <= end) {
			for (k = 1; k < 8; k++)
				w |= QUIC_SNI_PB(s, pos + k);
			s->pos = pos + (w ? 1 : 8);
		} else {
			s->pos = pos + 1;
		}
		return 0;
	}
	if (type == 0x01) { /* PING */
		s->pos = pos + 1;
		return 0;
	}
	if (type == 0x02 || type == 0x03) { /* ACK: largest, delay, range count, first range, ... */
		__u32 a, b, c, d;

		quic_sni_varint(s, pos + 1, &a);
		quic_sni_varint(s, pos + 1 + a, &b);
		v1 = quic_sni_varint(s, pos + 1 + a + b, &c);
		quic_sni_varint(s, pos + 1 + a + b + c, &d);
		if (v1 > 64)
			goto bad;
		s->skip_varints = 2 * v1 + (type == 0x03 ? 3 : 0);
		s->pos = pos + 1 + a + b + c + d;
		if (s->pos > end)
			goto bad;
		return 0;
	}
	if (type != 0x06) /* only CRYPTO remains legal before the ClientHello is found */
		goto bad;

	v1 = quic_sni_varint(s, pos + 1, &vl1);           /* offset */
	v2 = quic_sni_varint(s, pos + 1 + vl1, &vl2);     /* length */
	data = pos + 1 + vl1 + vl2;
	if (data > end)
		goto bad;
	if (v2 > end - data) {
		if (!s->clipped) /* frame runs past the packet */
			goto bad;
		v2 = end - data; /* packet continues beyond the bytes we were given */
	}
	s->pos = data + v2;
	s->want = data + v2;
	quic_sni_decrypt(s);
	if (v1 < QUIC_SNI_REASM_CAP && s->nfrag < QUIC_SNI_MAX_FRAGS) {
		struct quic_sni_frag *f = &s->frag[s->nfrag & (QUIC_SNI_MAX_FRAGS - 1)];
		__u32 len = v2;

		if (v1 + len > QUIC_SNI_REASM_CAP)
			len = QUIC_SNI_REASM_CAP - v1;
		f->off = v1;
		f->len = len;
		f->pos = data;
		s->nfrag++;
		if (v1 + len > s->crypto_end)
			s->crypto_end = v1 + len;
		s->cp_src = data;
		s->cp_dst = v1;
		s->cp_len = len;
		quic_sni_copy(s);
		if (v1 <= s->prefix) {
			quic_sni_assemble(s);
			if (s->result != QUIC_SNI__MORE)
				return 1;
		}
	}
	return 0;
bad:
	s->result = -QUIC_SNI_E_FRAME;
	return 1;
}

/* One step of the coverage check of [cov, cov_end): fragment i % nfrag moves the cursor past it
 * if it contains it. Three passes suffice: an extension of <= 258 bytes spans few fragments. */
static long quic_sni_cover_cb(__u32 i, void *ctx)
{
	struct quic_sni_scratch *s = ((struct quic_sni_cbctx *)ctx)->s;
	struct quic_sni_frag *f;
	__u32 k, cur, fend;

	if (!s || s->nfrag == 0 || s->nfrag > QUIC_SNI_MAX_FRAGS)
		return 1;
	cur = s->cov;
	if (cur >= s->cov_end)
		return 1;
	k = i % s->nfrag;
	QUIC_SNI_OPAQUE(k);
	f = &s->frag[k & (QUIC_SNI_MAX_FRAGS - 1)];
	fend = (__u32)f->off + f->len;
	if (f->off <= cur && cur < fend)
		s->cov = fend;
	return 0;
}

/* Are CRYPTO bytes [x, end) all present in this datagram (possibly over adjacent fragments)?
 * Bytes elsewhere in the reassembly area are stale data from earlier datagrams. */
static __always_inline int quic_sni_covered(struct quic_sni_scratch *s, __u32 x, __u32 end)
{
	struct quic_sni_cbctx cb = { .s = s };

	s->cov = x;
	s->cov_end = end;
	quic_sni_loop(3 * s->nfrag, quic_sni_cover_cb, &cb);
	return s->cov >= end;
}

/* Does a server_name extension start at reassembly offset s->scan_pos? Checks the four nested
 * lengths (ext = list + 2 = name + 5), host_name type, hostname characters and that all its bytes
 * are in this datagram. Returns SNI length / -QUIC_SNI_E_TOO_LONG, or 0 if not. */
QUIC_SNI_SUBPROG int quic_sni_sni_at(struct quic_sni_scratch *s)
{
	__u32 x, ext, list, n;
	int r;

	if (!s)
		return 0;
	x = s->scan_pos;
	if (QUIC_SNI_RB(s, x) != 0 || QUIC_SNI_RB(s, x + 1) != 0 || QUIC_SNI_RB(s, x + 6) != 0)
		return 0;
	ext = ((__u32)QUIC_SNI_RB(s, x + 2) << 8) | QUIC_SNI_RB(s, x + 3);
	list = ((__u32)QUIC_SNI_RB(s, x + 4) << 8) | QUIC_SNI_RB(s, x + 5);
	n = ((__u32)QUIC_SNI_RB(s, x + 7) << 8) | QUIC_SNI_RB(s, x + 8);
	if (n == 0 || n > 253 || list != n + 3 || ext != n + 5)
		return 0;
	if (!quic_sni_covered(s, x, x + 9 + n))
		return 0;
	s->name_pos = x + 9;
	s->name_len = n;
	r = quic_sni_copy_name(s);
	/* not host name characters: random bytes that looked like an extension header, go on */
	return r == -QUIC_SNI_E_NAME ? 0 : r;
}

/* Fallback scan, 8 positions per call, fragment by fragment: look for a server_name extension
 * anywhere in the CRYPTO bytes of this datagram. Eight bytes without a zero byte cannot hold the
 * start of one (its type is 0x0000), which skips most of the data quickly. */
static long quic_sni_scan_cb(__u32 i, void *ctx)
{
	struct quic_sni_scratch *s = ((struct quic_sni_cbctx *)ctx)->s;
	struct quic_sni_frag *f;
	__u32 x, k, fend, idx;
	__u8 no_zero = 1;

	(void)i;
	if (!s)
		return 1;
	idx = s->scan_frag;
	if (idx >= s->nfrag || idx >= QUIC_SNI_MAX_FRAGS)
		return 1;
	f = &s->frag[idx & (QUIC_SNI_MAX_FRAGS - 1)];
	fend = (__u32)f->off + f->len;
	x = s->scan_pos;
	if (x < f->off)
		x = f->off;
	if (x < 4 + 2 + 32) /* nothing before legacy_session_id can be an extension */
		x = 4 + 2 + 32;
	if (x >= fend) {
		s->scan_frag = idx + 1;
		s->scan_pos = 0;
		return 0;
	}
	for (k = 0; k < 8; k++)
		no_zero &= QUIC_SNI_RB(s, x + k) != 0;
	if (!no_zero) {
		for (k = 0; k < 8; k++) {
			int r;

			if (x + k >= fend)
				break;
			if (QUIC_SNI_RB(s, x + k) != 0 || QUIC_SNI_RB(s, x + k + 1) != 0)
				continue;
			s->scan_pos = x + k;
			r = quic_sni_sni_at(s);
			if (r != 0) {
				s->result = r;
				return 1;
			}
		}
	}
	s->scan_pos = x + 8;
	return 0;
}

/* Header, keys, header protection, then the frame walk. s->b/len/dgram_len are filled. */
QUIC_SNI_SUBPROG int quic_sni_run(struct quic_sni_scratch *s)
{
	struct quic_sni_cbctx cb = { .s = s };
	__u32 len, p, dcid_len, scid_len, vl, pn_off, pkt_end, pn_len, pn;
	__u64 tok_len, length;
	__u8 b0;
	int k;

	if (!s)
		return -QUIC_SNI_E_INTERNAL;
	len = s->len;
	if (len > QUIC_SNI_SCAN_BYTES)
		return -QUIC_SNI_E_INTERNAL;
	if (len < 7)
		return -QUIC_SNI_E_SHORT;
	b0 = s->b[0];
	if ((b0 & 0xc0) != 0xc0)
		return -QUIC_SNI_E_NOT_INITIAL;
	if (quic_sni_be32(&s->b[1]) != 1)
		return -QUIC_SNI_E_VERSION;
	if (b0 & 0x30)
		return -QUIC_SNI_E_NOT_INITIAL;
	dcid_len = s->b[5];
	if (dcid_len > 20)
		return -QUIC_SNI_E_CID;
	p = 6 + dcid_len;
	if (p + 1 > len)
		return -QUIC_SNI_E_SHORT;
	scid_len = s->b[p];
	if (scid_len > 20)
		return -QUIC_SNI_E_CID;
	p += 1 + scid_len;
	if (p + 1 > len)
		return -QUIC_SNI_E_SHORT;
	tok_len = quic_sni_varint(s, p, &vl);
	p += vl;
	if (tok_len > len || p + tok_len > len)
		return -QUIC_SNI_E_SHORT;
	p += tok_len;
	if (p + 1 > len)
		return -QUIC_SNI_E_SHORT;
	length = quic_sni_varint(s, p, &vl);
	p += vl;
	pn_off = p;
	/* the header-protection sample starts 4 bytes after the packet number offset */
	if (pn_off + 4 + 16 > len || length < 4 + 16 || length > s->dgram_len)
		return -QUIC_SNI_E_SHORT;
	pkt_end = pn_off + length;
	if (pkt_end > s->dgram_len)
		return -QUIC_SNI_E_SHORT;

	quic_sni_derive(s);

	/* header protection (RFC 9001 §5.4): mask = AES(hp_key, sample) */
	for (k = 0; k < 16; k++) {
		s->aes_key[k] = s->hp_key[k];
		s->aes_in[k] = QUIC_SNI_PB(s, pn_off + 4 + k);
	}
	quic_sni_aes128_expand(s);
	quic_sni_aes128_block(s);
	b0 ^= s->aes_out[0] & 0x0f;
	if (b0 & 0x0c) /* reserved bits must be 0: wrong keys or not a QUIC packet */
		return -QUIC_SNI_E_FRAME;
	pn_len = (b0 & 3) + 1;
	pn = 0;
	for (k = 0; k < 4; k++) {
		/* fold in byte k iff k < pn_len, without branching on pn_len */
		__u32 keep = (__u32)((__s32)(k - (__s32)pn_len) >> 31);
		__u32 byte = QUIC_SNI_PB(s, pn_off + k) ^ s->aes_out[1 + k];

		pn = (pn & ~keep) | (((pn << 8) | byte) & keep);
	}
	/* nonce = iv ^ packet number (left-padded to 12 bytes) */
	s->iv[8] ^= pn >> 24;
	s->iv[9] ^= pn >> 16;
	s->iv[10] ^= pn >> 8;
	s->iv[11] ^= pn;
	for (k = 0; k < 16; k++)
		s->aes_key[k] = s->pkt_key[k];
	quic_sni_aes128_expand(s);

	s->pay = pn_off + pn_len;
	s->dec = s->pay;
	s->clipped = pkt_end - 16 > len;
	s->pt_end = s->clipped ? len : pkt_end - 16;
	if (s->pay >= s->pt_end)
		return -QUIC_SNI_E_SHORT;
	s->pos = s->pay;
	s->skip_varints = 0;
	s->nfrag = 0;
	s->prefix = 0;
	s->result = QUIC_SNI__MORE;
	s->crypto_end = 0;
	quic_sni_loop(QUIC_SNI_SCAN_BYTES, quic_sni_walk_cb, &cb);
	/* Chrome spreads its ClientHello over two datagrams in random pieces: this one may hold
	 * server_name although the bytes before it are in the other. Only when this datagram starts
	 * the ClientHello (the CH parse said "need more"), scan its fragments for the extension. */
	if (s->result == QUIC_SNI__MORE && s->prefix >= 4) {
		s->scan_frag = 0;
		s->scan_pos = 0;
		quic_sni_loop(QUIC_SNI_SCAN_BYTES / 8 + 2 * QUIC_SNI_MAX_FRAGS, quic_sni_scan_cb, &cb);
	}
	return s->result == QUIC_SNI__MORE ? 0 : s->result;
}

static __always_inline int quic_initial_sni(const __u8 *buf, __u32 len, char sni_out[QUIC_SNI_MAX])
{
	struct quic_sni_scratch *s;
	__u32 zero = 0;
	int r;

	sni_out[0] = 0;
	/* cheap reject before touching the scratch: long header with fixed bit, version 1 */
	if (len < 7 || (buf[0] & 0xc0) != 0xc0)
		return len < 7 ? -QUIC_SNI_E_SHORT : -QUIC_SNI_E_NOT_INITIAL;
	if (buf[1] != 0 || buf[2] != 0 || buf[3] != 0 || buf[4] != 1)
		return -QUIC_SNI_E_VERSION;
#if defined(__bpf__)
	s = bpf_map_lookup_elem(&quic_sni_scratch, &zero);
	if (!s)
		return -QUIC_SNI_E_INTERNAL;
#else
	(void)zero;
	s = &quic_sni_scratch_mem;
#endif
	/* constant-size copies (clang expands them inline; one 1280-byte copy would be too big) */
	__builtin_memcpy(&s->b[0], buf, QUIC_SNI_SCAN_BYTES / 4);
	__builtin_memcpy(&s->b[QUIC_SNI_SCAN_BYTES / 4], buf + QUIC_SNI_SCAN_BYTES / 4, QUIC_SNI_SCAN_BYTES / 4);
	__builtin_memcpy(&s->b[QUIC_SNI_SCAN_BYTES / 2], buf + QUIC_SNI_SCAN_BYTES / 2, QUIC_SNI_SCAN_BYTES / 4);
	__builtin_memcpy(&s->b[3 * QUIC_SNI_SCAN_BYTES / 4], buf + 3 * QUIC_SNI_SCAN_BYTES / 4,
			 QUIC_SNI_SCAN_BYTES / 4);
	s->dgram_len = len;
	s->len = len < QUIC_SNI_SCAN_BYTES ? len : QUIC_SNI_SCAN_BYTES;
	r = quic_sni_run(s);
	if (r > 0 && r < QUIC_SNI_MAX)
		__builtin_memcpy(sni_out, s->sni, QUIC_SNI_MAX);
	return r;
}

#endif /* QUIC_SNI_H */
