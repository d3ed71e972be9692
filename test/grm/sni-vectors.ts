// The datagrams bpf/quic_sni.h is tested (test/grm/bpf-sni.test.ts) and measured (bench/bpf-sni.ts)
// on, each with the result it must give: the RFC 9001 A.2 client Initial, Initials from quiche (the
// native binding), Initials built here with node:crypto, Chromium captures, and invalid input.
import crypto from 'node:crypto';
import { expect } from 'vitest';
import { quiche } from '@matrixai/quic/native/index.js';
import { buildClientInitial, encodeCryptoFrame } from '../helpers/quic-initial.js';
import { CLIENT_CRYPTO_FRAME, RFC_DCID, V1_PROTECTED_PACKET } from '../unit/initial-rfc-vectors.js';

// Error codes of bpf/quic_sni.h (returned negated).
const E_SHORT = -2;
const E_NOT_INITIAL = -3;
const E_VERSION = -4;
const E_FRAME = -6;
const E_TOO_LONG = -8;

// ---------------------------------------------------------------------------------------------
// Initials built with the test suite's client-side Initial builder (test/helpers/quic-initial.ts,
// RFC 9001 §5 with node:crypto), independent of the C under test.

interface InitialSpec {
  dcid: Buffer;
  pn?: number;
  pnLen?: 1 | 2 | 3 | 4;
  /** Plaintext frames, padded with PADDING to `size` bytes of datagram. */
  frames: Buffer;
  size: number;
}

function protectInitial(spec: InitialSpec): Buffer {
  return buildClientInitial({ dcid: spec.dcid, scid: Buffer.alloc(0), pn: spec.pn ?? 0, pnLength: spec.pnLen ?? 4, extraFrames: spec.frames, padTo: spec.size });
}

const cryptoFrame = encodeCryptoFrame;

function u16(n: number): Buffer {
  return Buffer.from([(n >> 8) & 0xff, n & 0xff]);
}

function u24(n: number): Buffer {
  return Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

function extension(type: number, body: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(body.length), body]);
}

function serverNameExt(name: string): Buffer {
  const host = Buffer.from(name, 'latin1');
  return extension(0, Buffer.concat([u16(host.length + 3), Buffer.from([0]), u16(host.length), host]));
}

/** A TLS 1.3 ClientHello (handshake message) with the given extensions, in order. */
function clientHello(extensions: Buffer[]): Buffer {
  const exts = Buffer.concat(extensions);
  const body = Buffer.concat([
    Buffer.from([0x03, 0x03]),
    crypto.randomBytes(32),
    Buffer.from([0]), // legacy_session_id
    u16(6),
    Buffer.from([0x13, 0x01, 0x13, 0x02, 0x13, 0x03]),
    Buffer.from([1, 0]), // compression: null
    u16(exts.length),
    exts,
  ]);
  return Buffer.concat([Buffer.from([1]), u24(body.length), body]);
}

const supportedVersions = extension(0x2b, Buffer.from([2, 0x03, 0x04]));
const alpnH3 = extension(0x10, Buffer.from([0, 3, 2, 0x68, 0x33]));
const transportParams = extension(0x39, Buffer.from([0x04, 0x04, 0x80, 0x10, 0x00, 0x00]));
/** key_share with X25519MLKEM768 (0x11ec, 1216-byte share) and X25519, as Chrome sends it. */
function pqKeyShare(): Buffer {
  const mlkem = crypto.randomBytes(1216);
  const x25519 = crypto.randomBytes(32);
  const shares = Buffer.concat([u16(0x11ec), u16(mlkem.length), mlkem, u16(0x1d), u16(32), x25519]);
  return extension(0x33, Buffer.concat([u16(shares.length), shares]));
}

// ---------------------------------------------------------------------------------------------
// RFC 9001 Appendix A.2 (client Initial), from the vectors shared with the Initial unit tests.

export function rfcClientInitial(): Buffer {
  // CRYPTO frame, then PADDING up to a 1200-byte datagram: exactly the RFC's protected packet.
  const datagram = protectInitial({ dcid: Buffer.from(RFC_DCID, 'hex'), pn: 2, pnLen: 4, frames: Buffer.from(CLIENT_CRYPTO_FRAME, 'hex'), size: 1200 });
  expect(datagram.toString('hex')).toBe(V1_PROTECTED_PACKET);
  return datagram;
}

// ---------------------------------------------------------------------------------------------
// Real client Initials from quiche 0.18 (native binding of @matrixai/quic).

const CLIENT = { host: '127.0.0.1', port: 40001 };
const SERVER = { host: '127.0.0.1', port: 443 };

function quicheConfig() {
  const cfg = new quiche.Config();
  cfg.setApplicationProtos(['h3']);
  cfg.verifyPeer(false);
  return cfg;
}

function firstDatagram(conn: ReturnType<typeof quiche.Connection.connect>): Buffer {
  const out = new Uint8Array(2048);
  const sent = conn.send(out);
  if (!sent) throw new Error('quiche produced no Initial');
  return Buffer.from(out.subarray(0, sent[0]));
}

/**
 * The client's first Initial for `serverName`. quiche picks a 16-byte DCID; for other lengths
 * the "server" answers with a Retry carrying a new SCID of that length, and the client's next
 * Initial (which then also carries the Retry token) uses it as DCID.
 */
function quicheInitial(serverName: string | null, dcidLen?: number): Buffer {
  const scid = crypto.randomBytes(8);
  const conn = quiche.Connection.connect(serverName, scid, CLIENT, SERVER, quicheConfig());
  const first = firstDatagram(conn);
  if (dcidLen === undefined) return first;
  const odcid = Buffer.from(quiche.Header.fromSlice(first, 20).dcid);
  const retry = new Uint8Array(256);
  const n = quiche.retry(scid, odcid, crypto.randomBytes(dcidLen), Buffer.from('retry-token-1234'), 1, retry);
  conn.recv(retry.subarray(0, n), { to: CLIENT, from: SERVER });
  const second = firstDatagram(conn);
  expect(second[5]).toBe(dcidLen); // DCID length byte of the long header
  return second;
}

// ---------------------------------------------------------------------------------------------
// Real Chromium (Debian chromium, headless, --origin-to-force-quic-on=sni.example:PORT) first
// flights, captured from a UDP socket on this machine. Chrome cuts its ~1.98 kB ClientHello into
// many CRYPTO fragments spread over two Initials: the 1st holds bytes [0, ~60) plus the tail, the
// 2nd the middle (the post-quantum key share). server_name sat in the tail here.

// Capture A, 1st datagram: server_name at CRYPTO 1957..1977, cut over two fragments.
const CHROME_A_DGRAM1 = Buffer.from(
  'cf0000000108fdeef600da3b8e36000044d001fe69672c2c9987e22eb5ca8010f42eba300bc41a40b3603f5a1d8b5788' +
  '16c3f5231b05fe0e3acd7d1700a785a90a4322e1725caa9866a0785d9e2b9f83d6d32352bb300e904d873fcd17f0bf18' +
  'e14d138f0dcf3ee6e73d93f03677ff5c031e7d60291be342870abdf68793c1a1a9075998822111c9b95fd281c66b5ebe' +
  '23c47c18ee1aeea673e778c034e919cda9564ad78c7886ccceb4fe6c39cbc2e9c363d475560d16f7f33e2e385bde9404' +
  '31d79c6e35daba6d585f6d0b73ff2e3a083fc25ac4fd47200805120a882f3bf473f873bcedb639b6a2e1c866cda4999d' +
  '60d7a2ba7ff9245b93b7f680c4ac4bc1be2c8f4df78cbe94d7b6c6e262f8074f5b49f10a937cee38c57c22b82bb7a695' +
  '54828ae13c121d4cbd6d157d12499852be4e3837c934155cbce3c28fd141c6ef79029cf230ebac4b1e89e32030a9cdca' +
  '914c54151be82e4daf78f15b486637bdd65b506dd676cb4af0819a08380bad3ebb5d5ce35409de4511b5f006909a9045' +
  '16f389ae49503629cbc6491a0cf80275d47ea20017d8900b9b5c67b1bd2e16248f05fbe71f1c36f69122f172b4fe7960' +
  '9221704641148dca10a5b305342ad0911614a3acd1da6c3d9c618783df7abec77a6046446dce5a8742ff1cc8f120a9c9' +
  '5829683a54f551763ef7966d2ea5397a9e3f9a113ffdf07051592819eb28b45bea7403554b6ccf2da52cd31c61ee446d' +
  '03822e2218311d8a23f8cbbbcf52eee731085ec05bee717d44feddeff8aad1bd8933643810e38dffd8c650cfea3d8bbc' +
  '01a95c8d9f42650e7b4b3c74aa799cd57f3279cd24a7684979b1590ffa0feb08dcb4e28ca97e937ddbcecfe1927a01ec' +
  'f7d3b21ab376d974901bfc6976346e47e7c9e6e7b00cfc79513ac872f604cf33e5152f93297188d7997fd71904eb1ed8' +
  '36afbce18baa011e09012d6ae8489bc951c4dff4f0f2bc82186130c8acbadf23dc71a6f6f644a68e1f18eb747d56d10a' +
  '4849047cc6c243dd5c0c55a2820f12522b2fb2b51d0d8b6eb12d49753941bfffac47bdd1ea59eddf921ccf4df8b20062' +
  '3d10567f3ff94073467df9af4ca48ac6d2250b570c183edbe128c436b1b2e9f68020cdac0ad354296733a1206c009ada' +
  'f1c3441cc81457d76fc6c67a05b7c23583d52f7d8c86fc8ef16145ef8233d9cd7bd470df27c5e4393d3c8b424066dd00' +
  '75b5915f927db53dfa9c88c24adfb822d0ae8e5632a88b661c8e655ad8c96de72d345af91000edc0fd3abdc2c02e2451' +
  'a5a2cfd6da11e4a4d4b9852304de27697a92008bf81fddd90ce1566f203165b162cfe223f48a54faad74e8eac985e2ec' +
  '747a4814be986ffe1578c047a3b4cc058ab517caf44f7567eb0e13ef0db37db52230509d7c6a4bfb04ada43568deca49' +
  '0fec76f033af0e209fc2f273ca9781cbc1956e87ea8e583850eecbfa9b0c678f4f6b7055520b02386169908c32da9d36' +
  'a1f8d88ea92ef365ae6ba17c814bcccc2fc514d1b020241061bc8b386c25c46ab6a8327e4cc085c35b2bde1905a5ed5f' +
  'b364180ef9beb09d9e6bac7ad68d4a904765773260da8dfc9b08feffb989fe6d3ba9bbba7977cd7f99c2070dec39b3fc' +
  '9db50016539de13ef8b6f4a1995db4d2ee41d0f1b4c822bb47059c728859ed123193c8449d41671e3ab9ece1c3166a06' +
  '9e9b006db15116227927e359fd90d0fd736f3e6ec61c78e2bee9f7972838967ae6ed2fbb6f9625efdfc0d391cc6d522d' +
  '2898',
  'hex',
);

// Capture B, 1st datagram: server_name at CRYPTO 1353..1373.
const CHROME_B_DGRAM1 = Buffer.from(
  'c900000001085cc46c5433344dca000044d026079afcc52e13c6ef92e85d0ede6d16609b88413b743d8a53ca7ce164f5' +
  '2ba8836a3add170de71d5f54d62b0ba1cabdd44ac6b17ee1a10719213c2b99e25e37c2a49a53f37bd0c1bedcad02bb5b' +
  '08f88b7c9521547a52c38ade793c1322350275e8f50e09c524872727da4e1565b30da8245b9342bdd4fdfb4063825613' +
  'be82737a67fdf8e7a6cce82fc4db722cd0179da01b4f0fed3fe89997032827c1a22efaccad66d8012f8fe56179268d44' +
  'e41c3b3641b4683a0c48ec40640085bd2cce53546922d9dde3280e3ea7566bf05be51facd08d4b5aecc7a7b0d4f0b4e0' +
  'b91a4237e3464e2528b957e746b099f02ab40e9f0b0888181aa075afbd37560a9b081d16800187138a95ea0ce2772f38' +
  '6027a661aefc3134b9d36db8874f1a6c8943083e857279375c3520626698b9d3c1c75176aff710cc4b2f48197d3996a9' +
  '6cd0aa836080f098447969ca1809b8a29395edac60b7db858b3a7986c21ffaa388542467c54c0d07e3791d32f828991b' +
  '5286a3d82134c9dc9640166f0863e33577c7f5a777f1d62dc0ecb9e9293d0446f4117b1839c42b9739537ca90a1d6f0b' +
  'aaf0ada43fdff92d72cfcfd8854f5fab662659770dd8892170bd64ff01efa6410d207c81dac1ed9b9d2ed1812eba597b' +
  'e38681302fbf91bc457873ae65c4d9e492f6e5c2b9feca9b91e82d925bf8e0e9e35b7365f33561aceb3d5c291378d7ed' +
  'b72946e876548abd44c2d8ffaf79619bc8df9c52e48f90a849c072cd50e2e1a8914ec6b07a1aa763570f07bafd667e2d' +
  '2b2cefa2e8f66e30c31f7ea750a90b0ad607fa550f5e708681708313835916d53d17ed7034d91cb8b22cdebd7ba2b45d' +
  'd6039766c3f3122535b54c09f29f0751872673ef7c8ef346f612dc4e735b69df148bdafd9af20f0776cf2e76010c77e5' +
  '89e96fc39c8f64d465e0514c68b3bfeb92e0e8b1eea67372269b43a906fb5d619b27d74059f3577d77f092dec147d639' +
  '40567d17b30c42ada4d3a9888b5b751bdcb2cbb36400c26eb228c365a003b006241d6fde6a73e434fb451edb1929a30e' +
  '77b44c02592842e94223b7b480ff1411cadbfc97c1ba96e2b51ce88a35c665bd951fcba83b6b1a8e6de3b1b29f318ab7' +
  'daed33992c3251191ac83250792439d9217fb568779f50b1a5de7a0e1e8b54f039208aca5c5e549d1fde45037d3163e9' +
  '289043fa10f0808db2772ebe7541d86367679b77f45557cfee93ab997c19b50753b978b27204e9ece840c956b266e032' +
  '0237ee14a5accc5d1d3458b84865e7cee676ea32b9b20b1ad91c0a958235d3616163bfef50dc498b12bb04f194340e1c' +
  '827fb5f6117e94da15def213cbe4f358d54da522e6f7f24e5b62794597842e94a938d3818648351906aec6c3221741f5' +
  '7ff008298faba81358f38745ca7d8635ecc32d822aae91551e9127815a95ee4665e40ef345a5b75320b4ad11421e7138' +
  'c53d7c6c78fccf3f32302259d2b7486d98aef71ee7cc99150826086859a4e82e455862040abf888d51d12703a6171c86' +
  '23fbac1dadbd3a1463dbba896eb60a525490b8aadfd4ea4d909622ffa42047b7dff556a4c72245c02c1592fee300623e' +
  'f816f6ffbaed31ae7c39c8d4e2177800877b948b15dcd85da74feaecde5d017d3941eec5c0023586c58071ce145103bf' +
  '2d010d221bfe86c27374583f01bb8e4c317a6219fbb1931ada406774df22229e8f6ebb57a92920104b67c3de2682c6ea' +
  '30c2',
  'hex',
);

// Capture B, 2nd datagram: middle of the ClientHello only (no offset 0).
const CHROME_B_DGRAM2 = Buffer.from(
  'c200000001085cc46c5433344dca000044d00241090d6e314ea2506bd864c3713f5cb57602249dbf6a0307ef182c8311' +
  'bff4abe969170dcd528e2c80453bf463188296610984b1cdfb4142afc318219fd278c3cbcefa73efeadd15d553e7d52f' +
  '19015d2e023fe0c10c9e714f2dca8cdd8df304733eee173ef9be546cd046fdb30f3603206dceab86fbaed81fdc8f11f1' +
  'f6111da5954f86b5a06c9cabf77dfbe54d2dfa3997531ae3d8decde6b4fbf62c9d199324f35cd443ab751091a1bd2805' +
  'dcf8f07f026b1fcc0630e53824eb5aa159f05341a5ca2803062b59254a1b497a3dc07ee3b7a422add22d5599d3535c68' +
  '3917c8e62a0594a0e56acbf8cf8b48600343a9dea6b4e717f2d7f438c5a7f731d87a79d1bc4af25b81e5494f2c4fcf01' +
  '716073947af3ffce6ff62cc7d0f8df64a5d60f48b640a6ca6bc80d675618c23c7b4d93fc1efdde78db0c73c9d8120e0e' +
  '0ff963e2af294dc8054ec680cd084719f71f72134121915e668a8e72d996f33f70d49ffa3ad7d652e2f000ff8f9a1771' +
  '0a69224e5c009fdb9339a201dd515c36e8e30d8780843994e33af0958e8e9f119f44d9a3c5c588d1d06db6ff12c22814' +
  '4d4229bc06ccac08bdb433aa537491c8305c8faa99c3209b3fee1e0633fb0a00f8d05b275959c0633adf6842eaa34006' +
  'e8c738de86cb3624b48ead8f26552791812768964171b1bda6c7ebd499c3c1a90d2d7614b6e482acf8d96f7ebce4a80e' +
  'e7258dc45104276330302fe70ec13b2c127f852dfc839f4ea1872cad748dd6b12c86a5c48a9c6039a43294e8c747efda' +
  '06f472c057b5213ecb57b36ef925a3f6bc34346a707abaa1ee1cab4d5015fce2a5ed38e4397da40787f0e88b0c6dc189' +
  '09e896b9135f2d71dad0aca7f5e573d7bcdbc00ee192a80de99a3b285fc9c9e91088a2dbd944afdf0cba18e1bf360993' +
  'c2fc3881e4ec0713a994bc8764cf1d68409be7029579525b7cae9723e2775fbd691ac8c0452d0734051c0f6b11154109' +
  '5b5d5577d320f78330a2770d5bd9f281630a006d878fc2b5319fac99da96c62bbd1c6d9da3ec17155c0c54ac490ff181' +
  '1b15c312e1cbc6880b5d20519e6173c87b0f16caa16a8ed98e7dc37408ad9c284e9517f4dea56ee71ac3d0eda92b86f3' +
  'dacc0cc4435f505c8f15779ea1520630160df468be987c80c413e57186601de6f8a0ab24d12d8f051cb756336bdb1df0' +
  'd2b333d98f2b545ccd3607100829d1a728022db81da5fb517e93f107f9ec724495675b12b10a2d5806e6dafb96facbca' +
  '056ac6197841dbee3f75e302067000bbef16e714eed05e30b16b286c2d3b315dc86cd8ebc4869c5a825558adbef5d116' +
  'c5f2e95e5bd91d14b381668a2df60a173749481d220a0f23ba9619ec3ce8adab424483aa3521e2ed27c271e59f050ac0' +
  '6c9ebc53f29fa85504eb6883c208e97c0dd249dc99e2672dd910e369f9587d5baf9f1ba9d744b224687b97d598a60629' +
  '774604a0b7693b96d8693560bf315b7c21c105c5deb54b9864494ec39da8d7ec64bf1e32b6e8adff37b11686a6f78a1d' +
  '0206c217211d43606db57d1b835e0936680eccad66350aa5b45f5d2a2c1f111a0e136d6adeafb958de2307463db81ba2' +
  '757410635e00339489dddc25b4dfb80c5ecc6112861ea74f06751073161c9f1c18f18f975f4a1387ed9ffe16db8c988e' +
  'f9f180cc1b3400c84be8f020b9978a7ac9abd474c8f8bcff7b06780c62a6533138f474f5d7306206d3fbcc4dec05b2a3' +
  '9d68',
  'hex',
);

// ---------------------------------------------------------------------------------------------
// Cases

export interface Case {
  name: string;
  datagram: Buffer;
  ret: number; // exact value expected
  sni?: string;
}

export function buildCases(): Case[] {
  const cases: Case[] = [];
  cases.push({ name: 'RFC 9001 A.2 client Initial', datagram: rfcClientInitial(), ret: 11, sni: 'example.com' });

  const names = ['host.example', 'WWW.Example.ORG', 'a.b.c.d.e.f.example.net', 'x'.repeat(59) + '.com'];
  for (const dcidLen of [undefined, 8, 20] as const) {
    for (const name of names) {
      const lower = name.toLowerCase();
      cases.push({
        name: `quiche ${name} dcid ${dcidLen ?? 16}`,
        datagram: quicheInitial(name, dcidLen),
        ret: lower.length,
        sni: lower,
      });
    }
  }
  cases.push({ name: 'quiche, 64-byte name', datagram: quicheInitial('y'.repeat(60) + '.com'), ret: E_TOO_LONG });
  cases.push({ name: 'quiche, no server name', datagram: quicheInitial(null), ret: 0 });

  // Datagrams longer than QUIC_SNI_SCAN_BYTES: only the first 1280 bytes are looked at.
  const dcid = crypto.randomBytes(8);
  const smallCh = clientHello([supportedVersions, serverNameExt('big.example'), alpnH3, transportParams]);
  const big = protectInitial({ dcid, frames: cryptoFrame(0, smallCh), size: 1452 });
  cases.push({ name: '1452-byte datagram', datagram: big, ret: 11, sni: 'big.example' });
  const lateCh = clientHello([supportedVersions, pqKeyShare(), serverNameExt('beyond.example'), transportParams]);
  expect(lateCh.indexOf(Buffer.from('beyond.example'))).toBeGreaterThan(1280);
  cases.push({ name: '1472-byte datagram, server_name after byte 1280', datagram: protectInitial({ dcid, frames: cryptoFrame(0, lateCh), size: 1472 }), ret: 0 });

  // Chrome-like ClientHello: post-quantum key_share before server_name, split over two Initials.
  const splitCh = clientHello([supportedVersions, pqKeyShare(), serverNameExt('late.example'), alpnH3, transportParams]);
  expect(splitCh.length).toBeGreaterThan(1300);
  const cut = 1100;
  const part1 = cryptoFrame(0, splitCh.subarray(0, cut));
  const part2 = cryptoFrame(cut, splitCh.subarray(cut));
  cases.push({ name: 'split ClientHello, server_name in 2nd datagram: 1st', datagram: protectInitial({ dcid, pn: 0, frames: part1, size: 1250 }), ret: 0 });
  cases.push({ name: 'split ClientHello, server_name in 2nd datagram: 2nd', datagram: protectInitial({ dcid, pn: 1, frames: part2, size: 1250 }), ret: 0 });
  // Same, with server_name first: found in the 1st datagram although the ClientHello is incomplete.
  const earlyCh = clientHello([serverNameExt('early.example'), supportedVersions, pqKeyShare(), alpnH3, transportParams]);
  const early1 = cryptoFrame(0, earlyCh.subarray(0, cut));
  cases.push({ name: 'split ClientHello, server_name in 1st datagram', datagram: protectInitial({ dcid, pn: 0, frames: early1, size: 1250 }), ret: 13, sni: 'early.example' });

  // Chrome "chaos protection": CRYPTO fragments out of order, mixed with PING and PADDING.
  const ch = clientHello([supportedVersions, alpnH3, serverNameExt('Chaos.Example'), transportParams]);
  const cuts = [0, 40, 57, 90, ch.length];
  const frag = (i: number) => cryptoFrame(cuts[i], ch.subarray(cuts[i], cuts[i + 1]));
  const chaos = Buffer.concat([Buffer.from([0x01]), frag(2), Buffer.alloc(7), frag(0), Buffer.from([0x01, 0x01]), frag(3), Buffer.alloc(30), frag(1)]);
  cases.push({ name: 'chaos-protected ClientHello (4 fragments, PING, PADDING)', datagram: protectInitial({ dcid, pn: 0, pnLen: 1, frames: chaos, size: 1200 }), ret: 13, sni: 'chaos.example' });
  // ACK before CRYPTO (a client Initial sent after the server's Initial arrived).
  const ack = Buffer.from([0x02, 0x00, 0x05, 0x01, 0x00, 0x00, 0x00]); // largest 0, delay 5, 1 extra range
  cases.push({ name: 'ACK then CRYPTO', datagram: protectInitial({ dcid, pn: 2, pnLen: 2, frames: Buffer.concat([ack, cryptoFrame(0, ch)]), size: 1200 }), ret: 13, sni: 'chaos.example' });
  // Retransmission tail only (CRYPTO not starting at 0): no SNI here.
  cases.push({ name: 'CRYPTO at offset 200 only', datagram: protectInitial({ dcid, pn: 3, frames: cryptoFrame(200, ch.subarray(0, 50)), size: 1200 }), ret: 0 });

  cases.push({ name: 'Chromium capture A, 1st datagram', datagram: CHROME_A_DGRAM1, ret: 11, sni: 'sni.example' });
  cases.push({ name: 'Chromium capture B, 1st datagram', datagram: CHROME_B_DGRAM1, ret: 11, sni: 'sni.example' });
  cases.push({ name: 'Chromium capture B, 2nd datagram', datagram: CHROME_B_DGRAM2, ret: 0 });

  // Invalid input.
  const q = quicheInitial('v.example');
  const v2 = Buffer.from(q);
  v2.writeUInt32BE(0x6b3343cf, 1); // QUIC v2 (RFC 9369)
  cases.push({ name: 'QUIC v2 version', datagram: v2, ret: E_VERSION });
  const draft = Buffer.from(q);
  draft.writeUInt32BE(0xff00001d, 1);
  cases.push({ name: 'draft-29 version', datagram: draft, ret: E_VERSION });
  cases.push({ name: 'random garbage', datagram: crypto.createHash('sha512').update('garbage').digest(), ret: E_NOT_INITIAL });
  const wrongKey = Buffer.from(q);
  wrongKey[6] ^= 0xff; // DCID changed: keys, header protection and payload no longer match
  cases.push({ name: 'Initial with altered DCID (wrong keys)', datagram: wrongKey, ret: E_FRAME });
  cases.push({ name: 'truncated Initial', datagram: q.subarray(0, 100), ret: E_SHORT });
  cases.push({ name: 'short header packet', datagram: Buffer.concat([Buffer.from([0x40]), crypto.randomBytes(40)]), ret: E_NOT_INITIAL });
  cases.push({ name: 'empty datagram', datagram: Buffer.alloc(0), ret: E_SHORT });
  return cases;
}
