import { describe, expect, it } from 'vitest';
import { assignApps } from '../../src/proxy/process/site-apps.js';

const site = (name: string, names: string[] = [], isDefault = false) => ({ name, names, isDefault });

describe('assignApps', () => {
  it('gives the default site app 0 and the others the lowest free apps in file order', () => {
    expect([...assignApps([site('a', ['a.test'], true), site('b', ['b.test']), site('c', ['c.test'])])]).toEqual([
      ['a', 0],
      ['b', 1],
      ['c', 2],
    ]);
  });

  it('takes the first site as the default when none says so', () => {
    expect(assignApps([site('x'), site('y')]).get('x')).toBe(0);
  });

  it('keeps running sites in their apps when a site is inserted before them', () => {
    const apps = assignApps([site('a', [], true), site('new'), site('c')], { current: new Map([['a', 0], ['c', 1]]) });
    expect(apps.get('c')).toBe(1);
    expect(apps.get('new')).toBe(2);
  });

  it('recovers apps from the names the kernel holds (a new master)', () => {
    const registered = new Map<number, string[]>([[0, ['a.test']], [5, ['*.b.test']]]);
    expect(assignApps([site('a', ['a.test'], true), site('b', ['*.b.test', 'b2.test'])], { registered }).get('b')).toBe(5);
  });

  it('never gives a new site an app still used by a removed site that drains', () => {
    expect(assignApps([site('a', [], true), site('d')], { busy: new Set([1, 2]) }).get('d')).toBe(3);
  });

  it('says which site found no free app', () => {
    const sites = [site('a', [], true), ...'bcdefgh'.split('').map((n) => site(n))];
    expect(() => assignApps(sites, { busy: new Set([7]) })).toThrow(/no kernel app is free for site "h"/);
  });
});
