// SPDX-License-Identifier: Apache-2.0
/*
 * Loads sni_test.bpf.o (both programs go through the kernel verifier), prints one line per
 * program with the verifier's statistics, then runs the xdp program with BPF_PROG_TEST_RUN on
 * every hex datagram read from stdin and prints one line per datagram.
 *
 *   sni_run OBJ [REPEAT] < datagrams.hex
 * Output (space separated):
 *   prog <name> verified_insns <n> xlated_bytes <n> jited_bytes <n>
 *   result <ret> <sni or -> <ns per run averaged over REPEAT runs>
 * Exit status 1 with a message on stderr if loading or a test run fails.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "../quic_sni.h" /* userspace view of struct quic_sni_scratch, for SNI_RUN_DUMP */
#include "unhex.h"

#define ETH_FILLER 14

struct sni_test_result {
	int ret;
	unsigned int calls;
	char sni[QUIC_SNI_MAX];
};

static char verifier_log[1 << 20];

static void hex(const char *what, const __u8 *p, int n)
{
	fprintf(stderr, "  %s ", what);
	while (n-- > 0)
		fprintf(stderr, "%02x", *p++);
	fprintf(stderr, "\n");
}

/* SNI_RUN_DUMP=1: print the scratch state of the CPU that ran the test (debugging aid). */
static void dump_scratch(struct bpf_object *obj)
{
	struct bpf_map *m = bpf_object__find_map_by_name(obj, "quic_sni_scratch");
	int ncpu = libbpf_num_possible_cpus(), i;
	size_t sz = (sizeof(struct quic_sni_scratch) + 7) & ~7UL;
	__u8 *all;
	__u32 zero = 0;

	if (!m || ncpu <= 0 || !(all = calloc(ncpu, sz)))
		return;
	if (bpf_map_lookup_elem(bpf_map__fd(m), &zero, all) == 0) {
		for (i = 0; i < ncpu; i++) {
			struct quic_sni_scratch *s = (void *)(all + i * sz);

			if (!s->len)
				continue;
			fprintf(stderr, "cpu %d: len %u pay %u pt_end %u dec %u pos %u nfrag %u prefix %u result %d\n",
				i, s->len, s->pay, s->pt_end, s->dec, s->pos, s->nfrag, s->prefix, s->result);
			hex("key", s->pkt_key, 16);
			hex("iv/nonce", s->iv, 12);
			hex("hp", s->hp_key, 16);
			hex("plain", &s->b[s->pay & 2047], 32);
		}
	}
	free(all);
}

static void print_hex(const char *what, const __u8 *p, int n)
{
	printf("kat %s ", what);
	while (n-- > 0)
		printf("%02x", *p++);
	printf("\n");
}

/* Run the crypto known-answer program once and print its outputs ("kat <name> <hex>"). */
static int run_kat(struct bpf_object *obj)
{
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, "sni_test_kat_xdp");
	struct bpf_map *map = bpf_object__find_map_by_name(obj, "sni_test_kat");
	struct { __u8 aes[16], sha[32], key[16], iv[12], hp[16]; } kat;
	unsigned char pkt[64] = { 0 };
	__u32 zero = 0;
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt, .data_size_in = sizeof(pkt), .repeat = 1);

	if (!prog || !map) {
		fprintf(stderr, "kat program or map missing\n");
		return -1;
	}
	if (bpf_prog_test_run_opts(bpf_program__fd(prog), &opts) ||
	    bpf_map_lookup_elem(bpf_map__fd(map), &zero, &kat)) {
		fprintf(stderr, "kat run: %s\n", strerror(errno));
		return -1;
	}
	print_hex("aes", kat.aes, 16);
	print_hex("sha256", kat.sha, 32);
	print_hex("key", kat.key, 16);
	print_hex("iv", kat.iv, 12);
	print_hex("hp", kat.hp, 16);
	return 0;
}

int main(int argc, char **argv)
{
	static char line[16384];
	static unsigned char pkt[8192];
	struct bpf_object *obj;
	struct bpf_program *prog, *xdp = NULL;
	struct bpf_map *result_map;
	unsigned int repeat = argc > 2 ? (unsigned int)atoi(argv[2]) : 1;
	int err;

	if (argc < 2) {
		fprintf(stderr, "usage: %s OBJ [REPEAT] < datagrams.hex\n", argv[0]);
		return 2;
	}
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	bpf_object__for_each_program(prog, obj)
		bpf_program__set_log_buf(prog, verifier_log, sizeof(verifier_log));
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "load: %s\n%s\n", strerror(-err), verifier_log);
		return 1;
	}
	bpf_object__for_each_program(prog, obj) {
		struct bpf_prog_info info;
		__u32 info_len = sizeof(info);

		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &info_len) == 0)
			printf("prog %s verified_insns %u xlated_bytes %u jited_bytes %u\n",
			       bpf_program__name(prog), info.verified_insns, info.xlated_prog_len,
			       info.jited_prog_len);
		if (strcmp(bpf_program__name(prog), "sni_test_xdp") == 0)
			xdp = prog;
	}
	result_map = bpf_object__find_map_by_name(obj, "sni_test_result");
	if (!xdp || !result_map) {
		fprintf(stderr, "xdp program or result map missing\n");
		return 1;
	}
	if (run_kat(obj))
		return 1;
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		struct sni_test_result res;
		__u32 zero = 0;
		int n;
		LIBBPF_OPTS(bpf_test_run_opts, opts);

		line[strcspn(line, "\r\n")] = 0;
		n = unhex(line, pkt + ETH_FILLER, sizeof(pkt) - ETH_FILLER);
		if (n < 0) {
			fprintf(stderr, "bad hex line\n");
			return 1;
		}
		memset(pkt, 0, ETH_FILLER);
		memset(&res, 0, sizeof(res));
		if (bpf_map_update_elem(bpf_map__fd(result_map), &zero, &res, BPF_ANY)) {
			fprintf(stderr, "reset result: %s\n", strerror(errno));
			return 1;
		}
		opts.data_in = pkt;
		opts.data_size_in = n + ETH_FILLER;
		opts.repeat = repeat;
		err = bpf_prog_test_run_opts(bpf_program__fd(xdp), &opts);
		if (err) {
			fprintf(stderr, "test_run: %s\n", strerror(-err));
			return 1;
		}
		if (bpf_map_lookup_elem(bpf_map__fd(result_map), &zero, &res)) {
			fprintf(stderr, "read result: %s\n", strerror(errno));
			return 1;
		}
		if (res.calls == 0) {
			fprintf(stderr, "program did not run quic_initial_sni\n");
			return 1;
		}
		res.sni[QUIC_SNI_MAX - 1] = 0;
		if (getenv("SNI_RUN_DUMP"))
			dump_scratch(obj);
		printf("result %d %s %u\n", res.ret, res.ret > 0 ? res.sni : "-", opts.duration);
		fflush(stdout);
	}
	bpf_object__close(obj);
	return 0;
}
