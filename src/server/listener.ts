// LDAP and LDAPS listeners: accept, enforce the connection caps, hand each socket to a Session, and close
// gracefully (stop accepting, let in-flight operations finish, then end connections). The listen section
// of the configuration is used as it is: no field is copied.
//
// With listen.proxyProtocol, both listeners accept on plain TCP: a trusted peer's connection must begin with
// a PROXY header (proxy-protocol.ts), read on the raw socket within PROXY_HEADER_TIMEOUT_MS; the address it
// names is the client's from then on (connection caps, the Session's remoteAddress: lockout, bind rate,
// audit). On LDAPS the TLS handshake starts after the header (HAProxy in TCP mode writes it first). An
// untrusted peer that begins with a PROXY header is closed; without one it is served as before.
import { readFileSync } from 'node:fs';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createSecureContext, createServer as createTlsServer, TLSSocket, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { ListenConfig } from '../config/schema';
import { OID, ResultCode } from '../ldap/protocol';
import type { Handlers, OpObserver } from '../ldap/types';
import { encodeExtended } from './ldapjs';
import { AddressMatcher, normalizeAddress, peekFirstChunk, readProxyHeader, startsWithProxySignature } from './proxy-protocol';
import { Session } from './session';

/** a trusted peer's PROXY header must be complete within this time */
export const PROXY_HEADER_TIMEOUT_MS = 5000;
/** LDAPS behind listen.proxyProtocol: first byte to completed handshake (tls.Server's default handshakeTimeout) */
const TLS_HANDSHAKE_MS = 120_000;

export function splitHostPort(hp: string): { host: string; port: number } {
  const i = hp.lastIndexOf(':');
  return { host: hp.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(hp.slice(i + 1)) };
}

/** The other processes of a host sharing the listeners (cluster workers): their connections per address. */
export interface ConnectionPeers {
  /** connections from this address the other processes hold now */
  elsewhere(ip: string): number;
  /** this process holds n connections from this address now */
  mine(ip: string, n: number): void;
}

export class LdapListeners<I> {
  private readonly servers: Server[] = [];
  private readonly sessions = new Set<Session<I>>();
  private readonly perIp = new Map<string, number>();
  private readonly tlsFiles: { cert: Buffer; key: Buffer } | undefined;
  private readonly secureContext: SecureContext | undefined;
  /** listen.proxyProtocol.trusted; undefined: PROXY protocol off */
  private readonly trusted: AddressMatcher | undefined;
  /** connections accepted whose PROXY header or TLS handshake is not through yet (they count against maxConnections) */
  private readonly pending = new Set<Socket>();
  private closing = false;
  /** actual addresses once listening (port 0 resolves to an ephemeral port) */
  readonly addresses: { ldap?: { host: string; port: number }; ldaps?: { host: string; port: number } } = {};

  constructor(
    private readonly cfg: ListenConfig,
    private readonly handlers: Handlers<I>,
    private readonly observer: OpObserver,
    private readonly log: Logger,
    private readonly o: {
      /** not shared with the other workers of a cluster (the embedded demo directory is each worker's own) */
      exclusive?: boolean;
      /** the other processes of the host (workers: N), so that maxConnectionsPerIp holds for the host */
      peers?: ConnectionPeers;
    } = {},
  ) {
    if (cfg.tls) {
      this.tlsFiles = { cert: readFileSync(cfg.tls.cert), key: readFileSync(cfg.tls.key) };
      this.secureContext = createSecureContext({ ...this.tlsFiles, minVersion: 'TLSv1.2' });
    }
    if (cfg.proxyProtocol) this.trusted = new AddressMatcher(cfg.proxyProtocol.trusted);
  }

  get connectionCount(): number {
    return this.sessions.size;
  }

  async listen(): Promise<void> {
    if (this.cfg.ldap) {
      const srv = createNetServer({ noDelay: true }, (s) => (this.trusted ? this.preamble(s, false) : this.accept(s)));
      this.addresses.ldap = await this.start(srv, this.cfg.ldap);
    }
    if (this.cfg.ldaps && this.trusted) {
      // the PROXY header comes before the TLS handshake: accept on TCP, TLS after the header (startTls)
      const srv = createNetServer({ noDelay: true }, (s) => this.preamble(s, true));
      this.addresses.ldaps = await this.start(srv, this.cfg.ldaps);
    } else if (this.cfg.ldaps) {
      const srv = createTlsServer({ ...this.tlsFiles, minVersion: 'TLSv1.2' }, (s) => this.accept(s));
      srv.on('tlsClientError', (err) => this.log.debug({ err: err.message }, 'LDAPS handshake failed'));
      this.addresses.ldaps = await this.start(srv, this.cfg.ldaps);
    }
  }

  /** listen.proxyProtocol on: a trusted peer's PROXY header, an untrusted peer's first bytes; then TLS (LDAPS) and accept. */
  private preamble(raw: Socket, tls: boolean): void {
    raw.on('error', () => undefined);
    if (this.sessions.size + this.pending.size >= this.cfg.maxConnections) {
      this.observer.rejected('max_connections');
      raw.destroy();
      return;
    }
    const peer = normalizeAddress(raw.remoteAddress ?? '');
    this.pending.add(raw);
    raw.once('close', () => this.pending.delete(raw));
    if (this.trusted?.has(peer)) {
      void readProxyHeader(raw, PROXY_HEADER_TIMEOUT_MS).then((r) => {
        if (raw.destroyed) return;
        if (!r.ok) {
          if (r.reason === 'closed' && r.bytes === 0) return void raw.destroy(); // connected and left (a plain TCP check)
          return this.refuseProxy(raw, tls, peer, r.detail);
        }
        const client = r.header.command === 'proxy' ? r.header.source.address : peer;
        if (tls) this.startTls(raw, client);
        else this.admit(raw, raw, client);
      });
    } else if (tls) {
      // nothing is decrypted before the handshake: the first bytes are looked at here
      void peekFirstChunk(raw, TLS_HANDSHAKE_MS).then((first) => {
        if (raw.destroyed) return;
        if (!first) return void raw.destroy();
        if (startsWithProxySignature(first)) return this.refuseProxy(raw, tls, peer, 'PROXY protocol header from an untrusted address');
        this.startTls(raw, peer);
      });
    } else {
      this.admit(raw, raw, peer, { refuseProxyHeader: true }); // the session's intake refuses a PROXY header
    }
  }

  private refuseProxy(raw: Socket, tls: boolean, peer: string, detail: string): void {
    this.observer.rejected('proxy_protocol');
    this.log.debug({ peer, err: detail, tls }, 'PROXY protocol: connection refused');
    // on plain LDAP a Notice of Disconnection says why (a client behind a load balancer that sends no
    // header reads it); before a TLS handshake nothing can be said
    if (!tls) raw.end(encodeExtended(0, ResultCode.protocolError, { name: OID.noticeOfDisconnection, message: `PROXY protocol: ${detail}` }));
    raw.destroySoon();
    setTimeout(() => raw.destroy(), 1000).unref();
  }

  /** LDAPS behind listen.proxyProtocol: the handshake on the raw socket, whose buffer still holds the bytes after the header */
  private startTls(raw: Socket, client: string): void {
    const secure = new TLSSocket(raw, { isServer: true, secureContext: this.secureContext });
    const timer = setTimeout(() => secure.destroy(), TLS_HANDSHAKE_MS);
    let secured = false;
    secure.on('error', (err) => {
      if (secured) return; // the session's own handler has it
      clearTimeout(timer);
      this.log.debug({ err: err.message, client }, 'LDAPS handshake failed');
      secure.destroy();
    });
    secure.once('secure', () => {
      secured = true;
      clearTimeout(timer);
      this.admit(secure, raw, client);
    });
    secure.once('close', () => clearTimeout(timer));
  }

  /** Past the preamble: the connection caps, by the client's address, then a Session. */
  private admit(socket: Socket, raw: Socket, client: string, o: { refuseProxyHeader?: boolean } = {}): void {
    // the connection moves from pending to sessions here, synchronously: the cap sees it once
    this.pending.delete(raw);
    if (this.closing) return void socket.destroy();
    this.accept(socket, client, o);
  }

  private start(srv: Server, hp: string): Promise<{ host: string; port: number }> {
    const { host, port } = splitHostPort(hp);
    this.servers.push(srv);
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ port, host, exclusive: this.o.exclusive ?? false }, () => {
        srv.removeListener('error', reject);
        srv.on('error', (err) => this.log.error({ err: err.message }, 'listener error'));
        const a = srv.address();
        resolve({ host, port: typeof a === 'object' && a ? a.port : port });
      });
    });
  }

  private accept(socket: Socket, client?: string, o: { refuseProxyHeader?: boolean } = {}): void {
    socket.on('error', () => undefined); // a reset before the session attaches must not crash us
    if (this.sessions.size >= this.cfg.maxConnections) {
      this.observer.rejected('max_connections');
      socket.destroy();
      return;
    }
    const ip = client ?? socket.remoteAddress ?? '';
    const fromIp = this.perIp.get(ip) ?? 0;
    if (fromIp + (this.o.peers?.elsewhere(ip) ?? 0) >= this.cfg.maxConnectionsPerIp) {
      this.observer.rejected('max_connections_per_ip');
      // Notice of Disconnection (RFC 4511 §4.4.1) with busy, then close
      socket.end(encodeExtended(0, ResultCode.busy, { name: OID.noticeOfDisconnection, message: 'too many connections from this address' }));
      socket.resume(); // read (and drop) until the peer's FIN, so the socket closes; a paused one never would
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    this.perIp.set(ip, fromIp + 1);
    this.o.peers?.mine(ip, fromIp + 1);
    socket.once('close', () => {
      const n = (this.perIp.get(ip) ?? 1) - 1;
      if (n <= 0) this.perIp.delete(ip);
      else this.perIp.set(ip, n);
      this.o.peers?.mine(ip, Math.max(0, n));
    });
    const session = new Session<I>(socket, {
      handlers: this.handlers,
      observer: this.observer,
      log: this.log,
      maxPduBytes: this.cfg.maxPduBytes,
      maxOutstanding: this.cfg.maxOutstandingPerConnection,
      idleTimeoutMs: this.cfg.idleTimeoutMs,
      startTLS: this.cfg.startTLS ? this.secureContext : undefined,
      remoteAddress: client,
      refuseProxyHeader: o.refuseProxyHeader,
    });
    this.sessions.add(session);
    socket.once('close', () => this.sessions.delete(session));
  }

  /** Stop accepting; wait (at most deadlineMs) for in-flight operations; then close every connection. */
  async close(deadlineMs: number): Promise<void> {
    // stop accepting now; a server's close callback only comes once its connections are gone, which is
    // after the disconnects below (awaiting it first would wait forever on any open connection)
    const closed = Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.closing = true;
    for (const raw of this.pending) raw.destroy(); // still in their PROXY header or TLS handshake
    const until = Date.now() + deadlineMs;
    while (Date.now() < until && [...this.sessions].some((s) => s.busy)) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.sessions) s.disconnect(ResultCode.unavailable, 'server shutting down');
    await closed;
  }
}
