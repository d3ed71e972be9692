/**
 * Reading the client's first flight before handing it to quiche: quiche has no SNI callback and
 * one certificate per Config, so the proxy decrypts the Initial packet(s) itself, reassembles the
 * ClientHello from CRYPTO frames, and picks the Config from SNI and ALPN before calling
 * Connection.accept. Standalone: nothing here uses quiche.
 *
 *   packet.ts (long header, keys.ts, AEAD) → frames.ts (CRYPTO) → assembler.ts → tls/client-hello.ts (shared with TLS over TCP)
 *
 * The endpoint needs only the assembler and what it returns; tests import the modules directly.
 */
export { ClientHelloAssembler } from './assembler.js';
export type { ClientHelloInfo } from '../../tls/client-hello.js';
