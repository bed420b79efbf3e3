#!/usr/bin/env bash
# Save the simulated domain as plain and checkpointed streams in both
# framings, then inspect one. Run from the repository root after `npm ci`.
set -euo pipefail
tandem() { node dist/src/cli/main.js "$@"; }
out=${1:-$(mktemp -d)}
tandem save --sim --out "$out/plain-libxc-v2.stream" --format libxc --stream-version 2 --pages 1024
tandem save --sim --out "$out/plain-libxl-v3.stream" --format libxl --pages 1024
tandem save --sim --out "$out/remus-10.stream" --checkpoints 10 --pages 8192
tandem stream inspect "$out/remus-10.stream" | grep -E '^(epoch|summary)'
