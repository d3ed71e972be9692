// SPDX-License-Identifier: Apache-2.0
/*
 * Test harness for quic_sni.h under the real verifier.
 *  - xdp program: BPF_PROG_TEST_RUN input = 14 filler bytes (an Ethernet header's worth) + one
 *    UDP payload; copies the payload into a per-CPU buffer as the sk_reuseport program will and
 *    stores quic_initial_sni()'s result in map sni_test_result.
 *  - sk_reuseport program: same call from the program type that will use it (not runnable by
 *    BPF_PROG_TEST_RUN; loading it proves that the verifier accepts it there).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../quic_sni.h"

#define ETH_FILLER 14
#define UDP_HDR 8

struct sni_test_input {
	__u8 b[QUIC_SNI_SCAN_BYTES];
};

struct sni_test_result {
	__s32 ret;
	__u32 calls;
	char sni[QUIC_SNI_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sni_test_input);
} sni_test_input SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2); /* 0: xdp, 1: sk_reuseport */
	__type(key, __u32);
	__type(value, struct sni_test_result);
} sni_test_result SEC(".maps");

/* min(len, QUIC_SNI_SCAN_BYTES) in a form the verifier can bound for the helper's size argument:
 * the empty asm statements keep clang 14 from merging the two tests into one subtract-and-compare
 * on a copy of the register (which leaves the helper's register unbounded). */
static __always_inline __u64 scan_len(__u32 len)
{
	__u64 copy = len;

	if (copy > QUIC_SNI_SCAN_BYTES)
		copy = QUIC_SNI_SCAN_BYTES;
	asm volatile("" : "+r"(copy));
	if (copy > QUIC_SNI_SCAN_BYTES)
		return 0;
	asm volatile("" : "+r"(copy));
	return copy;
}

static __always_inline void record(__u32 slot, int ret, const char *sni)
{
	struct sni_test_result *res = bpf_map_lookup_elem(&sni_test_result, &slot);

	if (!res)
		return;
	res->ret = ret;
	res->calls++;
	__builtin_memcpy(res->sni, sni, QUIC_SNI_MAX);
}

SEC("xdp")
int sni_test_xdp(struct xdp_md *ctx)
{
	__u32 zero = 0, len;
	__u64 copy;
	struct sni_test_input *in;
	char sni[QUIC_SNI_MAX];
	int ret;

	len = ctx->data_end - ctx->data;
	if (len < ETH_FILLER)
		return XDP_PASS;
	len -= ETH_FILLER;
	in = bpf_map_lookup_elem(&sni_test_input, &zero);
	if (!in)
		return XDP_PASS;
	copy = scan_len(len);
	if (copy > 0 && bpf_xdp_load_bytes(ctx, ETH_FILLER, in->b, copy) < 0)
		return XDP_PASS;
	ret = quic_initial_sni(in->b, len, sni);
	record(0, ret, sni);
	return XDP_PASS;
}

SEC("sk_reuseport")
int sni_test_reuseport(struct sk_reuseport_md *md)
{
	__u32 zero = 0, len;
	__u64 copy;
	struct sni_test_input *in;
	char sni[QUIC_SNI_MAX];
	int ret;

	len = md->len; /* skb->len: UDP header + payload */
	if (len < UDP_HDR)
		return SK_PASS;
	len -= UDP_HDR;
	in = bpf_map_lookup_elem(&sni_test_input, &zero);
	if (!in)
		return SK_PASS;
	copy = scan_len(len);
	if (copy > 0 && bpf_skb_load_bytes(md, UDP_HDR, in->b, copy) < 0)
		return SK_PASS;
	ret = quic_initial_sni(in->b, len, sni);
	record(1, ret, sni);
	return SK_PASS;
}

/* Known-answer tests of the crypto primitives, run in BPF (the loader prints the outputs). */
struct sni_test_kat {
	__u8 aes[16];  /* AES-128(000102..0f, 00112233..ff): FIPS-197 C.1 */
	__u8 sha[32];  /* SHA-256("abc") */
	__u8 key[16];  /* RFC 9001 A.1 client Initial key/iv/hp for DCID 8394c8f03e515708 */
	__u8 iv[12];
	__u8 hp[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sni_test_kat);
} sni_test_kat SEC(".maps");

SEC("xdp")
int sni_test_kat_xdp(struct xdp_md *ctx)
{
	static const __u8 dcid[8] = { 0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08 };
	struct quic_sni_scratch *s;
	struct sni_test_kat *kat;
	const __u32 *sha_iv;
	__u32 zero = 0;
	int i;

	s = bpf_map_lookup_elem(&quic_sni_scratch, &zero);
	kat = bpf_map_lookup_elem(&sni_test_kat, &zero);
	if (!s || !kat)
		return XDP_PASS;
	for (i = 0; i < 16; i++) {
		s->aes_key[i] = i;
		s->aes_in[i] = i * 0x11;
	}
	quic_sni_aes128_expand(s);
	quic_sni_aes128_block(s);
	__builtin_memcpy(kat->aes, s->aes_out, 16);

	for (i = 0; i < 64; i++)
		s->sha.block[i] = 0;
	s->sha.block[0] = 'a';
	s->sha.block[1] = 'b';
	s->sha.block[2] = 'c';
	s->sha.block[3] = 0x80;
	s->sha.block[63] = 24;
	sha_iv = quic_sni_hash_consts.sha256_iv;
	QUIC_SNI_OPAQUE(sha_iv); /* see quic_sni_crypto.h: clang 14 memcpy-from-constant bug */
	for (i = 0; i < 8; i++)
		s->sha.h[i] = sha_iv[i];
	quic_sni_sha256_compress(s);
	for (i = 0; i < 8; i++)
		quic_sni_put_be32(&kat->sha[i * 4], s->sha.h[i]);

	s->b[5] = 8;
	for (i = 0; i < 8; i++)
		s->b[6 + i] = dcid[i];
	quic_sni_derive(s);
	__builtin_memcpy(kat->key, s->pkt_key, 16);
	__builtin_memcpy(kat->iv, s->iv, 12);
	__builtin_memcpy(kat->hp, s->hp_key, 16);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
