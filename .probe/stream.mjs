import { measureStream } from '../dist/src/bench/engine.js';
const mib = Number(process.argv[2] ?? 256), rounds = Number(process.argv[3] ?? 5);
const r = await measureStream(mib, rounds, (l) => console.log(l));
console.log(JSON.stringify(r), (r.mb_per_s / r.loopback_mb_per_s).toFixed(2));
