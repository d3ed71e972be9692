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

