// LDAP and LDAPS listeners: accept, enforce the connection caps, hand each socket to a Session, and close
// gracefully (stop accepting, let in-flight operations finish, then end connections). The listen section
// of the configuration is used as it is: no field is copied.
import { readFileSync } from 'node:fs';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createSecureContext, createServer as createTlsServer, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { ListenConfig } from '../config/schema';
import { OID, ResultCode } from '../ldap/protocol';
import type { Handlers, OpObserver } from '../ldap/types';
import { encodeExtended } from './ldapjs';
import { Session } from './session';

export function splitHostPort(hp: string): { host: string; port: number } {
  const i = hp.lastIndexOf(':');
  return { host: hp.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(hp.slice(i + 1)) };
}

export class LdapListeners<I> {
  private readonly servers: Server[] = [];
  private readonly sessions = new Set<Session<I>>();
  private readonly perIp = new Map<string, number>();
  private readonly tlsFiles: { cert: Buffer; key: Buffer } | undefined;
  private readonly secureContext: SecureContext | undefined;
  /** actual addresses once listening (port 0 resolves to an ephemeral port) */
  readonly addresses: { ldap?: { host: string; port: number }; ldaps?: { host: string; port: number } } = {};

  constructor(
    private readonly cfg: ListenConfig,
    private readonly handlers: Handlers<I>,
    private readonly observer: OpObserver,
    private readonly log: Logger,
  ) {
    if (cfg.tls) {
      this.tlsFiles = { cert: readFileSync(cfg.tls.cert), key: readFileSync(cfg.tls.key) };
      this.secureContext = createSecureContext({ ...this.tlsFiles, minVersion: 'TLSv1.2' });
    }
  }

  get connectionCount(): number {
    return this.sessions.size;
  }

  async listen(): Promise<void> {
    if (this.cfg.ldap) {
      const srv = createNetServer({ noDelay: true }, (s) => this.accept(s));
      this.addresses.ldap = await this.start(srv, this.cfg.ldap);
    }
    if (this.cfg.ldaps) {
      const srv = createTlsServer({ ...this.tlsFiles, minVersion: 'TLSv1.2' }, (s) => this.accept(s));
      srv.on('tlsClientError', (err) => this.log.debug({ err: err.message }, 'LDAPS handshake failed'));
      this.addresses.ldaps = await this.start(srv, this.cfg.ldaps);
    }
  }

  private start(srv: Server, hp: string): Promise<{ host: string; port: number }> {
    const { host, port } = splitHostPort(hp);
    this.servers.push(srv);
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, () => {
        srv.removeListener('error', reject);
        srv.on('error', (err) => this.log.error({ err: err.message }, 'listener error'));
        const a = srv.address();
        resolve({ host, port: typeof a === 'object' && a ? a.port : port });
      });
    });
  }

  private accept(socket: Socket): void {
    socket.on('error', () => undefined); // a reset before the session attaches must not crash us
    if (this.sessions.size >= this.cfg.maxConnections) {
      this.observer.rejected('max_connections');
      socket.destroy();
      return;
    }
    const ip = socket.remoteAddress ?? '';
    const fromIp = this.perIp.get(ip) ?? 0;
    if (fromIp >= this.cfg.maxConnectionsPerIp) {
      this.observer.rejected('max_connections_per_ip');
      // Notice of Disconnection (RFC 4511 §4.4.1) with busy, then close
      socket.end(encodeExtended(0, ResultCode.busy, { name: OID.noticeOfDisconnection, message: 'too many connections from this address' }));
      return;
    }
    this.perIp.set(ip, fromIp + 1);
    socket.once('close', () => {
      const n = (this.perIp.get(ip) ?? 1) - 1;
      if (n <= 0) this.perIp.delete(ip);
      else this.perIp.set(ip, n);
    });
    const session = new Session<I>(socket, {
      handlers: this.handlers,
      observer: this.observer,
      log: this.log,
      maxPduBytes: this.cfg.maxPduBytes,
      maxOutstanding: this.cfg.maxOutstandingPerConnection,
      idleTimeoutMs: this.cfg.idleTimeoutMs,
      startTLS: this.cfg.startTLS ? this.secureContext : undefined,
    });
    this.sessions.add(session);
    socket.once('close', () => this.sessions.delete(session));
  }

  /** Stop accepting; wait (at most deadlineMs) for in-flight operations; then close every connection. */
  async close(deadlineMs: number): Promise<void> {
    // stop accepting now; a server's close callback only comes once its connections are gone, which is
    // after the disconnects below (awaiting it first would wait forever on any open connection)
    const closed = Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    const until = Date.now() + deadlineMs;
    while (Date.now() < until && [...this.sessions].some((s) => s.busy)) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.sessions) s.disconnect(ResultCode.unavailable, 'server shutting down');
    await closed;
  }
}
