// medplum_peer.js - the peer figure for bench_hl7.sh: @medplum/core Hl7Message.parse over the same
// messages, repeated to the same volume, median of RUNS runs on one core.
// usage: node medplum_peer.js MEDPLUM_DIR MESSAGES_FILE MIN_MB RUNS
'use strict';
const path = require('path');
const fs = require('fs');
const [dir, file, minMb, runs] = process.argv.slice(2);
if (typeof globalThis.WebSocket === 'undefined') {
  globalThis.WebSocket = class {}; // medplum's client code touches it at load; parse does not
}
const core = require(path.join(dir, 'node_modules', '@medplum', 'core'));
const version = require(path.join(dir, 'node_modules', '@medplum', 'core', 'package.json')).version;
const raw = fs.readFileSync(file, 'latin1'); // bytes as-is: the C side indexes bytes too
const msgs = raw.split('\x1c').filter((m) => m.length > 0);
const bytes = msgs.reduce((n, m) => n + Buffer.byteLength(m, 'latin1'), 0);
const reps = Math.floor((Number(minMb) * 1e6) / bytes) + 1;
const times = [];
let sink = 0;
for (let r = -1; r < Number(runs); r++) {
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < reps; k++) {
    for (const m of msgs) {
      const h = core.Hl7Message.parse(m);
      sink += h.segments.length;
    }
  }
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r >= 0) times.push(dt);
}
times.sort((a, b) => a - b);
const med = times[Math.floor(times.length / 2)];
console.log(`medplum @medplum/core ${version} Hl7Message.parse: ${msgs.length} distinct messages, ` +
            `${((bytes * reps) / 1e6).toFixed(1)} MB (${msgs.length * reps} messages), ${runs} runs (segments ${sink})`);
console.log(`medplum_mb_per_s=${((bytes * reps) / 1e6 / med).toFixed(1)}`);
console.log(`medplum_msgs_per_s=${((msgs.length * reps) / med).toFixed(0)}`);
