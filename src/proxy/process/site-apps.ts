/**
 * Which kernel app each site's generations run in. The default site is app 0: the kernel sends app
 * 0 every new connection it cannot steer by SNI. Other sites get apps 1..MAX_APPS-1 and keep them
 * while they exist, so adding a site in the middle of the file never moves another site's live
 * connections to a different app. A new master (restart or upgrade) recovers the apps from the
 * names the kernel holds (`Group.serverNames()`), so a site keeps its app across masters too.
 */
import { GRM } from '../../grm/abi.generated.js';

export interface SiteForApps {
  readonly name: string;
  readonly names: readonly string[];
  readonly isDefault: boolean;
}

export interface AppsNow {
  /** The apps of the sites running now (a reload), by site name. */
  readonly current?: ReadonlyMap<string, number>;
  /** The names registered in the kernel per app (a new master's first start). */
  readonly registered?: ReadonlyMap<number, readonly string[]>;
  /** Apps still used by generations of sites that are gone (draining): not free yet. */
  readonly busy?: ReadonlySet<number>;
}

/** Site name → app, for every site of `sites`. Throws when no app is free for a new site. */
export function assignApps(sites: readonly SiteForApps[], now: AppsNow = {}): Map<string, number> {
  const out = new Map<string, number>();
  const taken = new Set<number>([...(now.busy ?? [])]);
  const take = (site: string, app: number): void => {
    out.set(site, app);
    taken.add(app);
  };
  const def = sites.find((s) => s.isDefault) ?? sites[0];
  if (def) take(def.name, 0);
  const others = sites.filter((s) => s !== def);
  // First the sites that already have an app (running, or known to the kernel by name) ...
  for (const site of others) {
    const running = now.current?.get(site.name);
    if (running !== undefined && running !== 0 && !taken.has(running)) {
      take(site.name, running);
      continue;
    }
    for (const [app, names] of now.registered ?? []) {
      if (app !== 0 && !taken.has(app) && names.some((n) => site.names.includes(n))) {
        take(site.name, app);
        break;
      }
    }
  }
  // ... then the new ones take the lowest free app.
  for (const site of others) {
    if (out.has(site.name)) continue;
    let app = 1;
    while (app < GRM.MAX_APPS && taken.has(app)) app++;
    if (app >= GRM.MAX_APPS) {
      throw new Error(`no kernel app is free for site "${site.name}": all ${GRM.MAX_APPS} are used by sites or by removed sites still draining; reload again once they drained`);
    }
    take(site.name, app);
  }
  return out;
}
