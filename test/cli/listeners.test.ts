/**
 * A secondary that cannot listen says which of its listeners, where, and
 * why in words, with a Tandem error code: one line, exit status 1.
 */
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { after, describe, test } from 'node:test';
import { runTandem } from '../helpers/cli.js';
import { tlsArgs } from '../helpers/tls.js';

/** A port some other process holds for the test's length. */
async function taken(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  after(() => server.close());
  return { server, port: (server.address() as AddressInfo).port };
}

async function refused(args: string[], pattern: RegExp): Promise<void> {
  const r = runTandem(['secondary', ...args, ...(await tlsArgs('secondary'))]);
  assert.equal(r.status, 1, r.stderr);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('tandem: error: '));
  assert.equal(errors.length, 1, r.stderr);
  assert.match(errors[0], pattern);
}

describe('listeners that cannot listen are named', () => {
  test('the replication listener on a port in use', async () => {
    const { port } = await taken();
    await refused(['--listen', `127.0.0.1:${port}`, '--heartbeat', '127.0.0.1:0'], new RegExp(`^tandem: error: replication listener 127\\.0\\.0\\.1:${port}: address in use \\(another process listens there\\) \\[ERR_TRANSPORT_LISTEN_FAILED\\]$`));
  });

  test('the replication listener on an address this host does not have', async () => {
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never a host's own address.
    await refused(['--listen', '192.0.2.1:7700', '--heartbeat', '127.0.0.1:0'], /^tandem: error: replication listener 192\.0\.2\.1:7700: address not available \(no interface of this host has it\) \[ERR_TRANSPORT_LISTEN_FAILED\]$/);
  });

  test('the heartbeat listener on a port in use', async () => {
    const { port } = await taken();
    await refused(['--listen', '127.0.0.1:0', '--heartbeat', `127.0.0.1:${port}`], new RegExp(`^tandem: error: heartbeat listener 127\\.0\\.0\\.1:${port}: address in use \\(another process listens there\\) \\[ERR_HEARTBEAT_LISTEN_FAILED\\]$`));
  });
});
