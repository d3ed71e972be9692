// SPDX-License-Identifier: Apache-2.0
/*
 * Userspace build of bpf/quic_sni.h: known-answer tests of its crypto (FIPS-197 C.1, FIPS 180-4
 * "abc", RFC 9001 A.1 keys, precomputed salt pad states), then one result line per hex datagram
 * read from stdin:  "<ret> <sni-or-dash>".
 *   sni_check --selftest        run the known-answer tests only (exit 1 on mismatch)
 *   sni_check < datagrams.hex   selftest, then decode each line
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../quic_sni.h"
#include "unhex.h"

static int failures;

static void expect_hex(const char *what, const __u8 *got, size_t n, const char *hex)
{
	char buf[256];
	size_t i;

	for (i = 0; i < n; i++)
		sprintf(&buf[i * 2], "%02x", got[i]);
	if (strcmp(buf, hex) != 0) {
		fprintf(stderr, "FAIL %s: got %s want %s\n", what, buf, hex);
		failures++;
	}
}

static void selftest(void)
{
	struct quic_sni_scratch *s = &quic_sni_scratch_mem;
	__u8 out[32];
	int i;

	/* AES-128, FIPS-197 Appendix C.1 */
	unhex("000102030405060708090a0b0c0d0e0f", s->aes_key, 16);
	unhex("00112233445566778899aabbccddeeff", s->aes_in, 16);
	quic_sni_aes128_expand(s);
	quic_sni_aes128_block(s);
	expect_hex("aes128 fips197", s->aes_out, 16, "69c4e0d86a7b0430d8cdb78070b4c55a");

	/* SHA-256("abc"), one padded block */
	memset(s->sha.block, 0, 64);
	memcpy(s->sha.block, "abc", 3);
	s->sha.block[3] = 0x80;
	s->sha.block[63] = 24;
	for (i = 0; i < 8; i++)
		s->sha.h[i] = quic_sni_hash_consts.sha256_iv[i];
	quic_sni_sha256_compress(s);
	for (i = 0; i < 8; i++)
		quic_sni_put_be32(&out[i * 4], s->sha.h[i]);
	expect_hex("sha256 abc", out, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

	/* salt pad states in quic_sni_tables.h == what setkey computes */
	memset(s->hmac_key, 0, 32);
	unhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a", s->hmac_key, 20);
	quic_sni_hmac_setkey(s);
	if (memcmp(s->hmac_ipad, quic_sni_hash_consts.salt_ipad, 32) || memcmp(s->hmac_opad, quic_sni_hash_consts.salt_opad, 32)) {
		fprintf(stderr, "FAIL salt pad states\n");
		failures++;
	}

	/* RFC 9001 A.1: keys for DCID 8394c8f03e515708 */
	memset(s->b, 0, 32);
	s->b[5] = 8;
	unhex("8394c8f03e515708", &s->b[6], 8);
	quic_sni_derive(s);
	expect_hex("client key", s->pkt_key, 16, "1f369613dd76d5467730efcbe3b1a22d");
	expect_hex("client iv", s->iv, 12, "fa044b2f42a3fd3b46fb255c");
	expect_hex("client hp", s->hp_key, 16, "9f50449e04a0e810283a1e9933adedd2");
	/* RFC 9001 A.2 header protection: sample -> mask */
	memcpy(s->aes_key, s->hp_key, 16);
	unhex("d1b1c98dd7689fb8ec11d242b123dc9b", s->aes_in, 16);
	quic_sni_aes128_expand(s);
	quic_sni_aes128_block(s);
	expect_hex("hp mask", s->aes_out, 5, "437b9aec36");
}

int main(int argc, char **argv)
{
	static char line[8192];
	static __u8 dgram[4096], buf[QUIC_SNI_SCAN_BYTES];

	selftest();
	if (failures)
		return 1;
	if (argc > 1 && strcmp(argv[1], "--selftest") == 0) {
		printf("selftest ok\n");
		return 0;
	}
	while (fgets(line, sizeof(line), stdin)) {
		char sni[QUIC_SNI_MAX];
		int n, r;

		line[strcspn(line, "\r\n")] = 0;
		n = unhex(line, dgram, sizeof(dgram));
		if (n < 0) {
			fprintf(stderr, "bad hex line\n");
			return 2;
		}
		memset(buf, 0, sizeof(buf));
		memcpy(buf, dgram, n < QUIC_SNI_SCAN_BYTES ? n : QUIC_SNI_SCAN_BYTES);
		r = quic_initial_sni(buf, n, sni);
		printf("%d %s\n", r, r > 0 ? sni : "-");
	}
	return 0;
}
