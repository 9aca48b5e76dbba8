#!/usr/bin/env node
'use strict';
require('../dist/main.js')
  .main()
  .then((code) => process.exit(code), (err) => {
    process.stderr.write(`ldap-gateway: ${(err && err.stack) || String(err)}\n`);
    process.exit(1);
  });
