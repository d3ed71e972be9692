import { randomBytes } from 'node:crypto';
import type { CidIssuer } from '../../grm/interface.js';

/**
 * Random server CIDs, for a proxy running outside a generation manager. The first octet keeps
 * QUIC-LB's "unroutable" config id (0b111) so a load balancer would not misread it.
 */
export class RandomCidIssuer implements CidIssuer {
  constructor(readonly cidLength: number) {}

  issue(): Buffer {
    const cid = randomBytes(this.cidLength);
    cid[0] = cid[0]! | 0xe0;
    return cid;
  }
}
