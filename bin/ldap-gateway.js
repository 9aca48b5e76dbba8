#!/usr/bin/env -S node --max-semi-space-size=64
'use strict';
require('../dist/main.js')
  .main()
  .then((code) => process.exit(code), (err) => {
    process.stderr.write(`ldap-gateway: ${(err && err.stack) || String(err)}\n`);
    process.exit(1);
  });
