/** The primary's link: COLO handshake records from the secondary, taken in order by type, bounded. */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { encodeBackRecord, type BackRecord } from '../../src/transport/backchannel.js';
import { LinkError, ReplicationLink } from '../../src/transport/link.js';

const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

/** A secondary stand-in that answers every connection by writing `records`. */
async function secondary(records: BackRecord[]): Promise<{ port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    s.write(Buffer.concat(records.map(encodeBackRecord)));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, sockets };
}

describe('ReplicationLink handshake records', () => {
  test('records are taken by type in arrival order; the others stay queued', async () => {
    const { port } = await secondary([
      { type: 'CHECKPOINT_STATE', controlId: 1 },
      { type: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: Uint32Array.from([7, 3]) },
      { type: 'CHECKPOINT_STATE', controlId: 2 },
    ]);
    const link = new ReplicationLink({ host: '127.0.0.1', port, connectTimeoutMs: 2000 });
    await link.start();
    const list = await link.nextRecord('CHECKPOINT_DIRTY_PFN_LIST', 2000);
    assert.deepEqual([...list.pfns], [7, 3]);
    assert.equal((await link.nextRecord('CHECKPOINT_STATE', 2000)).controlId, 1);
    assert.equal((await link.nextRecord('CHECKPOINT_STATE', 2000)).controlId, 2);
    await assert.rejects(link.nextRecord('CHECKPOINT_STATE', 50), (e: unknown) => e instanceof LinkError && /no CHECKPOINT_STATE from the secondary within 50 ms/.test(e.message));
    link.destroy();
  });

  test('a secondary flooding the back-channel with handshakes nobody asked for loses its link', async () => {
    const { port } = await secondary(Array.from({ length: 65 }, () => ({ type: 'CHECKPOINT_STATE', controlId: 3 }) as const));
    const link = new ReplicationLink({ host: '127.0.0.1', port, connectTimeoutMs: 2000 });
    const closed = new Promise<Error>((resolve) => (link.onClose = resolve));
    await link.start();
    const err = await closed;
    assert.match(err.message, /more than 64 handshake records/);
    await assert.rejects(link.nextRecord('CHECKPOINT_DIRTY_PFN_LIST', 1000), LinkError);
  });
});
