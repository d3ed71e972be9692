import { describe, expect, it } from 'vitest';
import {
  FRAME_TYPE,
  FrameReader,
  H3Error,
  H3_ERROR,
  SETTINGS_ID,
  STREAM_TYPE,
  encodeControlStreamPreface,
  encodeDataFrameHeader,
  encodeFrame,
  encodeFrameHeader,
  encodeGoaway,
  encodeHeadersFrame,
  encodeSettings,
  isGreaseCodepoint,
  parseGoaway,
  parseSettings,
  parseSingleVarintPayload,
  type H3FrameEvent,
} from '../../src/proxy/h3/frames.js';
import { encodeVarint } from '../../src/proxy/quic/varint.js';
import { h3ErrorCode } from '../helpers/h3-error-code.js';
import { hex } from '../helpers/hex.js';

/** Normalises events: adjacent DATA pieces of one frame are joined so splits compare equal. */
function normalise(events: H3FrameEvent[]): { type: number; payload: string }[] {
  const out: { type: number; payload: string }[] = [];
  let data: Buffer[] = [];
  for (const e of events) {
    if (e.kind === 'data') {
      data.push(e.data);
      if (e.frameEnd) {
        out.push({ type: FRAME_TYPE.DATA, payload: Buffer.concat(data).toString('hex') });
        data = [];
      }
    } else {
      out.push({ type: e.type, payload: e.payload.toString('hex') });
    }
  }
  expect(data).toHaveLength(0);
  return out;
}

describe('frame encoders', () => {
  it('encodes frame headers', () => {
    expect(encodeDataFrameHeader(5).toString('hex')).toBe('0005');
    expect(encodeDataFrameHeader(16384).toString('hex')).toBe('0080004000');
    expect(encodeFrameHeader(0x21, 0).toString('hex')).toBe('2100');
    expect(encodeHeadersFrame(hex('0000d1')).toString('hex')).toBe('01030000d1');
    expect(encodeFrame(FRAME_TYPE.MAX_PUSH_ID, hex('05')).toString('hex')).toBe('0d0105');
  });

  it('encodes and parses GOAWAY', () => {
    expect(encodeGoaway(0).toString('hex')).toBe('070100');
    expect(encodeGoaway(400).toString('hex')).toBe('07024190');
    expect(parseGoaway(hex('4190'))).toBe(400);
    expect(h3ErrorCode(() => parseGoaway(hex('')))).toBe(H3_ERROR.H3_FRAME_ERROR);
    expect(h3ErrorCode(() => parseGoaway(hex('4190 00')))).toBe(H3_ERROR.H3_FRAME_ERROR);
    expect(h3ErrorCode(() => parseGoaway(hex('41')))).toBe(H3_ERROR.H3_FRAME_ERROR);
    expect(parseSingleVarintPayload(hex('c2197c5eff14e88c'), 'MAX_PUSH_ID')).toBe(Infinity);
  });

  it('encodes and parses SETTINGS, including a grease setting above 2^53', () => {
    const frame = encodeSettings([
      [SETTINGS_ID.QPACK_MAX_TABLE_CAPACITY, 0],
      [SETTINGS_ID.QPACK_BLOCKED_STREAMS, 0],
      [SETTINGS_ID.MAX_FIELD_SECTION_SIZE, 65536],
    ]);
    expect(frame.toString('hex')).toBe('04' + '09' + '0100' + '0700' + '06' + '80010000');
    expect(parseSettings(frame.subarray(2))).toEqual(
      new Map([
        [1, 0],
        [7, 0],
        [6, 65536],
      ]),
    );
    const grease = 0x1fn * 0x100000000000000n + 0x21n;
    expect(isGreaseCodepoint(grease)).toBe(true);
    const withGrease = encodeSettings([
      [grease, 7],
      [0x21, 1],
      [6, 100],
    ]);
    expect(parseSettings(withGrease.subarray(2))).toEqual(
      new Map([
        [0x21, 1],
        [6, 100],
      ]),
    );
  });

  it('rejects duplicate and reserved HTTP/2 settings with H3_SETTINGS_ERROR', () => {
    expect(h3ErrorCode(() => parseSettings(hex('0100 0100')))).toBe(H3_ERROR.H3_SETTINGS_ERROR);
    for (const id of [0, 2, 3, 4, 5]) {
      expect(h3ErrorCode(() => parseSettings(Buffer.from([id, 0])))).toBe(H3_ERROR.H3_SETTINGS_ERROR);
    }
    const huge = encodeVarint(0x1fn * 0x100000000000000n + 0x21n);
    expect(h3ErrorCode(() => parseSettings(Buffer.concat([huge, hex('00'), huge, hex('00')])))).toBe(
      H3_ERROR.H3_SETTINGS_ERROR,
    );
    expect(() => encodeSettings([[2, 0]])).toThrow(RangeError);
  });

  it('rejects truncated SETTINGS with H3_FRAME_ERROR', () => {
    expect(h3ErrorCode(() => parseSettings(hex('01')))).toBe(H3_ERROR.H3_FRAME_ERROR);
    expect(h3ErrorCode(() => parseSettings(hex('0140')))).toBe(H3_ERROR.H3_FRAME_ERROR);
    expect(h3ErrorCode(() => parseSettings(hex('40')))).toBe(H3_ERROR.H3_FRAME_ERROR);
    expect(parseSettings(hex(''))).toEqual(new Map());
  });

  it('builds the control stream preface', () => {
    expect(encodeControlStreamPreface([[SETTINGS_ID.QPACK_MAX_TABLE_CAPACITY, 0]]).toString('hex')).toBe(
      '00' + '0402' + '0100',
    );
    expect(STREAM_TYPE.QPACK_DECODER).toBe(3);
  });
});

describe('FrameReader', () => {
  const stream = Buffer.concat([
    encodeSettings([
      [1, 0],
      [6, 4096],
    ]),
    encodeFrame(0x21, hex('deadbeef')), // grease frame: skipped
    encodeHeadersFrame(hex('0000d1d7')),
    encodeDataFrameHeader(3),
    hex('616263'),
    encodeDataFrameHeader(0),
    encodeFrame(0x1f * 7 + 0x21, Buffer.alloc(300, 1)), // larger unknown frame
    encodeDataFrameHeader(200),
    Buffer.alloc(200, 0x7a),
    encodeFrame(BigInt('0x3fffffffffffffe0') - 0x3n, hex('00')), // unknown type above 2^53
    encodeGoaway(8),
    encodeHeadersFrame(hex('0000')),
  ]);
  const expected = [
    { type: FRAME_TYPE.SETTINGS, payload: '0100' + '06' + '5000' },
    { type: FRAME_TYPE.HEADERS, payload: '0000d1d7' },
    { type: FRAME_TYPE.DATA, payload: '616263' },
    { type: FRAME_TYPE.DATA, payload: '' },
    { type: FRAME_TYPE.DATA, payload: '7a'.repeat(200) },
    { type: FRAME_TYPE.GOAWAY, payload: '08' },
    { type: FRAME_TYPE.HEADERS, payload: '0000' },
  ];

  it('reads a whole stream pushed at once', () => {
    const r = new FrameReader();
    expect(normalise(r.push(stream))).toEqual(expected);
    expect(r.atFrameBoundary).toBe(true);
    r.end();
  });

  it('gives the same frames when the stream is split at every byte boundary', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const r = new FrameReader();
      const events = [...r.push(stream.subarray(0, cut)), ...r.push(stream.subarray(cut))];
      expect(normalise(events), `cut at ${cut}`).toEqual(expected);
      r.end();
    }
  });

  it('gives the same frames when fed one byte at a time', () => {
    const r = new FrameReader();
    const events: H3FrameEvent[] = [];
    for (let i = 0; i < stream.length; i++) events.push(...r.push(stream.subarray(i, i + 1)));
    expect(normalise(events)).toEqual(expected);
    // DATA arrives piecewise, not buffered whole.
    expect(events.filter((e) => e.kind === 'data').length).toBeGreaterThan(200);
  });

  it('streams DATA pieces as views without waiting for the frame end', () => {
    const r = new FrameReader();
    const first = r.push(Buffer.concat([encodeDataFrameHeader(10), hex('0102')]));
    expect(first).toEqual([{ kind: 'data', data: hex('0102'), frameEnd: false }]);
    expect(r.atFrameBoundary).toBe(false);
    const rest = r.push(hex('0304050607080910'));
    expect(rest).toEqual([{ kind: 'data', data: hex('0304050607080910'), frameEnd: true }]);
  });

  it('copies whole-frame payloads so the caller may reuse its chunk', () => {
    const chunk = encodeHeadersFrame(hex('0000d1'));
    const [ev] = new FrameReader().push(chunk);
    chunk.fill(0);
    expect(ev).toEqual({ kind: 'frame', type: FRAME_TYPE.HEADERS, payload: hex('0000d1') });
  });

  it('rejects oversized HEADERS with H3_EXCESSIVE_LOAD before buffering them', () => {
    const r = new FrameReader({ maxFieldSectionFrameSize: 100 });
    expect(h3ErrorCode(() => r.push(encodeFrameHeader(FRAME_TYPE.HEADERS, 101)))).toBe(H3_ERROR.H3_EXCESSIVE_LOAD);
    // Stays failed.
    expect(h3ErrorCode(() => r.push(hex('00')))).toBe(H3_ERROR.H3_EXCESSIVE_LOAD);
    expect(new FrameReader({ maxFieldSectionFrameSize: 100 }).push(encodeHeadersFrame(Buffer.alloc(100)))).toHaveLength(1);
  });

  it('rejects oversized control frames and bad GOAWAY lengths with H3_FRAME_ERROR', () => {
    expect(h3ErrorCode(() => new FrameReader({ maxControlFrameSize: 8 }).push(encodeFrameHeader(FRAME_TYPE.SETTINGS, 9)))).toBe(
      H3_ERROR.H3_FRAME_ERROR,
    );
    expect(h3ErrorCode(() => new FrameReader().push(hex('0700')))).toBe(H3_ERROR.H3_FRAME_ERROR);
    expect(h3ErrorCode(() => new FrameReader().push(hex('0709')))).toBe(H3_ERROR.H3_FRAME_ERROR);
    expect(h3ErrorCode(() => new FrameReader().push(hex('0d00')))).toBe(H3_ERROR.H3_FRAME_ERROR);
    // A frame length above 2^53 for a whole frame is refused too.
    expect(h3ErrorCode(() => new FrameReader().push(hex('04 c2197c5eff14e88c')))).toBe(H3_ERROR.H3_FRAME_ERROR);
  });

  it('rejects reserved HTTP/2 frame types with H3_FRAME_UNEXPECTED', () => {
    for (const t of [0x02, 0x06, 0x08, 0x09]) {
      expect(h3ErrorCode(() => new FrameReader().push(Buffer.from([t, 0])))).toBe(H3_ERROR.H3_FRAME_UNEXPECTED);
    }
  });

  it('treats a stream ending inside a frame as H3_FRAME_ERROR', () => {
    const inHeader = new FrameReader();
    inHeader.push(hex('01'));
    expect(h3ErrorCode(() => inHeader.end())).toBe(H3_ERROR.H3_FRAME_ERROR);
    const inPayload = new FrameReader();
    inPayload.push(hex('0105 0000'));
    expect(h3ErrorCode(() => inPayload.end())).toBe(H3_ERROR.H3_FRAME_ERROR);
    const inData = new FrameReader();
    inData.push(hex('0003 61'));
    expect(h3ErrorCode(() => inData.end())).toBe(H3_ERROR.H3_FRAME_ERROR);
    const clean = new FrameReader();
    clean.push(hex('0001 61'));
    expect(() => clean.end()).not.toThrow();
  });

  it('accepts Uint8Array chunks that are views into a larger ArrayBuffer', () => {
    const backing = new Uint8Array(64);
    backing.set(hex('0003616263'), 10);
    const events = new FrameReader().push(backing.subarray(10, 15));
    expect(normalise(events)).toEqual([{ type: 0, payload: '616263' }]);
  });

  it('random bytes, in random chunks, only ever produce events or an H3Error', () => {
    let s = 0x9e3779b9;
    const rnd = () => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return (s >>> 0) / 4294967296;
    };
    let clean = 0;
    for (let n = 0; n < 5000; n++) {
      const bytes = Buffer.from(Array.from({ length: Math.floor(rnd() * 40) }, () => Math.floor(rnd() * 256)));
      const r = new FrameReader({ maxFieldSectionFrameSize: 64, maxControlFrameSize: 64 });
      try {
        let o = 0;
        while (o < bytes.length) {
          const take = 1 + Math.floor(rnd() * 8);
          r.push(bytes.subarray(o, o + take));
          o += take;
        }
        r.end();
        clean++;
      } catch (err) {
        expect(err).toBeInstanceOf(H3Error);
      }
    }
    expect(clean).toBeGreaterThan(0);
  });
});
