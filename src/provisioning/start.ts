// Provisioning as configured: the provisioner the bind flow calls, the outbox, and the delivery worker.
import type { StateStores } from '../state/types';
import type { Logger } from 'pino';
import type { Config } from '../config/schema';
import type { DirectorySearch } from '../directory/search';
import type { Metrics } from '../observability/metrics';
import { DefguardClient } from './defguard';
import type { BindSuccessEvent, ProvisionedUser } from './events';
import { Outbox, type OutboxEvent } from './outbox';
import { Provisioner } from './provisioner';
import { outboxRedis } from './redis-client';
import { RedisOutbox } from './redis-outbox';
import { defguardUsernameProblem } from './username';
import { WebhookClient } from './webhook';
import { DeliveryWorker, PermanentError, type DeliveryTarget } from './worker';

import type { AuthHooks } from '../core';

/** the virtual attributes a provisioning event carries */
const EVENT_ATTRIBUTES = ['uid', 'givenName', 'sn', 'mail', 'mobile', 'memberOf', 'entryUUID'];

/**
 * directory: the current core's (a reload replaces it). remote: an outbox elsewhere (a cluster worker's
 * supervisor): events are recorded there, and delivered from there, not here.
 */
export function startProvisioning(
  cfg: Config,
  log: Logger,
  metrics: Metrics,
  state: StateStores,
  directory: () => DirectorySearch,
  remote?: { append(e: OutboxEvent): Promise<void> },
): { authHooks: AuthHooks; append?(e: OutboxEvent): Promise<void>; stop(deadlineMs: number): Promise<void> } {
  const p = cfg.provisioning;
  const durable = p.mode === 'defguard' || p.mode === 'webhook';
  // state.redis: the outbox every replica shares (redis-outbox.ts), with the local one for when Redis is unreachable
  const redis = durable && !remote && cfg.state.redis ? outboxRedis(cfg.state.redis) : undefined;
  const outbox = !durable || remote ? undefined : redis ? new RedisOutbox({ redis, keyPrefix: (cfg.state.redis as NonNullable<typeof cfg.state.redis>).keyPrefix, localDir: p.outbox, supersede: p.mode === 'defguard', fsync: p.fsync, log, ...(cfg.instance ? { consumer: `${cfg.instance}-${process.pid}` } : {}) }) : new Outbox(p.outbox, p.mode === 'defguard', p.fsync);
  const provisioner = new Provisioner({ mode: p.mode, outbox: remote ?? outbox, dedupeWindowMs: p.dedupeWindowMs, log, observe: (kind, outcome) => metrics.provisioningEvents.inc({ kind, outcome }) }, state);

  let worker: DeliveryWorker | undefined;
  if (outbox) {
    const target = p.mode === 'defguard' ? defguardTarget(new DefguardClient(p.defguard as NonNullable<typeof p.defguard>)) : webhookTarget(new WebhookClient(p.webhook as NonNullable<typeof p.webhook>));
    worker = new DeliveryWorker(outbox, target, { initialBackoffMs: p.retry.initialMs, maxBackoffMs: p.retry.maxMs, log, observe: (outcome, reason) => metrics.deliveries.inc({ outcome, reason: reason ?? '' }) });
    worker.start();
    metrics.gauge('ldap_gateway_outbox_events', 'Events in the outbox by state (pending delivery, dead letters)', ['state'], (g) => {
      const s = outbox.stats();
      g.set({ state: 'pending' }, s.pending);
      g.set({ state: 'dead' }, s.dead);
    });
    metrics.gauge('ldap_gateway_outbox_oldest_pending_age_seconds', 'Age of the oldest event waiting for delivery', [], (g) => g.set(outbox.stats().oldestPendingAgeSeconds));
    if (outbox instanceof RedisOutbox) metrics.gauge('ldap_gateway_outbox_local_events', 'Events kept in the local outbox while Redis was unreachable, waiting to be handed over', [], (g) => g.set(outbox.stats().local));
  }

  const authHooks: AuthHooks =
    p.mode === 'off'
      ? {}
      : {
          eventNames: EVENT_ATTRIBUTES,
          succeeded: async (ad, identity, client, offline) => {
            // decided offline: the groups kept with the verifier (no membership index is needed, nor may
            // one be buildable: after a restart during the outage there is none)
            const kept = offline?.groups;
            const described = await directory().describeUser(ad, kept ? EVENT_ATTRIBUTES.filter((n) => n !== 'memberOf') : EVENT_ATTRIBUTES);
            const { attrs, groups } = kept ? { ...described, groups: kept } : described;
            const first = (n: string) => attrs.get(n.toLowerCase())?.[0];
            const user: ProvisionedUser = {
              username: identity.username,
              firstName: first('givenName') ?? '',
              lastName: first('sn') ?? '',
              email: first('mail') ?? '',
              ...(first('mobile') ? { phone: first('mobile') } : {}),
              groups,
              ...(identity.guid ? { guid: identity.guid } : {}),
              dn: identity.dn,
              adDn: identity.adDn,
            };
            const ev: BindSuccessEvent = { kind: 'bind.success', at: new Date().toISOString(), client, user, ...(offline ? { offline: true as const } : {}) };
            await provisioner.bindSucceeded(ev);
          },
          failed: (name, reason, client, dn) => provisioner.bindFailed({ kind: 'bind.failure', at: new Date().toISOString(), client, name, reason, ...(dn ? { dn } : {}) }),
        };

  return {
    authHooks,
    ...(outbox ? { append: (e: OutboxEvent) => outbox.append(e) } : {}),
    async stop(deadlineMs) {
      await worker?.stop(deadlineMs);
      await outbox?.close();
      if (redis) await redis.quit().catch(() => redis.disconnect());
    },
  };
}

function defguardTarget(client: DefguardClient): DeliveryTarget {
  return {
    async deliver(e) {
      if (e.kind !== 'bind.success') return 'ignored';
      const user = (e.payload as BindSuccessEvent).user;
      const problem = defguardUsernameProblem(user.username);
      if (problem) throw new PermanentError('invalid_username', `Defguard would reject username '${user.username}': ${problem}`);
      if (!user.email) throw new PermanentError('missing_email', `user '${user.username}' has no mail or userPrincipalName, which Defguard requires`);
      return client.provision(user);
    },
  };
}

function webhookTarget(client: WebhookClient): DeliveryTarget {
  return {
    async deliver(e) {
      await client.send(e.id, e.kind, e.payload);
      return 'sent';
    },
  };
}
