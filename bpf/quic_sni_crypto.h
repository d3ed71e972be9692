/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SHA-256 / HMAC-SHA256 and AES-128 (encrypt direction only) for quic_sni.h, written to pass the
 * BPF verifier: every primitive is a QUIC_SNI_SUBPROG working on the per-CPU scratch struct, so
 * in BPF it is a *global* function the verifier checks once, whatever the number of call sites.
 * Not constant-time (table AES): the inputs are public (Initial keys derive from the DCID on the wire).
 *
 * Included by quic_sni.h, which defines struct quic_sni_scratch before including this file.
 */
#ifndef QUIC_SNI_CRYPTO_H
#define QUIC_SNI_CRYPTO_H

#include "quic_sni_tables.h"

/*
 * Copy loops from the constant tables go through QUIC_SNI_OPAQUE(ptr): clang 14's BPF backend,
 * given a memcpy from a constant global (which a copy loop becomes), emits the constant stores
 * but silently DROPS stores made just before it to the same object (seen here: the SHA-256
 * message block vanished before the compression call). An opaque source pointer avoids that path.
 */
#if defined(__bpf__)
#define QUIC_SNI_OPAQUE(p) asm volatile("" : "+r"(p))
#else
#define QUIC_SNI_OPAQUE(p) ((void)0)
#endif

#define QUIC_SNI_ROR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static __always_inline __u32 quic_sni_be32(const __u8 *p)
{
	return ((__u32)p[0] << 24) | ((__u32)p[1] << 16) | ((__u32)p[2] << 8) | (__u32)p[3];
}

static __always_inline void quic_sni_put_be32(__u8 *p, __u32 v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/* x rotated right by n1, n2, n3, XORed: a 32-bit rotation is one shift of x:x (x doubled into a
 * 64-bit word), which saves the zero-extension and OR a BPF rotate otherwise costs. */
static __always_inline __u32 quic_sni_rot3(__u32 x, int n1, int n2, int n3)
{
	__u64 y = (__u64)x | ((__u64)x << 32);

	return (__u32)((y >> n1) ^ (y >> n2) ^ (y >> n3));
}

static __always_inline __u32 quic_sni_rot2_shr(__u32 x, int n1, int n2, int n3)
{
	__u64 y = (__u64)x | ((__u64)x << 32);

	return (__u32)((y >> n1) ^ (y >> n2)) ^ (x >> n3);
}

/* One SHA-256 round with the working variables renamed instead of shifted (8 rounds per loop). */
#define QUIC_SNI_SHA_ROUND(a, b, c, d, e, f, g, h, i)                                        \
	do {                                                                               \
		__u32 t1 = h + quic_sni_rot3(e, 6, 11, 25) + (g ^ (e & (f ^ g))) +           \
			   quic_sni_sha256_k[i] + w[i];                                     \
		__u32 t2 = quic_sni_rot3(a, 2, 13, 22) + ((a & b) | (c & (a | b)));          \
		d += t1;                                                                   \
		h = t1 + t2;                                                               \
	} while (0)

/* SHA-256 compression of s->sha.block into s->sha.h (FIPS 180-4 §6.2.2). */
QUIC_SNI_SUBPROG int quic_sni_sha256_compress(struct quic_sni_scratch *s)
{
	__u32 a, b, c, d, e, f, g, h, *w;
	int i;

	if (!s)
		return -1;
	w = s->sha.w;
	for (i = 0; i < 16; i++)
		w[i] = quic_sni_be32(&s->sha.block[i * 4]);
	for (i = 16; i < 64; i++)
		w[i] = w[i - 16] + quic_sni_rot2_shr(w[i - 15], 7, 18, 3) + w[i - 7] +
		       quic_sni_rot2_shr(w[i - 2], 17, 19, 10);
	a = s->sha.h[0]; b = s->sha.h[1]; c = s->sha.h[2]; d = s->sha.h[3];
	e = s->sha.h[4]; f = s->sha.h[5]; g = s->sha.h[6]; h = s->sha.h[7];
	for (i = 0; i < 64; i += 8) {
		QUIC_SNI_SHA_ROUND(a, b, c, d, e, f, g, h, i);
		QUIC_SNI_SHA_ROUND(h, a, b, c, d, e, f, g, i + 1);
		QUIC_SNI_SHA_ROUND(g, h, a, b, c, d, e, f, i + 2);
		QUIC_SNI_SHA_ROUND(f, g, h, a, b, c, d, e, i + 3);
		QUIC_SNI_SHA_ROUND(e, f, g, h, a, b, c, d, i + 4);
		QUIC_SNI_SHA_ROUND(d, e, f, g, h, a, b, c, i + 5);
		QUIC_SNI_SHA_ROUND(c, d, e, f, g, h, a, b, i + 6);
		QUIC_SNI_SHA_ROUND(b, c, d, e, f, g, h, a, i + 7);
	}
	s->sha.h[0] += a; s->sha.h[1] += b; s->sha.h[2] += c; s->sha.h[3] += d;
	s->sha.h[4] += e; s->sha.h[5] += f; s->sha.h[6] += g; s->sha.h[7] += h;
	return 0;
}

/*
 * HMAC-SHA256 key setup (RFC 2104): from s->hmac_key (32 bytes, zero-padded; keys here are the
 * 20-byte v1 salt or a 32-byte secret) compute the hash states after the ipad and opad blocks, so
 * several messages under one key cost two compressions each.
 */
QUIC_SNI_SUBPROG int quic_sni_hmac_setkey(struct quic_sni_scratch *s)
{
	const __u32 *iv = quic_sni_hash_consts.sha256_iv;
	int i;

	QUIC_SNI_OPAQUE(iv);
	if (!s)
		return -1;
	for (i = 0; i < 8; i++)
		s->sha.h[i] = iv[i];
	for (i = 0; i < 64; i++)
		s->sha.block[i] = (i < 32 ? s->hmac_key[i] : 0) ^ 0x36;
	quic_sni_sha256_compress(s);
	for (i = 0; i < 8; i++) {
		s->hmac_ipad[i] = s->sha.h[i];
		s->sha.h[i] = iv[i];
	}
	for (i = 0; i < 64; i++)
		s->sha.block[i] = (i < 32 ? s->hmac_key[i] : 0) ^ 0x5c;
	quic_sni_sha256_compress(s);
	for (i = 0; i < 8; i++)
		s->hmac_opad[i] = s->sha.h[i];
	return 0;
}

/* Final SHA-256 block for a message of 64 + len bytes whose last len (<= 55) bytes are in block[]. */
static __always_inline void quic_sni_sha256_pad(struct quic_sni_sha256 *c, __u32 len)
{
	__u32 bits = (64 + len) * 8;

	c->block[len & 63] = 0x80;
	quic_sni_put_be32(&c->block[56], 0);
	quic_sni_put_be32(&c->block[60], bits);
}

/*
 * HMAC-SHA256(key set by quic_sni_hmac_setkey, s->hmac_msg[0..s->hmac_msg_len)) -> s->hmac_out.
 * hmac_msg must be zero beyond hmac_msg_len (callers fill all 56 bytes); hmac_msg_len <= 55.
 */
QUIC_SNI_SUBPROG int quic_sni_hmac(struct quic_sni_scratch *s)
{
	__u32 len;
	int i;

	if (!s)
		return -1;
	len = s->hmac_msg_len;
	if (len > 55)
		return -1;
	/* inner hash: H(K^ipad || msg) */
	for (i = 0; i < 8; i++)
		s->sha.h[i] = s->hmac_ipad[i];
	for (i = 0; i < 56; i++)
		s->sha.block[i] = s->hmac_msg[i];
	quic_sni_sha256_pad(&s->sha, len);
	quic_sni_sha256_compress(s);
	/* outer hash: H(K^opad || inner) */
	for (i = 0; i < 8; i++) {
		quic_sni_put_be32(&s->sha.block[i * 4], s->sha.h[i]);
		s->sha.h[i] = s->hmac_opad[i];
	}
	for (i = 32; i < 56; i++)
		s->sha.block[i] = 0;
	quic_sni_sha256_pad(&s->sha, 32);
	quic_sni_sha256_compress(s);
	for (i = 0; i < 8; i++)
		quic_sni_put_be32(&s->hmac_out[i * 4], s->sha.h[i]);
	return 0;
}

/* AES-128 key expansion (FIPS-197 §5.2): s->aes_key -> s->aes_rk. */
QUIC_SNI_SUBPROG int quic_sni_aes128_expand(struct quic_sni_scratch *s)
{
	__u32 rcon = 0x01000000;
	int i;

	if (!s)
		return -1;
	for (i = 0; i < 4; i++)
		s->aes_rk[i] = quic_sni_be32(&s->aes_key[i * 4]);
	for (i = 4; i < 44; i += 4) {
		__u32 t = s->aes_rk[i - 1];

		/* SubWord(RotWord(t)) ^ Rcon */
		t = ((__u32)quic_sni_aes_sbox[(t >> 16) & 0xff] << 24) |
		    ((__u32)quic_sni_aes_sbox[(t >> 8) & 0xff] << 16) |
		    ((__u32)quic_sni_aes_sbox[t & 0xff] << 8) |
		    (__u32)quic_sni_aes_sbox[t >> 24];
		t ^= rcon;
		rcon = (rcon << 1) ^ ((rcon & 0x80000000) ? 0x1b000000 : 0);
		s->aes_rk[i] = s->aes_rk[i - 4] ^ t;
		s->aes_rk[i + 1] = s->aes_rk[i - 3] ^ s->aes_rk[i];
		s->aes_rk[i + 2] = s->aes_rk[i - 2] ^ s->aes_rk[i + 1];
		s->aes_rk[i + 3] = s->aes_rk[i - 1] ^ s->aes_rk[i + 2];
	}
	return 0;
}

#define QUIC_SNI_TE0(x) quic_sni_aes_te0[(x) & 0xff]
#define QUIC_SNI_TE1(x) quic_sni_aes_te1[(x) & 0xff]
#define QUIC_SNI_TE2(x) quic_sni_aes_te2[(x) & 0xff]
#define QUIC_SNI_TE3(x) quic_sni_aes_te3[(x) & 0xff]

/* One AES-128 block: s->aes_in -> s->aes_out under s->aes_rk (T-table form, 4 x 1 KiB tables). */
QUIC_SNI_SUBPROG int quic_sni_aes128_block(struct quic_sni_scratch *s)
{
	__u32 s0, s1, s2, s3, t0, t1, t2, t3;
	const __u32 *rk;
	int r;

	if (!s)
		return -1;
	rk = s->aes_rk;
	s0 = quic_sni_be32(&s->aes_in[0]) ^ rk[0];
	s1 = quic_sni_be32(&s->aes_in[4]) ^ rk[1];
	s2 = quic_sni_be32(&s->aes_in[8]) ^ rk[2];
	s3 = quic_sni_be32(&s->aes_in[12]) ^ rk[3];
	for (r = 1; r < 10; r++) {
		t0 = QUIC_SNI_TE0(s0 >> 24) ^ QUIC_SNI_TE1(s1 >> 16) ^ QUIC_SNI_TE2(s2 >> 8) ^
		     QUIC_SNI_TE3(s3) ^ rk[r * 4];
		t1 = QUIC_SNI_TE0(s1 >> 24) ^ QUIC_SNI_TE1(s2 >> 16) ^ QUIC_SNI_TE2(s3 >> 8) ^
		     QUIC_SNI_TE3(s0) ^ rk[r * 4 + 1];
		t2 = QUIC_SNI_TE0(s2 >> 24) ^ QUIC_SNI_TE1(s3 >> 16) ^ QUIC_SNI_TE2(s0 >> 8) ^
		     QUIC_SNI_TE3(s1) ^ rk[r * 4 + 2];
		t3 = QUIC_SNI_TE0(s3 >> 24) ^ QUIC_SNI_TE1(s0 >> 16) ^ QUIC_SNI_TE2(s1 >> 8) ^
		     QUIC_SNI_TE3(s2) ^ rk[r * 4 + 3];
		s0 = t0; s1 = t1; s2 = t2; s3 = t3;
	}
#define QUIC_SNI_SB(x, sh) ((__u32)quic_sni_aes_sbox[((x) >> (sh)) & 0xff] << (sh))
	t0 = QUIC_SNI_SB(s0, 24) | QUIC_SNI_SB(s1, 16) | QUIC_SNI_SB(s2, 8) | QUIC_SNI_SB(s3, 0);
	t1 = QUIC_SNI_SB(s1, 24) | QUIC_SNI_SB(s2, 16) | QUIC_SNI_SB(s3, 8) | QUIC_SNI_SB(s0, 0);
	t2 = QUIC_SNI_SB(s2, 24) | QUIC_SNI_SB(s3, 16) | QUIC_SNI_SB(s0, 8) | QUIC_SNI_SB(s1, 0);
	t3 = QUIC_SNI_SB(s3, 24) | QUIC_SNI_SB(s0, 16) | QUIC_SNI_SB(s1, 8) | QUIC_SNI_SB(s2, 0);
#undef QUIC_SNI_SB
	quic_sni_put_be32(&s->aes_out[0], t0 ^ rk[40]);
	quic_sni_put_be32(&s->aes_out[4], t1 ^ rk[41]);
	quic_sni_put_be32(&s->aes_out[8], t2 ^ rk[42]);
	quic_sni_put_be32(&s->aes_out[12], t3 ^ rk[43]);
	return 0;
}

#endif /* QUIC_SNI_CRYPTO_H */
