// One client connection: an explicit state machine and the dispatch of every LDAP operation.
//   anonymous --bind ok--> bound(identity) --bind (any outcome)--> anonymous first, then bound or not
//   any --unbind / error / limit--> closed
// A failed rebind leaves the connection anonymous (RFC 4511 §4.2.1), unlike some proxies.
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { encodeEntry, encodeExtended, encodeResult, pagedResponseControl, Parser, type DecodedMessage } from './ldapjs';
import { bindAuthenticationTag, PduFramer, peekEnvelope, splitControls, wellFormed } from './framing';
import { BerDecodeError, decodeSearchBaseAndFilter } from './search-decode';
import { ResultCode, type Handlers, type OpObserver, type PagedRequest, type Scope, type SessionInfo } from './types';

const OID = {
  startTLS: '1.3.6.1.4.1.1466.20037',
  whoami: '1.3.6.1.4.1.4203.1.11.3',
  passwordModify: '1.3.6.1.4.1.4203.1.11.1',
  noticeOfDisconnection: '1.3.6.1.4.1.1466.20036',
  paged: '1.2.840.113556.1.4.319',
  manageDsaIT: '2.16.840.1.113730.3.4.2',
};

// request tag -> response tag, for answering operations we refuse or cannot decode
const RESPONSE_OP: Record<number, number> = { 0x60: 0x61, 0x63: 0x65, 0x66: 0x67, 0x68: 0x69, 0x4a: 0x6b, 0x6c: 0x6d, 0x6e: 0x6f, 0x77: 0x78 };
const OP_NAME: Record<number, string> = { 0x60: 'bind', 0x63: 'search', 0x66: 'modify', 0x68: 'add', 0x4a: 'delete', 0x6c: 'modifyDN', 0x6e: 'compare', 0x77: 'extended' };
const WRITE_OPS = new Set([0x66, 0x68, 0x4a, 0x6c, 0x6e]);
const SCOPES: Scope[] = ['base', 'one', 'sub'];

export interface SessionOptions<I> {
  handlers: Handlers<I>;
  observer: OpObserver;
  log: Logger;
  maxPduBytes: number;
  maxOutstanding: number;
  idleTimeoutMs: number;
  /** present when StartTLS may be offered on a plain connection */
  startTLS?: SecureContext;
  requireTLSForBind: boolean;
}

type State<I> = { kind: 'anonymous' } | { kind: 'bound'; identity: I } | { kind: 'closed' };

let nextId = 1;

export class Session<I> implements SessionInfo<I> {
  readonly id = nextId++;
  readonly remoteAddress: string;
  tls: boolean;
  private state: State<I> = { kind: 'anonymous' };
  private stream: Socket;
  private readonly framer: PduFramer;
  private readonly parser = new Parser();
  private current: Buffer | undefined; // the PDU being decoded (the parser answers synchronously)
  private readonly inFlight = new Map<number, AbortController>();
  private countedTls: boolean; // the label this connection is counted under in the connections gauge
  private corked = false;

  constructor(
    private readonly raw: Socket,
    private readonly o: SessionOptions<I>,
  ) {
    this.stream = raw;
    this.tls = raw instanceof TLSSocket;
    this.remoteAddress = raw.remoteAddress ?? '';
    this.framer = new PduFramer(o.maxPduBytes);
    this.countedTls = this.tls;
    o.observer.connection(1, this.tls);
    raw.setNoDelay(true); // a search answer is several small writes: Nagle costs ~40 ms each (toolchain.md §7.11)
    if (o.idleTimeoutMs > 0) {
      raw.setTimeout(o.idleTimeoutMs);
      raw.on('timeout', () => {
        this.o.observer.rejected('idle_timeout');
        this.disconnect(ResultCode.unavailable, 'idle timeout');
      });
    }
    this.parser.on('message', (m) => this.dispatch(m, this.current as Buffer));
    this.parser.on('error', (err) => this.undecodable(this.current as Buffer, err));
    raw.on('data', this.onData);
    raw.on('error', (err) => o.log.debug({ err: err.message, conn: this.id }, 'client socket error'));
    raw.on('close', () => this.closed());
  }

  /** a getter, not a narrowed field test: the state changes across awaits */
  private get isClosed(): boolean {
    return this.state.kind === 'closed';
  }

  get identity(): I | null {
    return this.state.kind === 'bound' ? this.state.identity : null;
  }

  private readonly onData = (data: Buffer): void => {
    if (this.isClosed) return;
    const { pdus, error } = this.framer.push(data);
    for (const pdu of pdus) {
      if (this.isClosed) return;
      // inconsistent inner lengths or absurd nesting never reach ldapjs's decoders (see wellFormed)
      if (!wellFormed(pdu, 100)) {
        this.undecodable(pdu, new Error('malformed BER'));
        continue;
      }
      this.current = pdu;
      this.parser.buffer = null;
      try {
        this.parser.write(pdu);
      } catch (err) {
        this.undecodable(pdu, err as Error);
      }
    }
    if (error) {
      this.o.observer.rejected(error === 'too_large' ? 'pdu_too_large' : 'malformed');
      this.disconnect(ResultCode.protocolError, error === 'too_large' ? `PDU larger than ${this.o.maxPduBytes} bytes` : 'malformed LDAP message');
    }
  };

  /** ldapjs could not decode the message: answer it when we can tell what it was, else disconnect. */
  private undecodable(pdu: Buffer, err: Error): void {
    const env = peekEnvelope(pdu);
    const formed = wellFormed(pdu, 100);
    const split = formed ? splitControls(pdu) : undefined;
    if (env && split && RESPONSE_OP[env.opTag]) {
      // a control ldapjs cannot decode: unsupported if critical (RFC 4511 §4.1.11), else ignored
      const critical = split.controls.find((c) => c.critical);
      if (critical) {
        this.respond(env.opTag, env.messageId, ResultCode.unavailableCriticalExtension, `unsupported critical control ${critical.oid}`);
        return;
      }
      this.current = split.stripped;
      this.parser.buffer = null;
      try {
        this.parser.write(split.stripped); // no controls now: a second failure ends below, without recursion
      } catch (e) {
        this.undecodable(split.stripped, e as Error);
      }
      return;
    }
    // a bind whose authentication choice is SASL ([3], 0xa3) is not malformed, just unsupported
    const sasl = env?.opTag === 0x60 && formed && bindAuthenticationTag(pdu) === 0xa3;
    if (!sasl) this.o.observer.rejected('malformed');
    if (!env || !RESPONSE_OP[env.opTag]) {
      this.disconnect(ResultCode.protocolError, 'undecodable LDAP message');
      return;
    }
    const code = sasl ? ResultCode.authMethodNotSupported : ResultCode.protocolError;
    const message = sasl ? 'only simple bind is supported' : 'could not decode request';
    this.o.log.debug({ conn: this.id, err: err.message }, 'undecodable request');
    this.respond(env.opTag, env.messageId, code, message);
  }

  private dispatch(m: DecodedMessage, pdu: Buffer): void {
    const started = process.hrtime.bigint();
    const op = m.protocolOp;
    // an unsupported control marked critical must fail the operation (RFC 4511 §4.1.11)
    const critical = m.controls.find((c) => c.criticality && !(c.type === OID.paged && op === 0x63) && c.type !== OID.manageDsaIT);
    if (critical && RESPONSE_OP[op]) {
      this.respond(op, m.messageId, ResultCode.unavailableCriticalExtension, `unsupported critical control ${critical.type}`, started);
      return;
    }
    switch (op) {
      case 0x60:
        void this.bind(m, started);
        return;
      case 0x63:
        void this.search(m, pdu, started);
        return;
      case 0x42: // unbind
        this.close();
        return;
      case 0x50: // abandon: no response; stop sending that operation's entries (RFC 4511 §4.11)
        if (m.abandonId !== undefined) this.inFlight.get(m.abandonId)?.abort();
        return;
      case 0x77:
        this.extended(m, started);
        return;
      default:
        if (WRITE_OPS.has(op)) {
          this.respond(op, m.messageId, ResultCode.unwillingToPerform, 'ldap-gateway is read-only: write operations are not supported', started);
          return;
        }
        this.disconnect(ResultCode.protocolError, 'unsupported operation');
    }
  }

  private async bind(m: DecodedMessage, started: bigint): Promise<void> {
    if (m.version !== 3) return this.respond(0x60, m.messageId, ResultCode.protocolError, 'only LDAPv3 is supported', started);
    const name = m.name ?? '';
    const password = m.credentials ?? '';
    // the connection is anonymous from the moment a bind starts; only success makes it bound again
    this.state = { kind: 'anonymous' };
    this.inFlight.set(m.messageId, new AbortController());
    if (this.o.requireTLSForBind && !this.tls && !(name === '' && password === '')) {
      return this.respond(0x60, m.messageId, ResultCode.confidentialityRequired, 'TLS is required before bind: use LDAPS or StartTLS', started);
    }
    try {
      const { result, identity } = await this.o.handlers.bind({ messageId: m.messageId, name, password }, this);
      if (this.isClosed) return;
      if (result.code === ResultCode.success && identity !== undefined) this.state = { kind: 'bound', identity };
      this.respond(0x60, m.messageId, result.code, result.message, started);
    } catch (err) {
      this.o.log.error({ conn: this.id, err: (err as Error).message }, 'bind handler failed');
      this.respond(0x60, m.messageId, ResultCode.other, 'internal error', started);
    } finally {
      this.inFlight.delete(m.messageId);
    }
  }

  private async search(m: DecodedMessage, pdu: Buffer, started: bigint): Promise<void> {
    if (this.inFlight.size >= this.o.maxOutstanding) {
      this.o.observer.rejected('busy');
      return this.respond(0x63, m.messageId, ResultCode.busy, 'too many outstanding operations on this connection', started);
    }
    let base: string;
    let filter;
    try {
      ({ base, filter } = decodeSearchBaseAndFilter(pdu, { maxDepth: 32, maxNodes: 512 }));
    } catch (err) {
      const msg = err instanceof BerDecodeError ? err.message : 'malformed search request';
      return this.respond(0x63, m.messageId, ResultCode.protocolError, msg, started);
    }
    const pagedCtl = m.controls.find((c) => c.type === OID.paged);
    let paged: PagedRequest | undefined;
    if (pagedCtl) {
      const v = pagedCtl.value as { size?: number; cookie?: Buffer } | undefined;
      paged = { size: v?.size ?? 0, cookie: v?.cookie ?? Buffer.alloc(0) };
    }
    const abort = new AbortController();
    this.inFlight.set(m.messageId, abort);
    try {
      const outcome = await this.o.handlers.search(
        {
          messageId: m.messageId,
          base,
          scope: SCOPES[m.scope ?? 2] ?? 'sub',
          filter,
          attributes: m.attributes ?? [],
          sizeLimit: m.sizeLimit ?? 0,
          timeLimit: m.timeLimit ?? 0,
          typesOnly: m.typesOnly ?? false,
          paged,
        },
        this,
        {
          signal: abort.signal,
          entry: (e) => {
            if (abort.signal.aborted || this.isClosed) throw new Error('abandoned');
            const values = m.typesOnly ? e.attributes.map((a) => ({ type: a.type, values: [] })) : e.attributes;
            if (!this.write(encodeEntry(m.messageId, e.dn, values))) {
              return new Promise<void>((resolve) => this.stream.once('drain', resolve));
            }
          },
        },
      );
      if (abort.signal.aborted || this.isClosed) return;
      if ('drop' in outcome) {
        // partial data must never end in a SearchResultDone (see SearchOutcome)
        this.o.log.warn({ conn: this.id, reason: outcome.reason }, 'search failed after entries were sent: dropping the connection');
        this.o.observer.op('search', ResultCode.unavailable, Number(process.hrtime.bigint() - started) / 1e9);
        this.raw.destroy();
        return;
      }
      const controls = outcome.paged ? [pagedResponseControl(outcome.paged.size, outcome.paged.cookie)] : undefined;
      this.respond(0x63, m.messageId, outcome.code, outcome.message, started, controls);
    } catch (err) {
      if (abort.signal.aborted || this.isClosed) return;
      this.o.log.error({ conn: this.id, err: (err as Error).message }, 'search handler failed');
      this.respond(0x63, m.messageId, ResultCode.other, 'internal error', started);
    } finally {
      this.inFlight.delete(m.messageId);
    }
  }

  private extended(m: DecodedMessage, started: bigint): void {
    const done = (code: number, opts: { name?: string; value?: string; message?: string } = {}) => {
      this.write(encodeExtended(m.messageId, code, opts));
      this.o.observer.op('extended', code, Number(process.hrtime.bigint() - started) / 1e9);
    };
    switch (m.requestName) {
      case OID.whoami:
        return done(ResultCode.success, { value: this.o.handlers.whoami(this) });
      case OID.startTLS:
        return this.startTLS(done);
      case OID.passwordModify:
        return done(ResultCode.unwillingToPerform, { message: 'ldap-gateway is read-only: password changes are not supported' });
      default:
        return done(ResultCode.protocolError, { message: `unsupported extended operation ${m.requestName ?? ''}` });
    }
  }

  private startTLS(done: (code: number, opts?: { name?: string; message?: string }) => void): void {
    const ctx = this.o.startTLS;
    if (!ctx) return done(ResultCode.protocolError, { message: 'StartTLS is not enabled' });
    if (this.tls) return done(ResultCode.operationsError, { message: 'TLS is already established' });
    if (this.inFlight.size > 0) return done(ResultCode.operationsError, { message: 'operations are outstanding' }); // RFC 4511 §4.14.1
    done(ResultCode.success, { name: OID.startTLS }); // the response goes out in clear text, now
    this.raw.uncork();
    this.raw.removeListener('data', this.onData);
    const secure = new TLSSocket(this.raw, { isServer: true, secureContext: ctx });
    secure.on('data', this.onData);
    secure.on('error', (err) => {
      this.o.log.debug({ conn: this.id, err: err.message }, 'StartTLS handshake failed');
      this.raw.destroy();
    });
    this.stream = secure;
    this.tls = true;
    this.o.observer.connection(-1, false);
    this.o.observer.connection(1, true);
    this.countedTls = true;
  }

  private respond(op: number, messageId: number, code: number, message = '', started?: bigint, controls?: unknown[]): void {
    const resOp = RESPONSE_OP[op];
    if (resOp === undefined) return;
    this.write(encodeResult(resOp, messageId, code, message, controls));
    if (started !== undefined) this.o.observer.op(OP_NAME[op] ?? 'unknown', code, Number(process.hrtime.bigint() - started) / 1e9);
  }

  /**
   * Everything written in one tick leaves in one writev: an entry and its SearchResultDone were two
   * syscalls and two TCP segments (NODELAY), a third of the gateway's CPU in a search benchmark.
   */
  private write(buf: Buffer): boolean {
    if (this.isClosed || this.stream.destroyed) return true;
    if (!this.corked) {
      const stream = this.stream; // uncork the stream that was corked, even if StartTLS swaps it meanwhile
      this.corked = true;
      stream.cork();
      process.nextTick(() => {
        this.corked = false;
        stream.uncork();
      });
    }
    return this.stream.write(buf);
  }

  /** Notice of Disconnection (RFC 4511 §4.4.1), then close. */
  disconnect(code: number, message: string): void {
    if (this.isClosed) return;
    this.write(encodeExtended(0, code, { name: OID.noticeOfDisconnection, message }));
    this.close();
  }

  close(): void {
    if (this.isClosed) return;
    this.state = { kind: 'closed' };
    for (const a of this.inFlight.values()) a.abort();
    this.stream.end();
    setTimeout(() => this.raw.destroy(), 1000).unref();
  }

  /** Operations still running (for graceful shutdown). */
  get busy(): boolean {
    return this.inFlight.size > 0;
  }

  private closed(): void {
    if (!this.isClosed) {
      this.state = { kind: 'closed' };
      for (const a of this.inFlight.values()) a.abort();
    }
    this.o.observer.connection(-1, this.countedTls);
    this.o.handlers.closed?.(this);
  }
}
