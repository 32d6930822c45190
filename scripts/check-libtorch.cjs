#!/usr/bin/env node
// Install step: when no binary is present yet (prebuilds/ or build/Release), make sure a
// libtorch can be found before node-gyp-build compiles, and say how to get one if not.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { find, howTo } = require('./libtorch.cjs');

const root = path.resolve(__dirname, '..');
const hasBinary = fs.existsSync(path.join(root, 'build', 'Release', 'sd_native.node')) ||
  (fs.existsSync(path.join(root, 'prebuilds')) && fs.readdirSync(path.join(root, 'prebuilds')).length > 0);
const t = find();
if (!t) {
  console.error('\n' + howTo() + '\n');
  if (!hasBinary) process.exit(1);
} else {
  console.error(`sd-native: libtorch found: ${t.source}`);
}
