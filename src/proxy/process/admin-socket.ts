/**
 * The admin endpoint's listening socket: opened by the master (or taken over from the previous
 * master in a binary upgrade, through the same fd handover as the TCP listeners: tcp-listeners.ts)
 * and kept for the master's life, so reloads never touch it and an upgrade never refuses a scrape.
 */
import { formatListener } from '../config/index.js';
import type { AdminConfig } from '../config/types.js';
import { closeTcpSocket, openTcpListenSocket } from '../net/tcp-listen.js';

/** Admin requests are tiny; a short queue is plenty. */
const ADMIN_BACKLOG = 64;

export class AdminSocket {
  private constructor(
    readonly key: string,
    readonly fd: number,
  ) {}

  /**
   * Takes the handed-over socket for this address out of `inherited` (so the TCP listeners do not
   * close it as unused), or binds a new one. An admin socket for another address stays in
   * `inherited` and is closed with the other unused ones.
   */
  static open(admin: AdminConfig, inherited: Map<string, number>): AdminSocket {
    const key = `admin ${formatListener(admin.listen)}`;
    const given = inherited.get(key);
    inherited.delete(key);
    return new AdminSocket(key, given ?? openTcpListenSocket(admin.listen, ADMIN_BACKLOG));
  }

  close(): void {
    closeTcpSocket(this.fd);
  }
}
