/** Public API of the generation manager. */
export { GenerationManager, DEFAULT_PIN_DIR, DEFAULT_CID_LENGTH, defaultObjectPath, type ManagerOptions } from './manager.js';
export { Group, type GroupOptions, type GenerationInfo, type DecodedCid } from './group.js';
export type { SocketInfo } from './group-sockets.js';
export type { GroupStats, GroupCounters, GenerationCounters } from './group-stats.js';
export { createCidIssuer, type CidIssuerParams, type CidKey } from './cid.js';
export { GrmError, type GrmErrorCode } from './errors.js';
export { closeFd, socketCookie, type ListenAddress } from './sockets.js';
export { runGrmCommand } from './cli.js';
export type { CidIssuer } from './interface.js';
