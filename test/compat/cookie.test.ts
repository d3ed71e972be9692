// udpgrm's slot mapping (TO_WRK_GEN) and 16-bit cookie, against the values the reference verified.
import { expect, test } from 'vitest';
import { cookiePack, cookieUnpack, slotOf } from '../../src/grm/compat/cookie.js';

test('cookie values match udpgrm', () => {
  expect(cookiePack(0, 0)).toBe(0x0080);
  expect(cookiePack(1, 0)).toBe(0x00a1);
  expect(cookiePack(1, 255)).toBe(0xffa1);
  // An unregistered socket (gen and idx -1) reports slot 31, index 255.
  expect(cookiePack(slotOf(0, 0, 0xffffffff), 0xffffffff)).toBe(0xff7f);
});

test('unpack accepts exactly the packed cookies', () => {
  let valid = 0;
  for (let c = 0; c < 0x10000; c++) {
    const u = cookieUnpack(c);
    if (!u) continue;
    valid++;
    expect(cookiePack(u.slot, u.idx)).toBe(c);
  }
  expect(valid).toBe(32 * 256); // one check value per (slot, idx): 1/8 of random cookies pass
});

test('generations wrap within the slots of their app', () => {
  expect(slotOf(0, 0, 33)).toBe(1);
  expect(slotOf(2, 1, 17)).toBe(16 + 1);
  expect(slotOf(3, 2, 10)).toBe(20); // 32 / 3 = 10 slots per app; slots 30 and 31 unused
  expect(slotOf(4, 3, 7)).toBe(24 + 7);
});
