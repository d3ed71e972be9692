/* SPDX-License-Identifier: Apache-2.0 */
/*
 * compat_cbpf.h — udpgrm's CBPF dissector for compat.bpf.c: runs the group's classic BPF program
 * (struct sock_filter, 1..GRM_COMPAT_MAX_INSTR instructions, stored in the group's dissector) on a
 * datagram to get a 32-bit value that compat.bpf.c turns into a cookie or an app.
 *
 * Semantics (udpgrm's, reference §4.3): packet offsets are relative to the UDP payload and LEN is
 * the payload length; LD/LDX W/H/B ABS/IND, LDX MSH, IMM, MEM (16 scratch words), ST/STX, every
 * ALU op (division or modulo by 0 fails), JA/JEQ/JGT/JGE/JSET, RET K/A/X, TAX/TXA, and the one
 * ancillary load SKF_AD_PROTOCOL (the datagram's ethertype). Jumps only go forward; running past
 * the last instruction without RET fails. Each instruction runs at most once, so one bpf_loop
 * pass over the program executes it: iterations before the program counter are skipped.
 */
#ifndef COMPAT_CBPF_H
#define COMPAT_CBPF_H

/* Outcome of a dissector run (also used by compat_quic.h). */
enum dis_result {
	DIS_OK = 0,   /* value produced */
	DIS_LOAD = 1, /* a load went past the datagram: rx_packet_too_short_error */
	DIS_BAD = 2,  /* bad instruction, division by zero, no RET, malformed input: rx_cbpf_prog_error */
};

/* <linux/filter.h> classic BPF encoding */
#define CB_CLASS(c) ((c) & 0x07)
#define CB_LD 0x00
#define CB_LDX 0x01
#define CB_ST 0x02
#define CB_STX 0x03
#define CB_ALU 0x04
#define CB_JMP 0x05
#define CB_RET 0x06
#define CB_MISC 0x07
#define CB_SIZE(c) ((c) & 0x18)
#define CB_W 0x00
#define CB_H 0x08
#define CB_B 0x10
#define CB_MODE(c) ((c) & 0xe0)
#define CB_IMM 0x00
#define CB_ABS 0x20
#define CB_IND 0x40
#define CB_MEM 0x60
#define CB_LEN 0x80
#define CB_MSH 0xa0
#define CB_OP(c) ((c) & 0xf0)
#define CB_SRC_X 0x08
#define CB_RVAL(c) ((c) & 0x18)
#define CB_RET_K 0x00
#define CB_RET_X 0x08
#define CB_RET_A 0x10
#define CB_MISCOP(c) ((c) & 0xf8)
#define CB_TAX 0x00
#define CB_TXA 0x80
#define CB_AD_PROTOCOL 0xfffff000 /* SKF_AD_OFF + SKF_AD_PROTOCOL */
#define CB_MEMWORDS 16
#define UDP_HDR_LEN 8

/* The machine, on the caller's stack (bpf_loop's context must be). */
struct cbpf_vm {
	struct sk_reuseport_md *md;
	const struct grm_compat_group *g;
	__u32 payload_len;
	__u32 eth_protocol; /* network byte order */
	__u32 A, X;
	__u32 M[CB_MEMWORDS];
	__u32 pc;  /* next instruction to run */
	__u32 ret; /* RET's value */
	__u32 result; /* enum dis_result; DIS_BAD until RET */
};

/* Big-endian load of n (1, 2, 4) payload bytes at off; -1 past the datagram. */
static __always_inline int cbpf_load(struct cbpf_vm *vm, __u32 off, __u32 n, __u32 *out)
{
	__u8 b[4] = {};

	if (off > 0xffff)
		return -1;
	if (n == 4) {
		if (bpf_skb_load_bytes(vm->md, UDP_HDR_LEN + off, b, 4) != 0)
			return -1;
		*out = (__u32)b[0] << 24 | (__u32)b[1] << 16 | (__u32)b[2] << 8 | b[3];
	} else if (n == 2) {
		if (bpf_skb_load_bytes(vm->md, UDP_HDR_LEN + off, b, 2) != 0)
			return -1;
		*out = (__u32)b[0] << 8 | b[1];
	} else {
		if (bpf_skb_load_bytes(vm->md, UDP_HDR_LEN + off, b, 1) != 0)
			return -1;
		*out = b[0];
	}
	return 0;
}

static __always_inline long cbpf_fail(struct cbpf_vm *vm, __u32 result)
{
	vm->result = result;
	return 1; /* stop the loop */
}

static __always_inline __u32 cbpf_alu(__u32 op, __u32 a, __u32 v, int *bad)
{
	switch (op) {
	case 0x00: return a + v; /* ADD */
	case 0x10: return a - v; /* SUB */
	case 0x20: return a * v; /* MUL */
	case 0x30: /* DIV */
		if (!v) { *bad = 1; return 0; }
		return a / v;
	case 0x40: return a | v; /* OR */
	case 0x50: return a & v; /* AND */
	case 0x60: return v < 32 ? a << v : 0; /* LSH */
	case 0x70: return v < 32 ? a >> v : 0; /* RSH */
	case 0x80: return -a;    /* NEG */
	case 0x90: /* MOD */
		if (!v) { *bad = 1; return 0; }
		return a % v;
	case 0xa0: return a ^ v; /* XOR */
	}
	*bad = 1;
	return 0;
}

static long cbpf_step(__u32 i, void *ctx)
{
	struct cbpf_vm *vm = ctx;
	const __u8 *insn;
	__u32 code, jt, jf, k, v = 0;
	int bad = 0;

	if (i < vm->pc)
		return 0; /* jumped over */
	if (i >= GRM_COMPAT_MAX_INSTR)
		return cbpf_fail(vm, DIS_BAD);
	insn = &vm->g->dis.payload[(i & (GRM_COMPAT_MAX_INSTR - 1)) * 8];
	code = insn[0] | (__u32)insn[1] << 8;
	jt = insn[2];
	jf = insn[3];
	k = insn[4] | (__u32)insn[5] << 8 | (__u32)insn[6] << 16 | (__u32)insn[7] << 24;
	vm->pc = i + 1;

	switch (CB_CLASS(code)) {
	case CB_LD:
	case CB_LDX: {
		int ldx = CB_CLASS(code) == CB_LDX;
		__u32 size = CB_SIZE(code) == CB_W ? 4 : CB_SIZE(code) == CB_H ? 2 : CB_SIZE(code) == CB_B ? 1 : 0;
		switch (CB_MODE(code)) {
		case CB_IMM:
			v = k;
			break;
		case CB_MEM:
			v = vm->M[k & (CB_MEMWORDS - 1)];
			break;
		case CB_LEN:
			v = vm->payload_len;
			break;
		case CB_ABS:
			if (ldx || !size)
				return cbpf_fail(vm, DIS_BAD);
			if (size == 2 && k == CB_AD_PROTOCOL) {
				v = bpf_ntohs((__u16)vm->eth_protocol);
				break;
			}
			if (cbpf_load(vm, k, size, &v) != 0)
				return cbpf_fail(vm, DIS_LOAD);
			break;
		case CB_IND:
			if (ldx || !size)
				return cbpf_fail(vm, DIS_BAD);
			if (cbpf_load(vm, vm->X + k, size, &v) != 0)
				return cbpf_fail(vm, DIS_LOAD);
			break;
		case CB_MSH: /* X = 4 * (byte at k & 0xf): an IPv4 header length */
			if (!ldx || size != 1)
				return cbpf_fail(vm, DIS_BAD);
			if (cbpf_load(vm, k, 1, &v) != 0)
				return cbpf_fail(vm, DIS_LOAD);
			v = (v & 0xf) << 2;
			break;
		default:
			return cbpf_fail(vm, DIS_BAD);
		}
		if (ldx)
			vm->X = v;
		else
			vm->A = v;
		return 0;
	}
	case CB_ST:
		vm->M[k & (CB_MEMWORDS - 1)] = vm->A;
		return 0;
	case CB_STX:
		vm->M[k & (CB_MEMWORDS - 1)] = vm->X;
		return 0;
	case CB_ALU:
		vm->A = cbpf_alu(CB_OP(code), vm->A, code & CB_SRC_X ? vm->X : k, &bad);
		return bad ? cbpf_fail(vm, DIS_BAD) : 0;
	case CB_JMP: {
		__u32 src = code & CB_SRC_X ? vm->X : k, take;
		switch (CB_OP(code)) {
		case 0x00: /* JA: a 32-bit forward offset */
			vm->pc = i + 1 + k;
			return 0;
		case 0x10: take = vm->A == src; break;       /* JEQ */
		case 0x20: take = vm->A > src; break;        /* JGT */
		case 0x30: take = vm->A >= src; break;       /* JGE */
		case 0x40: take = (vm->A & src) != 0; break; /* JSET */
		default:
			return cbpf_fail(vm, DIS_BAD);
		}
		vm->pc = i + 1 + (take ? jt : jf);
		return 0;
	}
	case CB_RET:
		if (CB_RVAL(code) == CB_RET_K)
			vm->ret = k;
		else if (CB_RVAL(code) == CB_RET_X)
			vm->ret = vm->X;
		else if (CB_RVAL(code) == CB_RET_A)
			vm->ret = vm->A;
		else
			return cbpf_fail(vm, DIS_BAD);
		return cbpf_fail(vm, DIS_OK);
	case CB_MISC:
		if (CB_MISCOP(code) == CB_TAX)
			vm->X = vm->A;
		else if (CB_MISCOP(code) == CB_TXA)
			vm->A = vm->X;
		else
			return cbpf_fail(vm, DIS_BAD);
		return 0;
	}
	return cbpf_fail(vm, DIS_BAD);
}

/* Runs the group's program on the datagram: DIS_OK with *ret, or the failure. */
static __noinline int cbpf_run(struct sk_reuseport_md *md, const struct grm_compat_group *g,
			       __u32 len, __u32 eth_protocol, __u32 *ret)
{
	struct cbpf_vm vm = {};
	__u32 n;

	if (!g || !ret)
		return DIS_BAD;
	n = g->dis.filter_len;
	if (n == 0 || n > GRM_COMPAT_MAX_INSTR)
		return DIS_BAD;
	vm.md = md;
	vm.g = g;
	vm.payload_len = len - UDP_HDR_LEN;
	vm.eth_protocol = eth_protocol;
	vm.result = DIS_BAD; /* stays so when the program ends without RET */
	bpf_loop(n, cbpf_step, &vm, 0);
	*ret = vm.ret;
	return vm.result;
}

#endif
