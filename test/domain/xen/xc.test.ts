/**
 * The hypercall co-process: the real xc-ops.py run by the real Python, over
 * a stand-in `xen.lowlevel.xc` module written into a temporary directory
 * (labelled as such: it is not Xen; the Xen lab runs the real one), and
 * XcOps against co-processes that break the protocol.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { XcOps, DEFAULT_PYTHON } from '../../../src/domain/xen/xc.js';
import { tempDir } from '../../helpers/cli.js';

const tmp = tempDir();
after(() => tmp.cleanup());

/** A stand-in xen.lowlevel.xc: domain 5 runs, domain 6 is shut down for suspend; calls are appended to CALLS. */
function fakeXen(body = ''): string {
  const root = tmp.path(`xen-${Math.random().toString(36).slice(2)}`);
  mkdirSync(join(root, 'xen', 'lowlevel'), { recursive: true });
  writeFileSync(join(root, 'xen', '__init__.py'), '');
  writeFileSync(join(root, 'xen', 'lowlevel', '__init__.py'), '');
  const calls = join(root, 'calls');
  writeFileSync(
    join(root, 'xen', 'lowlevel', 'xc.py'),
    `# A stand-in for Xen's xen.lowlevel.xc, for tests: not Xen.
CALLS = ${JSON.stringify(calls)}
DOMS = {5: dict(domid=5, dying=0, crashed=0, shutdown=0, paused=0, blocked=1, running=0, shutdown_reason=0, mem_kb=131072, online_vcpus=2),
        6: dict(domid=6, dying=0, crashed=0, shutdown=1, paused=0, blocked=0, running=0, shutdown_reason=2, mem_kb=131072)}
def note(s):
    with open(CALLS, "a") as f:
        f.write(s + "\\n")
class xc:
    def __init__(self):
${body || '        pass'}
    def domain_getinfo(self, first, n):
        return [DOMS[d] for d in sorted(DOMS) if d >= first][:n]
    def domain_resume(self, dom, fast):
        if dom not in DOMS:
            raise OSError(3, "No such process")
        note("resume %d %d" % (dom, fast))
        return 0
    def domain_pause(self, dom):
        note("pause %d" % dom)
        return 0
    def domain_unpause(self, dom):
        note("unpause %d" % dom)
        return 0
`,
  );
  return root;
}

const calls = (root: string): string[] => (existsSync(join(root, 'calls')) ? readFileSync(join(root, 'calls'), 'utf8').trim().split('\n') : []);

async function refused(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: Error & { code?: string }) => {
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

/** A co-process written in Python that says ready, then answers each request line with `answer(line)`'s output. */
function scripted(answer: string): { file: string; args: string[] } {
  const file = tmp.path(`scripted-${Math.random().toString(36).slice(2)}.py`);
  writeFileSync(file, `import json, sys\nprint(json.dumps({"id": 0, "ok": True, "result": "ready"}), flush=True)\nfor line in sys.stdin:\n    req = json.loads(line)\n${answer}\n`);
  return { file: DEFAULT_PYTHON, args: ['-s', '-B', file] };
}

describe('XcOps over xc-ops.py', { timeout: 30_000 }, () => {
  test('domain info of a running and of a suspended domain, none for a missing one; resume, pause and unpause reach the bindings', async () => {
    const root = fakeXen();
    const xc = await XcOps.start({ xenPythonPath: root });
    try {
      assert.deepEqual(await xc.info(5), { dying: false, crashed: false, shutdown: false, paused: false, blocked: true, running: false, shutdownReason: 0, memKb: 131072, vcpus: 2 });
      assert.deepEqual(await xc.info(6), { dying: false, crashed: false, shutdown: true, paused: false, blocked: false, running: false, shutdownReason: 2, memKb: 131072 });
      // getinfo(7, 1) returns nothing; getinfo(4, 1) returns domain 5, which is not 4.
      assert.equal(await xc.info(7), undefined);
      assert.equal(await xc.info(4), undefined);
      await Promise.all([xc.resume(6), xc.pause(5), xc.unpause(5), xc.resume(5, false)]);
      assert.deepEqual(calls(root), ['resume 6 1', 'pause 5', 'unpause 5', 'resume 5 0']);
      await refused(xc.resume(9), 'ERR_XEN_XC_FAILED', /^resume of domain 9 failed: .*No such process/);
      // A failed hypercall does not stop the co-process.
      assert.equal((await xc.info(6))?.shutdownReason, 2);
      // The plug requests go to the kernel over rtnetlink (this machine's kernel may lack sch_plug: an interface
      // that does not exist gets its error from the kernel either way, which is what reaches the caller).
      await refused(xc.plug(2 ** 31 - 2, 0x10000, 'block'), 'ERR_XEN_XC_FAILED', /^plug block failed: .*(No such device|Invalid argument).*ifindex 2147483646/);
      await refused(xc.plug(0, 0x10000, 'release'), 'ERR_XEN_XC_FAILED', /not an interface index and qdisc handle/);
      assert.equal((await xc.info(6))?.shutdownReason, 2, 'a failed plug request does not stop the co-process');
      await refused(xc.info(0), 'ERR_XEN_NO_DOMAIN', /not a guest's domain id/);
      await refused(xc.info(0x7ff0), 'ERR_XEN_NO_DOMAIN', /not a guest's domain id/);
    } finally {
      await xc.stop();
    }
  });

  test('no Xen here (the bindings cannot open the control interface): start fails with ERR_XEN_XC_UNAVAILABLE, saying why', async () => {
    const root = fakeXen('        raise OSError(2, "No such file or directory: /dev/xen/privcmd")');
    await refused(XcOps.start({ xenPythonPath: root }), 'ERR_XEN_XC_UNAVAILABLE', /cannot open Xen's control interface: .*privcmd/);
    await refused(XcOps.start({ xenPythonPath: tmp.path('nowhere') }), 'ERR_XEN_XC_UNAVAILABLE', /cannot open Xen's control interface: No module named 'xen'/);
    await refused(XcOps.start({ python: tmp.path('no-python') }), 'ERR_XEN_XC_UNAVAILABLE', /cannot start the hypercall co-process: .*ENOENT/);
  });

  for (const [name, answer, message] of [
    ['a reply that is not JSON', '    print("Traceback (most recent call last):", flush=True)', /a reply that is not JSON: "Traceback/],
    ['a reply to another request', '    print(json.dumps({"id": req["id"] + 1, "ok": True, "result": None}), flush=True)', /a reply for request 2, expected 1/],
    ['a reply without "ok"', '    print(json.dumps({"id": req["id"]}), flush=True)', /a reply without "ok"/],
    ['a reply line beyond the bound', '    print("x" * 40000, flush=True)', /a reply line (of \d+ bytes|beyond \d+ bytes)/],
    ['a field of the wrong type', '    print(json.dumps({"id": req["id"], "ok": True, "result": {"dying": 0, "crashed": 0, "shutdown": "yes", "paused": 0, "blocked": 0, "running": 1, "shutdown_reason": 0}}), flush=True)', /field shutdown is "yes"/],
  ] as const) {
    test(`${name}: ERR_XEN_XC_BAD_REPLY, and the co-process is stopped for good`, async () => {
      const xc = await XcOps.start({ command: scripted(answer) });
      try {
        await refused(xc.info(5), 'ERR_XEN_XC_BAD_REPLY', message);
        await refused(xc.pause(5), 'ERR_XEN_XC_CLOSED', /^pause of domain 5: hypercall co-process: /);
      } finally {
        await xc.stop();
      }
    });
  }

  test('no reply in time: ERR_XEN_XC_TIMEOUT for that request and every one after', async () => {
    const xc = await XcOps.start({ command: scripted('    pass'), timeoutMs: 200 });
    try {
      await refused(xc.info(5), 'ERR_XEN_XC_TIMEOUT', /^info of domain 5: no reply in 200 ms/);
      await refused(xc.unpause(5), 'ERR_XEN_XC_CLOSED', /^unpause of domain 5: no reply in 200 ms/);
    } finally {
      await xc.stop();
    }
  });

  test('a co-process that dies fails the requests in flight with ERR_XEN_XC_CLOSED, naming how it ended', async () => {
    const xc = await XcOps.start({ command: scripted('    sys.stderr.write("boom\\\\n"); sys.exit(7)') });
    await refused(xc.info(5), 'ERR_XEN_XC_CLOSED', /ended \(exit code 7\): boom/);
    await xc.stop();
  });
});
