/**
 * FloatingAddress (src/net/floating-address.ts) on its own, with the real
 * tools, inside a network namespace of its own (test/helpers/netns.ts): a
 * small script run there with `ip netns exec` drives the module and says
 * what it saw. Taking is idempotent, announcing runs in the background and
 * a release stops it before the address goes (no announcer left running
 * once release() resolved), releasing an absent address is no error, and a
 * missing interface is refused at start.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Topology } from '../helpers/netns.js';

const MODULE = fileURLToPath(new URL('../../src/net/floating-address.js', import.meta.url));
const LOGGER = fileURLToPath(new URL('../../src/util/logger.js', import.meta.url));

/**
 * Runs in the namespace: every step's result as one JSON object on stdout.
 * `announcers()` lists the arping/na6 processes of this namespace's run (by
 * /proc, children of this process).
 */
const SCRIPT = `
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
const { FloatingAddress } = await import(process.argv[1]);
const { createLogger } = await import(process.argv[2]);
const [address, iface] = [process.argv[3], process.argv[4]];
const logger = createLogger('silent');
const announcers = () => readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).filter((p) => {
  try {
    const stat = readFileSync('/proc/' + p + '/stat', 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return ppid === process.pid && /^(arping|na6)$/.test(readFileSync('/proc/' + p + '/comm', 'utf8').trim()) && !/ Z /.test(stat.slice(stat.lastIndexOf(')')));
  } catch { return false; }
}).length;
const count = () => JSON.parse(execFileSync('ip', ['-j', 'addr', 'show', 'dev', iface], { encoding: 'utf8' }))
  .flatMap((l) => l.addr_info ?? []).filter((a) => address.startsWith(a.local + '/')).length;
const out = {};
const missing = new FloatingAddress({ config: { address, interface: 'nosuch0', announceCount: 3 }, logger });
out.missing = await missing.start().then(() => 'started', (e) => e.code + ': ' + e.message);
const fa = new FloatingAddress({ config: { address, interface: iface, announceCount: 5 }, logger });
await fa.start();
out.releasedAbsent = await fa.release('test: absent').then(() => 'ok', (e) => e.message);
await fa.take('test: first');
out.afterTake = { holding: fa.holding, addresses: count(), announcers: announcers() };
await fa.take('test: again');
out.afterSecondTake = { holding: fa.holding, addresses: count() };
await fa.release('test: release while announcing');
out.afterRelease = { holding: fa.holding, addresses: count(), announcers: announcers() };
await fa.stop();
console.log(JSON.stringify(out));
`;

interface Seen {
  missing: string;
  releasedAbsent: string;
  afterTake: { holding: boolean; addresses: number; announcers: number };
  afterSecondTake: { holding: boolean; addresses: number };
  afterRelease: { holding: boolean; addresses: number; announcers: number };
}

describe('FloatingAddress with the real tools, in a namespace', () => {
  const topo = Topology.create({ nodes: ['a', 'c'] });
  after(() => topo.cleanup());
  topo.exec('a', ['ip', 'addr', 'add', 'fd6d:7a6e:2::1/64', 'dev', 'eth0', 'nodad']);

  for (const [family, address] of [
    ['IPv4', `${topo.ip('a').replace(/\.\d+$/, '.201')}/24`],
    ['IPv6', 'fd6d:7a6e:2::201/64'],
  ] as const) {
    test(`${family}: take is idempotent, release stops the announcements before the address goes, an absent address or interface`, () => {
      const text = topo.exec('a', [process.execPath, '--input-type=module', '-e', SCRIPT, MODULE, LOGGER, address, 'eth0']);
      const seen = JSON.parse(text) as Seen;
      assert.match(seen.missing, /^ERR_FLOATING_ADDRESS_FAILED: floating_address\.interface: no interface nosuch0 here/);
      assert.equal(seen.releasedAbsent, 'ok');
      assert.deepEqual({ ...seen.afterTake, announcers: undefined }, { holding: true, addresses: 1, announcers: undefined });
      // IPv4: one arping for all five announcements, a second apart: still running when take() has resolved
      // (IPv6's na6 runs once per announcement, a few milliseconds each, so it may be between two).
      if (family === 'IPv4') assert.equal(seen.afterTake.announcers, 1);
      assert.deepEqual(seen.afterSecondTake, { holding: true, addresses: 1 });
      assert.deepEqual(seen.afterRelease, { holding: false, addresses: 0, announcers: 0 });
    });
  }
});
