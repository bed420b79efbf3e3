/**
 * Run in a Xen lab dom0 (by bench/xen/remus.sh): an open-loop writer to the
 * lab guest's redis-server: a SET of 1 KiB every 10 ms whatever the replies
 * do, so the guest dirties the same memory under `xl remus` (replies at
 * once) as under Tandem (replies held until acked). Runs until killed.
 * Usage: node dist/bench/xen/load.js HOST:PORT
 */
import { connect } from 'node:net';

const [host, port] = (process.argv[2] ?? '').split(':');
const value = 'x'.repeat(1024);
let i = 0;
const socket = connect({ host, port: Number(port) });
socket.on('error', () => process.exit(0));
socket.on('data', () => {});
socket.on('connect', () => {
  setInterval(() => {
    const key = `load:${i++ % 4096}`;
    socket.write(`*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${value.length}\r\n${value}\r\n`);
  }, 10);
});
