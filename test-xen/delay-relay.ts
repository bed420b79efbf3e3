/**
 * Run in a Xen lab dom0 (by test-xen/remus.sh): a TCP relay between `tandem
 * primary` and `tandem secondary` that passes the stream at once and holds
 * every byte coming back (the secondary's acks) for DELAY ms, in order. With
 * it, a reply the guest sends can reach its client only DELAY ms after the
 * checkpoint that holds it was taken, if output commit waits for the ack.
 * Usage: node dist/test-xen/delay-relay.js LISTEN_PORT TARGET_PORT DELAY_MS
 */
import { connect, createServer } from 'node:net';

const [listenPort, targetPort, delayMs] = process.argv.slice(2).map(Number);

const server = createServer({ allowHalfOpen: true }, (client) => {
  const target = connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true });
  client.pipe(target);
  // Back: each chunk leaves DELAY ms after it came; timers of equal delay fire in order.
  target.on('data', (chunk: Buffer) => setTimeout(() => client.writable && client.write(chunk), delayMs));
  target.on('end', () => setTimeout(() => client.end(), delayMs));
  const close = (): void => {
    client.destroy();
    target.destroy();
  };
  client.on('error', close);
  target.on('error', close);
  client.on('close', close);
  target.on('close', () => setTimeout(close, delayMs));
});
server.listen(listenPort, '127.0.0.1', () => process.stdout.write(`relay ${listenPort} -> ${targetPort}, acks held ${delayMs} ms\n`));
