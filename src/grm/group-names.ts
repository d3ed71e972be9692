/** A group's server names in grm_names: which app new connections with a given SNI go to. */
import { GRM, grm_name_key, grm_name_val } from './abi.generated.js';
import { GrmError } from './errors.js';
import { checkApp, type GroupRecord } from './group-record.js';
import { getU, setBytes, setU } from './struct-view.js';

export class GroupNames {
  constructor(private readonly record: GroupRecord) {}

  /** Server names (exact, or "*.suffix" wildcards of one label) steering new connections to `app`. */
  set(app: number, names: readonly string[]): void {
    checkApp(app);
    this.record.update((s) => {
      const map = this.record.core.maps.grm_names;
      for (const [k, v] of this.entries()) if (v === app) map.delete(k);
      for (const name of names) {
        const val = Buffer.alloc(grm_name_val.size);
        setU(val, grm_name_val.fields.app, app);
        map.update(nameKey(s.id, name), val);
      }
      // The program decrypts Initials only for groups flagged as having names.
      const any = this.entries().length > 0;
      s.flags = any ? s.flags | GRM.GROUP_HAS_NAMES : s.flags & ~GRM.GROUP_HAS_NAMES;
    });
  }

  /** Server names per app. */
  byApp(): Map<number, string[]> {
    const out = new Map<number, string[]>();
    for (const [k, app] of this.entries()) {
      const name = k.subarray(grm_name_key.fields.name.offset).toString('latin1').replace(/\0+$/, '');
      out.set(app, [...(out.get(app) ?? []), name].sort());
    }
    return out;
  }

  private entries(): Array<[Buffer, number]> {
    const map = this.record.core.maps.grm_names;
    const out: Array<[Buffer, number]> = [];
    for (const k of map.keys()) {
      if (getU(k, grm_name_key.fields.group) !== this.record.id) continue;
      const v = map.lookup(k);
      if (v) out.push([k, getU(v, grm_name_val.fields.app)]);
    }
    return out;
  }
}

// '_' as the config's names allow it (RFC 6066 host names; seen in the wild, and quic_sni.h reads it).
const NAME_RE = /^(\*\.)?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;

function nameKey(group: number, raw: string): Buffer {
  const name = raw.toLowerCase().replace(/\.$/, '');
  if (!NAME_RE.test(name) || name.length >= GRM.NAME_MAX) {
    throw new GrmError('BAD_ARGUMENT', `bad server name '${raw}' (exact name or '*.suffix', < ${GRM.NAME_MAX} bytes)`);
  }
  const k = Buffer.alloc(grm_name_key.size);
  setU(k, grm_name_key.fields.group, group);
  setBytes(k, grm_name_key.fields.name, Buffer.from(name, 'latin1'));
  return k;
}
