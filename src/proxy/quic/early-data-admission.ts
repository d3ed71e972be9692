/**
 * Whether a new connection attempt gets a Config that accepts 0-RTT: asked once, just before
 * Connection.accept, from the ClientHello as far as the endpoint has read it. (An Initial answered
 * with Retry never gets here, so the client's retried Initial, same ClientHello, is not taken for
 * a replay.)
 */
import { ClientHelloAssembler } from './initial/index.js';
import type { ReplayGuard } from './replay-guard.js';

export function admitEarlyData(guard: ReplayGuard | undefined, hello: ClientHelloAssembler): boolean {
  if (!guard) return false; // quic.early_data: off
  const info = hello.clientHello;
  // No early_data offered: nothing can be replayed into 0-RTT, so no guard entry is spent.
  if (info && !info.offersEarlyData) return true;
  const random = hello.clientRandom;
  // A replay cannot be told apart without the random: 1-RTT only (the client just loses 0-RTT).
  if (!random) return false;
  return guard.admit(random) === 'admit';
}

/**
 * The single-certificate path accepts on the first Initial without assembling the ClientHello;
 * this reads that Initial for the guard. A datagram that does not decrypt yields no random.
 */
export function readFirstInitial(datagram: Buffer): ClientHelloAssembler {
  const hello = new ClientHelloAssembler();
  try {
    hello.push(datagram);
  } catch {
    // quiche judges the datagram itself; the guard just has nothing to key on.
  }
  return hello;
}
