/**
 * udpgrm's socket addressing, pure: the slot of a generation (TO_WRK_GEN) and the 16-bit cookie
 * a packet carries (idx << 8 | check << 5 | slot). compat.bpf.c computes the same (grm_abi.h).
 */
import { GRM } from '../abi.generated.js';

/** Each of A apps (max_apps, 0 = 1) owns 32 / A slots; generations wrap within them. */
export function slotOf(maxApps: number, app: number, gen: number): number {
  const apps = maxApps >= 1 && maxApps <= GRM.COMPAT_MAX_APPS ? maxApps : 1;
  const per = Math.floor(GRM.COMPAT_MAX_GENS / apps);
  return (app % apps) * per + ((gen >>> 0) % per);
}

function check(slot: number, idx: number): number {
  const c = GRM.COMPAT_COOKIE_CS_SEED ^ (idx & 0xf) ^ ((idx >> 4) & 0xf) ^ (slot & 0xf) ^ ((slot >> 4) & 0xf);
  return (c & 7) ^ ((c >> 3) & 1);
}

export function cookiePack(slot: number, idx: number): number {
  const i = idx & 0xff;
  const s = slot & 0x1f;
  return (i << 8) | (check(s, i) << 5) | s;
}

/** The slot and index a cookie names, or null when its check bits are wrong. */
export function cookieUnpack(cookie: number): { slot: number; idx: number } | null {
  const slot = cookie & 0x1f;
  const idx = (cookie >> 8) & 0xff;
  return ((cookie >> 5) & 7) === check(slot, idx) ? { slot, idx } : null;
}
