/**
 * The control protocol between the CLI (or a new master during an upgrade) and a running master:
 * the requests, the reply to each, and the decoders that check both on arrival. The server
 * decodes requests with it and the client decodes replies with it, so neither casts.
 *
 * Wire format (unchanged since the first release, so an old master and a new one still talk
 * during a binary upgrade): one JSON object per line each way, `{"cmd": …, …fields}` then the
 * reply. Every reply carries `ok`; `{"ok": false, "error": "…"}` can answer any request.
 */
import type { WorkerStats } from '../worker-stats.js';
import {
  DecodeError,
  array,
  boolean,
  isPlainObject,
  literal,
  number,
  object,
  optional,
  record,
  string,
  type Decoded,
  type DecodedObject,
  type Decoder,
  type Shape,
} from './json-decode.js';

/** Each request's fields besides `cmd`. */
const requestFields = {
  /** `site`: apply only that site's change, and restart it even when unchanged (`reload --site`). */
  reload: { site: optional(string) },
  status: {},
  stop: { graceful: boolean },
  /** Start a new master from the binary on disk and hand over to it. */
  upgrade: {},
  /** Sent by that new master once its generation works: release the socket, drain, exit. */
  handover: { pid: number },
} as const satisfies Record<string, Shape>;

export type ControlCommand = keyof typeof requestFields;

/** A request for `C` (all requests when `C` is left out). */
export type ControlRequest<C extends ControlCommand = ControlCommand> = {
  [K in C]: { readonly cmd: K } & DecodedObject<(typeof requestFields)[K]>;
}[C];

const failure = object({ ok: literal(false), error: string });
/** What the master answers when a request fails (any request: a handler may throw). */
export type ControlFailure = Decoded<typeof failure>;

const done = object({ ok: literal(true) });

/** One worker in the status reply: the data plane's own stats and its place in the generation. */
const workerStatus = object({
  index: number,
  pid: optional(number),
  connections: number,
  activeRequests: number,
  quic: optional(
    object({
      datagramsIn: number,
      datagramsOut: number,
      connectionsAccepted: number,
      statelessResets: number,
      internalErrors: number,
      dropped: record(number),
      gsoDatagrams: optional(number),
      gsoFallbacks: optional(number),
      batchedDatagramsIn: optional(number),
    }),
  ),
  tcp: optional(
    object({
      accepted: number,
      h1Connections: number,
      h2Connections: number,
      refusedConnections: number,
      rapidResetCutoffs: number,
      tlsErrors: number,
      malformed: number,
      // Absent from a master before sites.
      clientHellosRefused: optional(number),
      handedOff: optional(number),
      adopted: optional(number),
      handoffsFailed: optional(number),
    }),
  ),
  refused: optional(record(number)),
}) satisfies Decoder<WorkerStats & { index: number; pid?: number }>;

const generationStatus = object({
  id: number,
  /** Optional: a master from before sites sends none (one site). */
  site: optional(string),
  app: optional(number),
  // A string, not the current states: a newer master may add states an older `list` still prints.
  state: string,
  ageMs: number,
  drainingForMs: optional(number),
  /** The BPF generation number of each reuseport group. */
  slots: array(number),
  workers: array(workerStatus),
});

/** The successful reply to each request. */
const successes = {
  reload: object({
    ok: literal(true),
    generation: number,
    /** Phase durations in ms. */
    phases: record(number),
    /** What the reload did per site (a master from before sites sends none). */
    sites: optional(array(object({ site: string, outcome: string, generation: optional(number), error: optional(string) }))),
  }),
  status: object({
    ok: literal(true),
    pid: number,
    config: string,
    counters: object({ reloadsOk: number, reloadsFailed: number, workerRestarts: number }),
    /** The sites served, their kernel apps and names (a master from before sites sends none). */
    sites: optional(array(object({ site: string, app: number, names: array(string) }))),
    generations: array(generationStatus),
  }),
  stop: done,
  /** The pid of the new master that took over. */
  upgrade: object({ ok: literal(true), pid: number }),
  handover: done,
} satisfies { readonly [C in ControlCommand]: Decoder<{ readonly ok: true }> };

type Successes = { readonly [C in ControlCommand]: Decoded<(typeof successes)[C]> };
/** Indexed through a mapped type, so `successDecoders[cmd]` is the decoder for that very `C`. */
const successDecoders: { readonly [C in ControlCommand]: Decoder<Successes[C]> } = successes;

export type ControlSuccess<C extends ControlCommand> = Successes[C];
/** The reply to a request for `C`. */
export type ControlReply<C extends ControlCommand> = ControlSuccess<C> | ControlFailure;
export type StatusReply = ControlSuccess<'status'>;

export function isFailure<C extends ControlCommand>(reply: ControlReply<C>): reply is ControlFailure {
  return !reply.ok;
}

/** Server side: one handler per command, each answering with that command's reply. */
export type ControlHandlers = { readonly [C in ControlCommand]: (req: ControlRequest<C>) => Promise<ControlReply<C>> };

export function dispatch<C extends ControlCommand>(handlers: ControlHandlers, req: ControlRequest<C>): Promise<ControlReply<C>> {
  const handler: (req: ControlRequest<C>) => Promise<ControlReply<C>> = handlers[req.cmd];
  return handler(req);
}

function isCommand(cmd: string): cmd is ControlCommand {
  return Object.hasOwn(requestFields, cmd);
}

/** Server side: a parsed JSON line as a request, or a DecodeError saying what is wrong with it. */
export function decodeRequest(value: unknown): ControlRequest {
  const cmd = isPlainObject(value) ? value.cmd : undefined;
  if (typeof cmd !== 'string') throw new DecodeError('control request needs a "cmd" string');
  if (!isCommand(cmd)) throw new DecodeError(`unknown control command ${JSON.stringify(cmd)}`);
  return requestDecoders[cmd](value, 'request');
}

const requestDecoders: { readonly [C in ControlCommand]: Decoder<ControlRequest<C>> } = {
  reload: object({ cmd: literal('reload'), ...requestFields.reload }),
  status: object({ cmd: literal('status'), ...requestFields.status }),
  stop: object({ cmd: literal('stop'), ...requestFields.stop }),
  upgrade: object({ cmd: literal('upgrade'), ...requestFields.upgrade }),
  handover: object({ cmd: literal('handover'), ...requestFields.handover }),
};

/** Client side: a parsed reply line to a request for `cmd`, or a DecodeError. */
export function decodeReply<C extends ControlCommand>(cmd: C, value: unknown): ControlReply<C> {
  if (isPlainObject(value) && value.ok === false) return failure(value, 'reply');
  const decode: Decoder<ControlSuccess<C>> = successDecoders[cmd];
  return decode(value, 'reply');
}
