/**
 * The latency floor for bench/proxy.ts: a Node process with the proxy's four
 * listening sockets that compares nothing. Every non-ARP record on
 * primary_in is answered with DO_CHECKPOINT at once and held; COLO_CHECKPOINT
 * writes the held records to outdev; ARP records go straight to outdev. The
 * time the driver measures against it is what the host, loopback and a Node
 * event loop cost before any comparing happens.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { encodeNotify, NotifyWords } from '../proxy/notify.js';

const DO_CHECKPOINT = encodeNotify(NotifyWords.DO_CHECKPOINT, { direction: 'from-proxy' });
const INIT_REPLY = encodeNotify(NotifyWords.PROXY_INIT_REPLY, { direction: 'from-proxy' });
/** Offset of the EtherType in a record: 4 bytes of length, then 12 of MAC addresses. */
const ETHERTYPE_AT = 16;

let outdev: Socket | undefined;
let notify: Socket | undefined;
let held: Buffer[] = [];

const listen = (onConnection: (s: Socket) => void): Promise<Server> =>
  new Promise((resolve) => {
    const server = createServer({ noDelay: true }, onConnection);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });

const servers = await Promise.all([
  // The driver writes one record per write here, so a read is a record.
  listen((s) => s.on('data', (d: Buffer) => {
    if (d.length > ETHERTYPE_AT + 1 && d.readUInt16BE(ETHERTYPE_AT) === 0x0806) {
      outdev?.write(d);
    } else {
      held.push(d);
      notify?.write(DO_CHECKPOINT);
    }
  })),
  listen((s) => s.on('data', () => {})),
  listen((s) => {
    outdev = s;
    s.on('data', () => {});
  }),
  listen((s) => {
    notify = s;
    s.on('data', (d: Buffer) => {
      const text = d.toString('latin1');
      if (text.includes(NotifyWords.PROXY_INIT)) s.write(INIT_REPLY);
      if (text.includes(NotifyWords.CHECKPOINT_DONE)) {
        for (const h of held) outdev?.write(h);
        held = [];
      }
    });
  }),
]);
const port = (s: Server): number => (s.address() as AddressInfo).port;
process.stdout.write(`listening primary_in=127.0.0.1:${port(servers[0])} secondary_in=127.0.0.1:${port(servers[1])} outdev=127.0.0.1:${port(servers[2])} notify=127.0.0.1:${port(servers[3])}\n`);
process.on('SIGTERM', () => process.exit(0));
