#!/usr/bin/env node
// npm's install hook: make sure a libtorch can be found (scripts/check-libtorch.cjs says how to
// get one if not), then node-gyp-build: a prebuilt binary when one fits, else a node-gyp build of
// binding.gyp on every core (JOBS=max unless the user set JOBS or npm_config_jobs; one unit at a
// time took 10 min 36 s on 2 cores: docs/BENCHMARKS.md).
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const check = spawnSync(process.execPath, [path.join(__dirname, 'check-libtorch.cjs')], { stdio: 'inherit', cwd: root });
if (check.status !== 0) process.exit(check.status ?? 1);

const env = { ...process.env };
if (!env.JOBS && !env.npm_config_jobs) env.JOBS = 'max';
const bin = require.resolve('node-gyp-build/bin.js', { paths: [root] });
const build = spawnSync(process.execPath, [bin], { stdio: 'inherit', cwd: root, env });
process.exit(build.status ?? 1);
