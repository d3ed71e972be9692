/** Classic BPF programs for the CBPF dissector (tests and bench/compat-dissectors.ts). */

// The first byte tags the datagram: 'c' + cookie (2 bytes, big-endian) -> that cookie;
// 'a' + app byte -> 0x80000000 + app (a new flow of that app); 'z' -> division by zero;
// anything else -> RET -1 (a new flow of app 0). [code, jt, jf, k] as <linux/filter.h>.
export const TAGGED_PROGRAM = [
  [0x30, 0, 0, 0], //        0: ldb [0]
  [0x15, 0, 2, 0x63], //     1: jeq 'c', 2, 4
  [0x28, 0, 0, 1], //        2: ldh [1]
  [0x16, 0, 0, 0], //        3: ret a
  [0x15, 0, 3, 0x61], //     4: jeq 'a', 5, 8
  [0x30, 0, 0, 1], //        5: ldb [1]
  [0x04, 0, 0, 0x80000000], // 6: add 0x80000000
  [0x16, 0, 0, 0], //        7: ret a
  [0x15, 0, 2, 0x7a], //     8: jeq 'z', 9, 11
  [0x01, 0, 0, 0], //        9: ldx 0
  [0x3c, 0, 0, 0], //       10: div x
  [0x06, 0, 0, 0xffffffff], // 11: ret -1
] as Array<[number, number, number, number]>;


/** An instruction for assemble(): jumps name their targets (labels), resolved to offsets. */
export interface Insn {
  readonly code: number;
  readonly k?: number;
  readonly jt?: string;
  readonly jf?: string;
}

/** Classic BPF from instructions and labels (a string marks the next instruction's position). */
export function assemble(lines: ReadonlyArray<Insn | string>): Array<[number, number, number, number]> {
  const at = new Map<string, number>();
  const insns: Insn[] = [];
  for (const l of lines) {
    if (typeof l === 'string') at.set(l, insns.length);
    else insns.push(l);
  }
  const off = (i: number, label: string | undefined): number => {
    if (label === undefined) return 0;
    const t = at.get(label);
    if (t === undefined || t <= i || t - i - 1 > 255) throw new Error(`bad jump to ${label} from ${i}`);
    return t - i - 1;
  };
  return insns.map((x, i) => [x.code, off(i, x.jt), off(i, x.jf), (x.k ?? 0) >>> 0]);
}

const PASS = 0x80000001; // a new flow of app 1
const FAIL = 0x80000000; // app 0
/** The ALU chain in ISA_PROGRAM's 'm' case, from A = 12. */
export const ALU_RESULT = -((((((((((12 - 1) * 27) & 0xff) | 0x100) << 4) >>> 2) % 1000) ^ 0xf) >>> 0)) >>> 0;

// The rest of udpgrm's instruction set, by the datagram's first byte; 'pass' cases return
// 0x80000001 (app 1) only when every instruction computed what it should, else 0x80000000:
//  'i'  LDX B MSH, LD B/H/W IND        'm'  LD/LDX IMM and MEM, ST, STX, TAX, TXA, every ALU op
//  'l'  LD W LEN and LDX W LEN (10-byte payload)
//  'j'  JGT/JGE/JSET with K and X, JA  'x'  RET X                'p'  SKF_AD_PROTOCOL (IPv4)
//  'e'  JA past the end: no RET, a program error
//  'a'  another ancillary load (SKF_AD_IFINDEX): a load outside the payload, too short (udpgrm)
//  'b'  an opcode udpgrm does not know (MISC 0x40): a program error
export const ISA_PROGRAM = assemble([
  { code: 0x30, k: 0 }, // ldb [0]
  { code: 0x15, k: 0x69, jt: 'ind' }, // 'i'
  { code: 0x15, k: 0x6d, jt: 'mem' }, // 'm'
  { code: 0x15, k: 0x6c, jt: 'len' }, // 'l'
  { code: 0x15, k: 0x6a, jt: 'jmp' }, // 'j'
  { code: 0x15, k: 0x78, jt: 'retx' }, // 'x'
  { code: 0x15, k: 0x70, jt: 'proto' }, // 'p'
  { code: 0x15, k: 0x65, jt: 'end' }, // 'e'
  { code: 0x15, k: 0x61, jt: 'anc' }, // 'a'
  { code: 0x15, k: 0x62, jt: 'bad', jf: 'fail' }, // 'b'
  'ind',
  { code: 0xb1, k: 1 }, // ldxb 4*([1]&0xf): X = 20 for 0x45
  { code: 0x50, k: 2 }, // ldb [x+2]
  { code: 0x15, k: 0x77, jf: 'fail' },
  { code: 0x48, k: 3 }, // ldh [x+3]
  { code: 0x15, k: 0x1234, jf: 'fail' },
  { code: 0x40, k: 5 }, // ld [x+5]
  { code: 0x15, k: 0xdeadbeef, jt: 'pass', jf: 'fail' },
  'mem',
  { code: 0x00, k: 5 }, // ld #5
  { code: 0x02, k: 3 }, // st M[3]
  { code: 0x01, k: 7 }, // ldx #7
  { code: 0x03, k: 15 }, // stx M[15]
  { code: 0x60, k: 15 }, // ld M[15]: 7
  { code: 0x61, k: 3 }, // ldx M[3]: 5
  { code: 0x0c }, // add x: 12
  { code: 0x07 }, // tax
  { code: 0x00, k: 0 }, // ld #0
  { code: 0x87 }, // txa: 12
  { code: 0x14, k: 1 }, // sub #1
  { code: 0x24, k: 27 }, // mul #27
  { code: 0x54, k: 0xff }, // and #0xff
  { code: 0x44, k: 0x100 }, // or #0x100
  { code: 0x64, k: 4 }, // lsh #4
  { code: 0x74, k: 2 }, // rsh #2
  { code: 0x94, k: 1000 }, // mod #1000
  { code: 0xa4, k: 0xf }, // xor #0xf
  { code: 0x84 }, // neg
  { code: 0x15, k: ALU_RESULT, jt: 'pass', jf: 'fail' },
  'len',
  { code: 0x80 }, // ld len
  { code: 0x15, k: 10, jf: 'fail' },
  { code: 0x81 }, // ldx len (classic BPF: X; udpgrm loads A)
  { code: 0x00, k: 0 }, // ld #0
  { code: 0x87 }, // txa
  { code: 0x15, k: 10, jt: 'pass', jf: 'fail' },
  'retx',
  { code: 0x01, k: PASS }, // ldx #PASS
  { code: 0x0e }, // ret x
  'proto',
  { code: 0x28, k: 0xfffff000 }, // ldh [SKF_AD_OFF + SKF_AD_PROTOCOL]
  { code: 0x15, k: 0x0800, jt: 'pass', jf: 'fail' },
  'end',
  { code: 0x05, k: 100 }, // ja past the end
  'anc',
  { code: 0x20, k: 0xfffff004 }, // ld [SKF_AD_OFF + SKF_AD_IFINDEX]
  'bad',
  { code: 0x47 }, // MISC 0x40
  'jmp',
  { code: 0x00, k: 5 }, // ld #5
  { code: 0x25, k: 4, jf: 'fail' }, // jgt #4
  { code: 0x25, k: 5, jt: 'fail' }, // jgt #5
  { code: 0x35, k: 5, jf: 'fail' }, // jge #5
  { code: 0x45, k: 4, jf: 'fail' }, // jset #4
  { code: 0x01, k: 6 }, // ldx #6
  { code: 0x2d, jt: 'fail' }, // jgt x
  { code: 0x3d, jt: 'fail' }, // jge x
  { code: 0x01, k: 1 }, // ldx #1
  { code: 0x4d, jf: 'fail' }, // jset x
  { code: 0x05, k: 1 }, // ja pass (over fail)
  'fail',
  { code: 0x06, k: FAIL },
  'pass',
  { code: 0x06, k: PASS },
]);
