/**
 * The service logger's file and formats (src/util/logger.ts): lines append
 * to --log-file; reopen() after the file was moved away writes on at the
 * path with no line lost or written twice, and a path that cannot be opened
 * leaves the log where it was, saying so; the sink moves to a new
 * descriptor only once the write in flight is done; the pretty format is
 * one line an event; secrets are redacted in either format.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, readFileSync, readSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { ErrorCodes, TandemError } from '../../src/errors.js';
import { LogSink } from '../../src/util/log-sink.js';
import { createServiceLogger, type LogFormat } from '../../src/util/logger.js';
import { prettyLine } from '../../src/util/pretty-log.js';
import { tempDir } from '../helpers/cli.js';
import { until } from '../helpers/wait.js';

const tmp = tempDir('tandem-logfile-');
after(() => tmp.cleanup());

const lines = (path: string): string[] => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter((l) => l !== '') : []);
const PRETTY = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) ([a-z-]+): (.*)$/;

describe('--log-file', () => {
  test('appends to what the file holds, and creates it 0640 where missing', async () => {
    const path = tmp.path('append.log');
    writeFileSync(path, 'an earlier line\n');
    const { logger } = createServiceLogger({ level: 'info', name: 'tandem-test', file: path });
    logger.info('first');
    await until(() => lines(path).length === 2, 'the line');
    assert.equal(lines(path)[0], 'an earlier line');
    assert.equal((JSON.parse(lines(path)[1]) as { msg: string }).msg, 'first');

    const fresh = tmp.path('fresh.log');
    createServiceLogger({ level: 'info', name: 'tandem-test', file: fresh }).logger.info('x');
    await until(() => lines(fresh).length === 1, 'the line');
    assert.equal(statSync(fresh).mode & 0o777, 0o640 & ~process.umask());
  });

  test('a file that cannot be opened is a ConfigError naming it', () => {
    assert.throws(
      () => createServiceLogger({ level: 'info', name: 'tandem-test', file: tmp.path('no/such/dir/x.log') }),
      (err: unknown) => err instanceof TandemError && err.code === ErrorCodes.CONFIG_INVALID && /^--log-file: cannot open .*no\/such\/dir\/x\.log for appending: ENOENT$/.test(err.message),
    );
  });

  test('reopen after the file was moved: later lines at the path, earlier ones in the moved file, none lost or twice', async () => {
    const path = tmp.path('rotate.log');
    const log = createServiceLogger({ level: 'info', name: 'tandem-test', file: path });
    for (let i = 0; i < 500; i++) log.logger.info({ i }, 'before');
    renameSync(path, `${path}.1`);
    log.reopen();
    for (let i = 500; i < 1000; i++) log.logger.info({ i }, 'after');
    const seen = (): number[] => [...lines(`${path}.1`), ...lines(path)].map((l) => JSON.parse(l) as { i?: number }).flatMap((l) => (l.i === undefined ? [] : [l.i]));
    await until(() => seen().length >= 1000, 'every line written');
    assert.deepEqual(
      seen().sort((a, b) => a - b),
      Array.from({ length: 1000 }, (_, i) => i),
      'each line once',
    );
    const moved = lines(`${path}.1`).map((l) => JSON.parse(l) as { i?: number; msg: string });
    const current = lines(path).map((l) => JSON.parse(l) as { i?: number; msg: string });
    assert.ok(moved.length > 0, 'lines written before the move stay in the moved file');
    assert.ok(moved.every((l) => l.msg === 'before'), 'nothing logged after the reopen went to the moved file');
    assert.ok(current.some((l) => l.msg === 'log: reopened ' + path), 'the reopen is said in the new file');
    assert.ok(current.filter((l) => l.msg === 'after').length === 500, 'every later line at the path');
  });

  test('a path that cannot be reopened: the log stays in the file it had and says why', async () => {
    const dir = tmp.path('gone-dir');
    spawnSync('mkdir', [dir]);
    const path = `${dir}/x.log`;
    const log = createServiceLogger({ level: 'info', name: 'tandem-test', file: path });
    log.logger.info('one');
    renameSync(dir, `${dir}.moved`);
    log.reopen();
    log.logger.info('two');
    const kept = `${dir}.moved/x.log`;
    await until(() => lines(kept).some((l) => l.includes('"two"')), 'the next line, in the file it had');
    const refused = lines(kept).map((l) => JSON.parse(l) as { msg: string; level: number; err?: { code?: string } });
    const note = refused.find((l) => l.msg.startsWith('log: could not reopen'));
    assert.ok(note !== undefined, JSON.stringify(refused));
    assert.equal(note.level, 50);
    assert.equal(note.err?.code, ErrorCodes.CONFIG_INVALID);
    assert.equal(existsSync(path), false);
  });

  test('the sink moves to the new descriptor only once the write in flight is done', async () => {
    const fifo = tmp.path('fifo');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    // Blocking: a write larger than the pipe holds stays in flight until the reader reads.
    const writer = openSync(fifo, constants.O_WRONLY);
    const file = tmp.path('after-switch.log');
    const fileFd = openSync(file, 'a');
    const sink = new LogSink(writer);
    const big = `${JSON.stringify({ msg: 'x'.repeat(256 * 1024) })}\n`;
    sink.write(big);
    const released: number[] = [];
    sink.switchTo(fileFd, (old) => released.push(old));
    sink.write('{"msg":"after"}\n');
    assert.deepEqual(released, [], 'the old descriptor is still being written');
    let read = 0;
    const buf = Buffer.alloc(65536);
    try {
      await until(() => {
        try {
          read += readSync(reader, buf, 0, buf.length, null);
        } catch {
          // EAGAIN: the writer has not caught up yet.
        }
        return released.length === 1;
      }, 'the write in flight to finish', 30_000, 1);
      assert.deepEqual(released, [writer]);
      await until(() => lines(file).length === 1, 'the next line in the new file');
      assert.equal(lines(file)[0], '{"msg":"after"}');
      // Everything in flight went to the old descriptor, nothing after it.
      for (let i = 0; i < 50; i++) {
        try {
          read += readSync(reader, buf, 0, buf.length, null);
        } catch {
          break;
        }
      }
      assert.equal(read, Buffer.byteLength(big));
    } finally {
      closeSync(writer);
      closeSync(reader);
      closeSync(fileFd);
    }
  });
});

describe('formats and redaction', () => {
  test('pretty: one line an event, with time, level, name, message and the fields', async () => {
    const path = tmp.path('pretty.log');
    const { logger } = createServiceLogger({ level: 'debug', name: 'tandem-test', format: 'pretty', file: path });
    const before = Date.now();
    logger.info({ port: 7700, where: 'a b', quiet: '', nested: { x: 1 }, ok: true }, 'listening\nnow');
    logger.error({ err: new TandemError(ErrorCodes.FENCED, 'fenced: a newer\ngeneration') }, 'failed');
    logger.debug('plain');
    await until(() => lines(path).length === 3, 'three lines');
    const [first, second, third] = lines(path).map((l) => PRETTY.exec(l));
    assert.ok(first && second && third, lines(path).join('\n'));
    const t = Date.parse(first[1]);
    assert.ok(t >= before - 1 && t <= Date.now(), first[1]);
    assert.deepEqual(first.slice(2), ['INFO ', 'tandem-test', 'listening\\nnow port=7700 where="a b" quiet="" nested={"x":1} ok=true']);
    assert.deepEqual(second.slice(2), ['ERROR', 'tandem-test', 'failed err="fenced: a newer\\ngeneration [ERR_FENCED]"']);
    assert.deepEqual(third.slice(2), ['DEBUG', 'tandem-test', 'plain']);
  });

  test('pretty passes through what is not a JSON object, and never throws on odd fields', () => {
    for (const text of ['not json\n', '[1,2]\n', 'null\n']) assert.equal(prettyLine(text), text);
    assert.equal(prettyLine('{"time":1e300,"level":"odd","msg":7}\n'), '- ODD   \n');
    assert.equal(prettyLine(`{"level":30,"time":0,"msg":"m","big":"${'y'.repeat(5000)}"}\n`), `1970-01-01T00:00:00.000Z INFO  m big=${'y'.repeat(1024)}…\n`);
  });

  for (const format of ['json', 'pretty'] as LogFormat[]) {
    test(`${format}: secrets are redacted, at the top and one level down`, async () => {
      const path = tmp.path(`secrets-${format}.log`);
      const { logger } = createServiceLogger({ level: 'info', name: 'tandem-test', format, file: path });
      logger.info(
        { token: 'tok-top-secret', req: { authorization: 'Bearer auth-secret', cookie: 'cookie-secret' }, password: 'pw-secret', key: { privateKey: 'pem-secret' }, who: { token: 'tok-nested-secret' } },
        'a request',
      );
      await until(() => lines(path).length === 1, 'the line');
      const text = readFileSync(path, 'utf8');
      for (const secret of ['tok-top-secret', 'auth-secret', 'cookie-secret', 'pw-secret', 'pem-secret', 'tok-nested-secret']) assert.equal(text.includes(secret), false, `${secret} logged: ${text}`);
      assert.equal(text.split('[redacted]').length - 1, 6, text);
    });
  }
});
