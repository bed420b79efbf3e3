/**
 * ProxyServer through its real sockets: release, checkpoint round trip,
 * protocol errors, outdev backpressure, vnet framing.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, describe, test } from 'node:test';
import { ErrorCodes } from '../../src/errors.js';
import { ComparatorClient, READY_PROBE, type ComparatorAddresses } from '../../proxy/client.js';
import { arp, tcp, udp, withVnetHeader } from '../../proxy/craft.js';
import { FrameDecoder, encodeFrame, type Frame } from '../../proxy/framing.js';
import { NotifyWords } from '../../proxy/notify.js';
import { ProxyServer, type ProxyServerOptions } from '../../proxy/server.js';

const ANY = { host: '127.0.0.1', port: 0 };

async function startServer(o: Partial<ProxyServerOptions> = {}): Promise<{ server: ProxyServer; addresses: ComparatorAddresses }> {
  const server = new ProxyServer({ primaryIn: ANY, secondaryIn: ANY, outdev: ANY, notify: ANY, ...o });
  await server.start();
  after(() => server.stop());
  const a = server.addresses();
  const at = (x: { address: string; port: number }): { host: string; port: number } => ({ host: x.address, port: x.port });
  return { server, addresses: { primaryIn: at(a.primary_in), secondaryIn: at(a.secondary_in), outdev: at(a.outdev), notify: at(a.notify) } };
}

async function startClient(addresses: ComparatorAddresses, vnetHdr = false): Promise<ComparatorClient> {
  const c = new ComparatorClient(addresses, vnetHdr);
  await c.start();
  after(() => c.stop());
  await c.init();
  await c.ready();
  return c;
}

/** Resolves with the next `n` released frames other than ready() probes. */
function nextFrames(c: ComparatorClient, n: number): Promise<Frame[]> {
  const got: Frame[] = [];
  return new Promise((resolve) => {
    const on = (f: Frame): void => {
      if (f.data.equals(READY_PROBE)) return;
      got.push(f);
      if (got.length === n) {
        c.off('frame', on);
        resolve(got);
      }
    };
    c.on('frame', on);
  });
}

const dgram = (payload: string): Buffer => udp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 53, dport: 4000, payload: Buffer.from(payload) });

describe('ProxyServer', () => {
  test('matching frames are released on outdev; a mismatch sends DO_CHECKPOINT; COLO_CHECKPOINT releases the held frame', async () => {
    const { server, addresses } = await startServer();
    const c = await startClient(addresses);
    const released = nextFrames(c, 1);
    c.sendSecondary(dgram('same'));
    c.sendPrimary(dgram('same'));
    assert.deepEqual((await released)[0].data, dgram('same'));

    const requested = c.nextNotify(NotifyWords.DO_CHECKPOINT);
    const event = once(server, 'checkpoint');
    c.sendSecondary(dgram('secondary says A'));
    c.sendPrimary(dgram('primary says B'));
    await requested;
    const [req] = (await event) as [{ reason: string; flow: string; notified: boolean }];
    assert.equal(req.reason, 'mismatch');
    assert.equal(req.flow, 'udp 10.0.0.2:53 > 10.0.0.9:4000');
    assert.equal(req.notified, true);

    const flushed = nextFrames(c, 1);
    c.sendNotify(NotifyWords.CHECKPOINT_DONE);
    assert.deepEqual((await flushed)[0].data, dgram('primary says B'));
  });

  test('a framing error closes that input with a typed error; the peer can reconnect and the proxy keeps serving', async () => {
    const { server, addresses } = await startServer();
    const c = await startClient(addresses);
    const failed = once(server, 'protocolError');
    const raw = connect(addresses.primaryIn); // replaces the client's primary connection
    raw.on('error', () => {});
    await once(raw, 'connect');
    raw.write(Buffer.from('ffffffff', 'hex'));
    const [{ port, error }] = (await failed) as [{ port: string; error: { code: string } }];
    assert.equal(port, 'primary_in');
    assert.equal(error.code, ErrorCodes.PROXY_FRAME_TOO_LARGE);
    await once(raw, 'close');

    const again = connect(addresses.primaryIn);
    await once(again, 'connect');
    after(() => again.destroy());
    const released = nextFrames(c, 1);
    again.write(encodeFrame(arp('10.0.0.2')));
    assert.deepEqual((await released)[0].data, arp('10.0.0.2'));
  });

  test('an unknown notify message closes the notify connection with a typed error', async () => {
    const { server, addresses } = await startServer();
    const c = await startClient(addresses);
    const failed = once(server, 'protocolError');
    c.sendRaw('notify', encodeFrame(Buffer.from('HELLO')));
    const [{ port, error }] = (await failed) as [{ port: string; error: { code: string; message: string } }];
    assert.equal(port, 'notify');
    assert.equal(error.code, ErrorCodes.PROXY_NOTIFY_BAD_MESSAGE);
    assert.match(error.message, /unknown notify message "HELLO"/);
    await once(c.socket('notify'), 'close');
  });

  test('without an outdev reader the inputs pause at the high-water mark; nothing is lost, order is kept', async () => {
    const highWater = 64 * 1024;
    const { server, addresses } = await startServer({ outputHighWaterBytes: highWater });
    const pri = connect(addresses.primaryIn);
    await once(pri, 'connect');
    after(() => pri.destroy());
    // 4000 uncompared frames of ~1 KiB, each numbered: ~4 MB, far beyond the mark.
    const count = 4000;
    const frame = (i: number): Buffer => {
      const f = arp('10.0.0.2');
      const b = Buffer.concat([f, Buffer.alloc(1000)]);
      b.writeUInt32BE(i, f.length);
      return b;
    };
    const paused = once(server, 'backpressure');
    for (let i = 0; i < count; i++) pri.write(encodeFrame(frame(i)));
    const [state] = (await paused) as [{ paused: boolean }];
    assert.equal(state.paused, true);
    assert.ok(server.output.pendingBytes < highWater + 256 * 1024, `held output ${server.output.pendingBytes} bytes stays near the mark`);

    const out = connect(addresses.outdev);
    const dec = new FrameDecoder();
    const got: number[] = [];
    const done = new Promise<void>((resolve) => {
      out.on('data', (chunk: Buffer) => {
        for (const f of dec.push(chunk)) got.push(f.data.readUInt32BE(42));
        if (got.length === count) resolve();
      });
    });
    after(() => out.destroy());
    await done;
    assert.deepEqual(got, Array.from({ length: count }, (_, i) => i));
  });

  test('vnet headers: the length field travels with each released frame', async () => {
    const { addresses } = await startServer({ vnetHdr: true });
    const c = await startClient(addresses, true);
    const payload = (s: string): Buffer => withVnetHeader(tcp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 80, dport: 1, seq: 1, payload: Buffer.from(s) }), 10);
    const released = nextFrames(c, 1);
    c.sendSecondary(payload('vnet'), 10);
    c.sendPrimary(payload('vnet'), 10);
    const [f] = await released;
    assert.equal(f.vnetHdrLen, 10);
    assert.deepEqual(f.data, payload('vnet'));
  });

  test('listening on a port in use fails with ERR_PROXY_LISTEN_FAILED and releases what it bound', async () => {
    const { addresses } = await startServer();
    const clash = new ProxyServer({ primaryIn: ANY, secondaryIn: ANY, outdev: addresses.outdev, notify: ANY });
    await assert.rejects(clash.start(), (err: unknown) => (err as { code?: string }).code === ErrorCodes.PROXY_LISTEN_FAILED && /outdev/.test((err as Error).message));
  });
});

