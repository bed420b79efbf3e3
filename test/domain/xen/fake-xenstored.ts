/**
 * LABEL: a minimal stand-in for xenstored, NOT xenstored: it speaks the wire
 * protocol through the same codec as the client, and its store, watch and
 * transaction semantics are the minimum the tests need. The real xenstored
 * is exercised in the Xen lab.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { XenstoreDecoder, XsType, encodeMessage, type XsMessage } from '../../../src/domain/xen/xenstore-wire.js';

const dir = mkdtempSync(join(tmpdir(), 'tandem-xs-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let sockets = 0;

export interface Held {
  conn: Socket;
  msg: XsMessage;
}

export class FakeXenstored {
  readonly path = join(dir, `xs-${++sockets}.sock`);
  readonly store = new Map<string, Buffer>();
  readonly requests: XsMessage[] = [];
  readonly conns = new Set<Socket>();
  /** Requests are kept here instead of answered while `hold` is set. */
  hold = false;
  readonly held: Held[] = [];
  /** Commits to answer with EAGAIN before one succeeds. */
  conflicts = 0;
  /** READs of these paths are answered with this errno. */
  readonly refuse = new Map<string, string>();
  /** Told of every WRITE outside a transaction, after it is stored and its watches fired (a guest's reaction). */
  onWrite: ((path: string, value: Buffer) => void) | undefined;
  private readonly watches = new Map<Socket, { path: string; token: string }[]>();
  private readonly txs = new Map<number, Map<string, Buffer>>();
  private nextTx = 41;
  private server: Server | undefined;

  async start(): Promise<void> {
    this.server = createServer((conn) => {
      this.conns.add(conn);
      this.watches.set(conn, []);
      const decoder = new XenstoreDecoder();
      conn.on('data', (chunk: Buffer) => {
        for (const msg of decoder.push(chunk)) {
          this.requests.push(msg);
          if (this.hold) this.held.push({ conn, msg });
          else this.answer(conn, msg);
        }
      });
      conn.on('error', () => undefined);
      conn.on('close', () => this.conns.delete(conn));
    });
    await new Promise<void>((resolve) => this.server!.listen(this.path, resolve));
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.destroy();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  /** Answers the held requests, in the order given (default: reverse, to prove matching by req_id). */
  release(order: (held: Held[]) => Held[] = (h) => [...h].reverse()): void {
    const held = this.held.splice(0);
    for (const { conn, msg } of order(held)) this.answer(conn, msg);
  }

  send(conn: Socket, type: number, reqId: number, txId: number, payload: Buffer | string): void {
    conn.write(encodeMessage(type, reqId, txId, typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload));
  }

  /** A WATCH_EVENT to every watch on `path` or a parent of it, as xenstored does. */
  fire(path: string): void {
    for (const [conn, list] of this.watches) {
      for (const w of list) if (path === w.path || path.startsWith(`${w.path}/`)) this.send(conn, XsType.WATCH_EVENT, 0, 0, `${path}\0${w.token}\0`);
    }
  }

  answer(conn: Socket, msg: XsMessage): void {
    const strings = msg.payload.toString('latin1').split('\0');
    const ok = (): void => this.send(conn, msg.type, msg.reqId, msg.txId, 'OK\0');
    const error = (errno: string): void => this.send(conn, XsType.ERROR, msg.reqId, msg.txId, `${errno}\0`);
    const tx = msg.txId === 0 ? undefined : this.txs.get(msg.txId);
    if (msg.txId !== 0 && tx === undefined) return error('ENOENT');
    switch (msg.type) {
      case XsType.READ: {
        const refused = this.refuse.get(strings[0]);
        if (refused !== undefined) return error(refused);
        const value = tx?.get(strings[0]) ?? this.store.get(strings[0]);
        if (value === undefined) return error('ENOENT');
        return this.send(conn, XsType.READ, msg.reqId, msg.txId, value);
      }
      case XsType.WRITE: {
        const nul = msg.payload.indexOf(0);
        const path = msg.payload.subarray(0, nul).toString('latin1');
        const value = Buffer.from(msg.payload.subarray(nul + 1));
        if (tx) tx.set(path, value);
        else this.store.set(path, value);
        ok();
        if (!tx) {
          this.fire(path);
          this.onWrite?.(path, value);
        }
        return;
      }
      case XsType.WATCH:
        this.watches.get(conn)!.push({ path: strings[0], token: strings[1] });
        ok();
        // xenstored fires a new watch once, straight after the ack.
        return this.send(conn, XsType.WATCH_EVENT, 0, 0, `${strings[0]}\0${strings[1]}\0`);
      case XsType.UNWATCH: {
        const list = this.watches.get(conn)!;
        const i = list.findIndex((w) => w.path === strings[0] && w.token === strings[1]);
        if (i < 0) return error('ENOENT');
        list.splice(i, 1);
        return ok();
      }
      case XsType.TRANSACTION_START: {
        const id = ++this.nextTx;
        this.txs.set(id, new Map());
        return this.send(conn, XsType.TRANSACTION_START, msg.reqId, 0, `${id}\0`);
      }
      case XsType.TRANSACTION_END: {
        const writes = tx!;
        this.txs.delete(msg.txId);
        if (strings[0] === 'T') {
          if (this.conflicts > 0) {
            this.conflicts--;
            return error('EAGAIN');
          }
          for (const [p, v] of writes) this.store.set(p, v);
          ok();
          for (const p of writes.keys()) this.fire(p);
          return;
        }
        return ok();
      }
      case XsType.RESUME:
        return ok();
      default:
        return error('ENOSYS');
    }
  }
}

