/** The real guest service (SimDomain + KvStore + KvServer) behind a ServiceFront, for the front's tests. */
import net from 'node:net';

import { DeviceSet } from '../../src/checkpoint/devices.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { OutputBuffer, type OutputBufferOptions } from '../../src/front/output-buffer.js';
import { ServiceFront, type ServiceFrontOptions } from '../../src/front/service-front.js';
import { KvStore } from '../../src/guest/kv-store.js';
import { KvServer, type KvServerLimits } from '../../src/guest/server.js';
import { ReplyReader } from '../guest/helpers.js';

export interface Stack {
  domain: SimDomain;
  store: KvStore;
  service: KvServer;
  buffer: OutputBuffer;
  front: ServiceFront;
  frontPort: number;
  devices: DeviceSet;
  /** The paused part of epoch n, as a checkpoint session runs it: pause, postsuspend, preresume, unpause. */
  suspendResume: (epoch: number) => Promise<void>;
  /** The engine's checkpoint callback after the ack: commit(n). */
  commit: (epoch: number) => Promise<void>;
  stop: () => Promise<void>;
}

export async function startStack(bufferOptions: OutputBufferOptions = {}, frontOptions: Partial<ServiceFrontOptions> = {}, pages = 4096, guestLimits: Partial<KvServerLimits> = {}): Promise<Stack> {
  const domain = new SimDomain({ pages });
  const store = KvStore.format(domain, { bytes: domain.usableRamBytes });
  const service = new KvServer({ domain, store, host: '127.0.0.1', port: 0, limits: guestLimits });
  const { port: guestPort } = await service.start();
  const buffer = new OutputBuffer(bufferOptions);
  const devices = new DeviceSet([buffer]);
  const front = new ServiceFront({ buffer, guest: { host: '127.0.0.1', port: guestPort }, port: 0, ...frontOptions });
  const { port: frontPort } = await front.start();
  return {
    domain,
    store,
    service,
    buffer,
    front,
    frontPort,
    devices,
    suspendResume: async (epoch) => {
      domain.pause();
      await devices.run('postsuspend', epoch);
      await devices.run('preresume', epoch);
      domain.unpause();
    },
    commit: (epoch) => devices.run('commit', epoch),
    stop: async () => {
      await front.stop();
      await service.stop();
    },
  };
}

export async function connect(port: number): Promise<{ socket: net.Socket; replies: ReplyReader }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  const replies = new ReplyReader(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, replies };
}
