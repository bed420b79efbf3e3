#!/usr/bin/env node
// The build's second step, after tsc: copies the files the compiled code
// reads at run time (the monitor's dashboard, the Xen binding's hypercall
// co-process) next to it in dist/, so that
// dist/ is all an installed package needs. The destination is emptied first:
// a file removed from src/ must not live on in dist/.
import { cpSync, rmSync } from 'node:fs';

const ASSETS = [
  ['src/monitor/static', 'dist/src/monitor/static'],
  ['src/domain/xen/xc-ops.py', 'dist/src/domain/xen/xc-ops.py'],
];

const root = new URL('../', import.meta.url);
for (const [from, to] of ASSETS) {
  const dest = new URL(to, root);
  rmSync(dest, { recursive: true, force: true });
  cpSync(new URL(from, root), dest, { recursive: true });
}
