#!/usr/bin/env node
// The npm registry mirror of these machines serves only the Linux builds of some packages'
// platform-specific optional dependencies (rollup's @rollup/rollup-<platform> binaries), so
// `npm install` writes a package-lock.json without the others, and `npm ci` then refuses the
// lockfile as out of sync. This adds the missing optional entries (version, os, cpu, libc from
// the package name) so `npm ci` accepts the lockfile; npm skips them on other platforms, and an
// optional package that cannot be fetched is skipped, never fatal. Run after `npm install`.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const lockPath = path.resolve(__dirname, '..', 'package-lock.json');
const lock = JSON.parse(fs.readFileSync(lockPath, 'utf8'));
const pkgs = lock.packages;
const OS = { android: 'android', darwin: 'darwin', freebsd: 'freebsd', linux: 'linux', openbsd: 'openbsd', openharmony: 'openharmony', win32: 'win32' };
const CPU = { arm: 'arm', arm64: 'arm64', x64: 'x64', ia32: 'ia32', loong64: 'loong64', ppc64: 'ppc64', riscv64: 'riscv64', s390x: 's390x' };

let added = 0;
for (const [where, entry] of Object.entries(pkgs)) {
  for (const [name, range] of Object.entries(entry.optionalDependencies ?? {})) {
    const key = `node_modules/${name}`;
    if (pkgs[key] || !name.startsWith('@rollup/rollup-')) continue;
    const parts = name.slice('@rollup/rollup-'.length).split('-');  // e.g. linux-arm64-musl
    const os = OS[parts[0]];
    const cpu = CPU[parts[1]];
    if (!os || !cpu) continue;
    const libc = parts[2]?.startsWith('musl') ? ['musl'] : parts[2]?.startsWith('gnu') && os === 'linux' ? ['glibc'] : undefined;
    pkgs[key] = { version: range.replace(/^[~^]/, ''), cpu: [cpu], license: 'MIT', optional: true, os: [os], ...(libc ? { libc } : {}) };
    added++;
    void where;
  }
}
const sorted = Object.fromEntries(Object.entries(pkgs).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0)));
lock.packages = sorted;
fs.writeFileSync(lockPath, JSON.stringify(lock, null, 2) + '\n');
console.log(`complete-lockfile: added ${added} optional platform entries`);
