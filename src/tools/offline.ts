// A core without listeners, for the administrator tools: the same upstream, mapping and bind flow as
// the running gateway, no events, nothing logged but errors.
import pino from 'pino';
import { LockoutGuard } from '../auth/guard';
import { CursorStore } from '../directory/cursors';
import { memoryState } from '../state/memory';
import type { Config, UpstreamConfig } from '../config/schema';
import { buildCore, type Core } from '../core';
import { Metrics } from '../observability/metrics';

export function offlineCore(cfg: Config): Core {
  if (cfg.demo || !cfg.upstream) throw new Error('the tools need an upstream directory (demo: true has none outside the running gateway)');
  const log = pino({ level: 'error' });
  const state = memoryState();
  const guard = new LockoutGuard({ windowMs: 60_000, perAccountIp: 0, perAccount: 0, perIp: 0, bindRatePerIp: 0, bindBurstPerIp: 1 }, state);
  return buildCore({ ...cfg, provisioning: { ...cfg.provisioning, mode: 'off' } }, cfg.upstream as UpstreamConfig, log, new Metrics(), {}, { guard, cursors: new CursorStore(cfg.directory.paging), state });
}
