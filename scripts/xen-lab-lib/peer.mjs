// lab-peer: run a command on the other Xen lab host (--hosts 2) and relay its
// stdin, output and exit status, with no ssh in the lab's dom0s.
//
//   node peer.mjs serve ADDRESS PORT READY_FILE   (host 2's dom0, started by dom0-stage2.sh)
//   node peer.mjs run ADDRESS PORT COMMAND        (host 1, through the lab-peer wrapper)
//
// Because stdin is relayed, `xl migrate -s "" DOMAIN "lab-peer xl migrate-receive"`
// migrates a guest to the other host as ssh would.
//
// Wire format, one TCP connection per command: the client sends a request
// frame, then stdin frames and one stdin-end frame; the server answers with
// output frames and one exit frame, then closes. A frame is u8 type, u32be
// length, body. Types: 1 request (UTF-8 command for bash -c, cwd the
// project), 2 stdout bytes, 3 stderr bytes, 4 exit (JSON {code, signal}),
// 5 stdin bytes, 6 stdin end. Bodies are bounded; a malformed frame ends the
// connection. The lab network is private to the two dom0s, so there is no
// authentication.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { constants } from 'node:os';

const REQUEST = 1;
const STDOUT = 2;
const STDERR = 3;
const EXIT = 4;
const STDIN = 5;
const STDIN_END = 6;
const MAX_BODY = 1 << 20;
const CONNECT_TIMEOUT_MS = 15_000;

function frame(type, body = Buffer.alloc(0)) {
  const head = Buffer.alloc(5);
  head.writeUInt8(type, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

// Calls onFrame(type, body) for each complete frame in the socket's data.
function readFrames(socket, onFrame, onError) {
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 5) {
      const type = pending.readUInt8(0);
      const length = pending.readUInt32BE(1);
      if (length > MAX_BODY || type < REQUEST || type > STDIN_END) {
        onError(new Error(`lab-peer: bad frame (type ${type}, length ${length})`));
        return;
      }
      if (pending.length < 5 + length) return;
      const body = pending.subarray(5, 5 + length);
      pending = pending.subarray(5 + length);
      onFrame(type, body);
    }
  });
}

// Copies a readable into frames of `type` on the socket, pausing the
// readable while the socket's buffer is full (a migration stream is large).
function pump(readable, socket, type, onEnd) {
  readable.on('data', (d) => {
    if (!socket.write(frame(type, d))) {
      readable.pause();
      socket.once('drain', () => readable.resume());
    }
  });
  readable.on('end', () => onEnd?.());
}

function serve(address, port, readyFile) {
  const server = net.createServer((socket) => {
    let child = null;
    let outputsOpen = 2;
    let exit = null;
    const finish = () => {
      // The exit frame goes last, after all output.
      if (exit && outputsOpen === 0) socket.end(frame(EXIT, Buffer.from(JSON.stringify(exit))));
    };
    socket.on('error', () => {});
    socket.on('close', () => {
      // The client went away: its command must not outlive it.
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    readFrames(socket, (type, body) => {
      if (type === REQUEST && !child) {
        child = spawn('bash', ['-c', body.toString('utf8')], { stdio: ['pipe', 'pipe', 'pipe'] });
        child.stdin.on('error', () => {}); // the command may exit without reading it all
        pump(child.stdout, socket, STDOUT, () => { outputsOpen--; finish(); });
        pump(child.stderr, socket, STDERR, () => { outputsOpen--; finish(); });
        child.on('error', (err) => {
          socket.write(frame(STDERR, Buffer.from(`lab-peer: ${err.message}\n`)));
          exit = { code: 127, signal: null };
          outputsOpen = 0;
          finish();
        });
        child.on('exit', (code, signal) => {
          exit = { code, signal };
          finish();
        });
      } else if (type === STDIN && child) {
        if (!child.stdin.write(body)) {
          socket.pause();
          child.stdin.once('drain', () => socket.resume());
        }
      } else if (type === STDIN_END && child) {
        child.stdin.end();
      } else {
        socket.destroy();
      }
    }, () => socket.destroy());
  });
  server.listen(port, address, () => writeFileSync(readyFile, `${address}:${port}\n`));
}

function run(address, port, command) {
  const socket = net.connect({ host: address, port });
  const timer = setTimeout(() => {
    process.stderr.write(`lab-peer: no connection to ${address}:${port} after ${CONNECT_TIMEOUT_MS} ms\n`);
    process.exit(255);
  }, CONNECT_TIMEOUT_MS);
  let exited = false;
  socket.on('connect', () => {
    clearTimeout(timer);
    socket.write(frame(REQUEST, Buffer.from(command, 'utf8')));
    pump(process.stdin, socket, STDIN, () => socket.write(frame(STDIN_END)));
  });
  socket.on('error', (err) => {
    process.stderr.write(`lab-peer: ${err.message}\n`);
    process.exit(255);
  });
  socket.on('close', () => {
    if (!exited) {
      process.stderr.write('lab-peer: connection closed before the exit status\n');
      process.exit(255);
    }
  });
  // Writes to pipes and files are synchronous on Linux, so exiting right
  // after the exit frame loses no output; it also stops reading a stdin
  // that the remote command never wanted.
  readFrames(socket, (type, body) => {
    if (type === STDOUT) process.stdout.write(body);
    else if (type === STDERR) process.stderr.write(body);
    else if (type === EXIT) {
      exited = true;
      const { code, signal } = JSON.parse(body.toString('utf8'));
      // Like a shell: a command killed by a signal exits 128 + its number.
      process.exit(typeof code === 'number' ? code : 128 + (constants.signals[signal] ?? 0));
    }
  }, (err) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(255);
  });
}

const [mode, address, port, arg] = process.argv.slice(2);
if (mode === 'serve' && address && port && arg) serve(address, Number(port), arg);
else if (mode === 'run' && address && port && arg !== undefined) run(address, Number(port), arg);
else {
  process.stderr.write('usage: peer.mjs serve ADDRESS PORT READY_FILE | peer.mjs run ADDRESS PORT COMMAND\n');
  process.exit(2);
}
