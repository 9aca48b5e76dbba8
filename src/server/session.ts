// One client connection: intake (intake.ts) -> dispatch (here) -> operation writer (writer.ts).
// The connection is an explicit state machine:
//   anonymous --bind--> binding --ok--> bound(identity)      (any other outcome: anonymous, RFC 4511 §4.2.1)
//   anonymous|bound --StartTLS--> tls-handshake --secure--> as before, over TLS
//   any --unbind / error / limit / close--> closed
// While a bind or a TLS handshake is in progress no other operation is started (RFC 4511 §4.2.1, §4.14.1).
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { OID, REQUESTS, ResultCode, SUPPORTED_CONTROLS, Tag } from '../ldap/protocol';
import type { Entry, Handlers, LdapResult, Message, OpObserver, SearchOp, SessionInfo } from '../ldap/types';
import { IntakeStream } from './intake';
import { encodeSearchEntryBody } from '../ldap/ber';
import { pagedResponseControl } from './ldapjs';
import { OperationWriter, type OpContext } from './writer';

/** An entry's attribute types without values (a search with typesOnly). */
const typesOnly = (e: Entry) => e.attributes.map((a) => ({ type: a.type, values: [] }));

export interface SessionOptions<I> {
  handlers: Handlers<I>;
  observer: OpObserver;
  log: Logger;
  maxPduBytes: number;
  maxOutstanding: number;
  idleTimeoutMs: number;
  /** present when StartTLS may be offered on a plain connection */
  startTLS?: SecureContext;
  /** the client's address when it is not the socket's peer (a trusted load balancer's PROXY header) */
  remoteAddress?: string;
  /** refuse a PROXY protocol header at the start of the stream (listen.proxyProtocol on, peer untrusted) */
  refuseProxyHeader?: boolean;
}

type State<I> =
  | { kind: 'anonymous' }
  | { kind: 'binding' }
  | { kind: 'bound'; identity: I }
  | { kind: 'tls-handshake'; identity: I | null }
  | { kind: 'closed' };

const FILTER_LIMITS = { maxFilterDepth: 32, maxFilterNodes: 512 };

let nextId = 1;

export class Session<I> implements SessionInfo<I> {
  readonly id = nextId++;
  readonly remoteAddress: string;
  tls: boolean;
  private state: State<I> = { kind: 'anonymous' };
  private stream: Socket;
  private readonly intake: IntakeStream;
  private readonly out: OperationWriter;
  private countedTls: boolean; // the label this connection is counted under in the connections gauge

  constructor(
    private readonly raw: Socket,
    private readonly o: SessionOptions<I>,
  ) {
    this.stream = raw;
    this.tls = raw instanceof TLSSocket;
    this.remoteAddress = o.remoteAddress ?? raw.remoteAddress ?? '';
    this.intake = new IntakeStream(o.maxPduBytes, FILTER_LIMITS, { refuseProxyHeader: o.refuseProxyHeader });
    this.out = new OperationWriter(raw, o.observer);
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
    raw.on('data', this.onData);
    raw.on('error', (err) => o.log.debug({ err: err.message, conn: this.id }, 'client socket error'));
    raw.on('close', () => this.closed());
    raw.resume(); // a socket whose PROXY header was read is paused, the bytes after it waiting in its buffer
  }

  /** a getter, not a narrowed field test: the state changes across awaits */
  private get isClosed(): boolean {
    return this.state.kind === 'closed';
  }

  get identity(): I | null {
    if (this.state.kind === 'bound') return this.state.identity;
    if (this.state.kind === 'tls-handshake') return this.state.identity;
    return null;
  }

  /** Operations still running (for graceful shutdown). */
  get busy(): boolean {
    return this.out.inFlight.size > 0;
  }

  // ---- intake ----

  private readonly onData = (data: Buffer): void => {
    for (const item of this.intake.push(data)) {
      if (this.isClosed) return;
      switch (item.kind) {
        case 'message':
          this.dispatch(item.message);
          break;
        case 'answer':
          if (item.rejected) this.o.observer.rejected(item.rejected);
          this.o.log.debug({ conn: this.id, err: item.text }, 'undecodable request');
          this.answer(item.messageId, item.opTag, item.code, item.text);
          break;
        case 'fatal':
          this.o.observer.rejected(item.rejected);
          this.disconnect(item.code, item.text);
          return;
      }
    }
  };

  /** Answer a request at once, as its own operation (it counts in the metrics like any other). */
  private answer(messageId: number, opTag: number, code: number, message: string): void {
    this.out.refuse(messageId, opTag, code, message);
  }

  // ---- dispatch ----

  private dispatch(m: Message): void {
    const op = m.operation;
    if (op.op === 'unbind') return this.close();
    if (op.op === 'abandon') {
      // no response; stop sending that operation's entries (RFC 4511 §4.11)
      this.out.inFlight.get(op.abandonId)?.abort.abort();
      return;
    }
    const tag = tagOf(op.op);
    if (this.state.kind === 'binding' || this.state.kind === 'tls-handshake') {
      return this.answer(m.messageId, tag, ResultCode.operationsError, `a ${this.state.kind === 'binding' ? 'bind' : 'TLS handshake'} is in progress on this connection`);
    }
    if (this.out.inFlight.has(m.messageId)) return this.answer(m.messageId, tag, ResultCode.protocolError, 'messageID already in use');
    // an unsupported control marked critical fails the operation (RFC 4511 §4.1.11)
    const critical = m.controls.find((c) => c.critical && !(SUPPORTED_CONTROLS.includes(c.oid) && (c.oid !== OID.pagedResults || op.op === 'search')));
    if (critical) return this.answer(m.messageId, tag, ResultCode.unavailableCriticalExtension, `unsupported critical control ${critical.oid}`);
    if (this.out.inFlight.size >= this.o.maxOutstanding) {
      this.o.observer.rejected('busy');
      return this.answer(m.messageId, tag, ResultCode.busy, 'too many outstanding operations on this connection');
    }
    const ctx = this.out.begin(m.messageId, tag);
    const h = this.o.handlers;
    switch (op.op) {
      case 'bind':
        return void this.run(ctx, () => this.bind(ctx, op));
      case 'search':
        return void this.run(ctx, () => this.search(ctx, op));
      case 'add':
        return void this.run(ctx, () => h.add(op, this));
      case 'modify':
        return void this.run(ctx, () => h.modify(op, this));
      case 'modifyDN':
        return void this.run(ctx, () => h.modifyDN(op, this));
      case 'delete':
        return void this.run(ctx, () => h.delete(op, this));
      case 'compare':
        return void this.run(ctx, () => h.compare(op, this));
      case 'passwordModify':
        return void this.run(ctx, () => h.passwordModify(op, this));
      case 'extended':
        return this.extended(ctx, op.oid);
      default: {
        const never: never = op;
        return never;
      }
    }
  }

  /** Run a handler; whatever it resolves to (or throws) ends the operation exactly once. */
  private async run(ctx: OpContext, fn: () => Promise<LdapResult | undefined>): Promise<void> {
    let result: LdapResult | undefined;
    try {
      result = await fn();
    } catch (err) {
      if (!ctx.abort.signal.aborted && !this.isClosed) this.o.log.error({ conn: this.id, op: REQUESTS.get(ctx.opTag)?.name, err: (err as Error).message }, 'handler failed');
      result = { code: ResultCode.other, message: 'internal error' };
    }
    if (result === undefined) return; // ended by the operation itself
    if (ctx.abort.signal.aborted || this.isClosed) return this.out.finish(ctx, result.code);
    if (ctx.opTag === Tag.extendedRequest) this.out.extended(ctx, result.code, { message: result.message });
    else this.out.result(ctx, result.code, result.message, { matchedDN: result.matchedDN });
  }

  private async bind(_ctx: OpContext, op: Extract<Message['operation'], { op: 'bind' }>): Promise<LdapResult> {
    // the connection is anonymous from the moment a bind starts; only success makes it bound again
    this.state = { kind: 'binding' };
    let outcome: Awaited<ReturnType<Handlers<I>['bind']>> | undefined;
    try {
      outcome = await this.o.handlers.bind(op, this);
    } finally {
      if (!this.isClosed) this.state = outcome?.result.code === ResultCode.success && outcome.identity !== undefined ? { kind: 'bound', identity: outcome.identity } : { kind: 'anonymous' };
    }
    return outcome.result;
  }

  private async search(ctx: OpContext, op: SearchOp): Promise<LdapResult | undefined> {
    const outcome = await this.o.handlers.search(op, this, {
      signal: ctx.abort.signal,
      entry: (e) => this.out.entry(ctx, e.dn, op.typesOnly ? typesOnly(e) : e.attributes),
      encode: (e) => ({ encoded: encodeSearchEntryBody(e.dn, op.typesOnly ? typesOnly(e) : e.attributes) }),
      encoded: (e) => this.out.encodedEntry(ctx, e.encoded),
    });
    if ('drop' in outcome) {
      // a listing that cannot be finished truthfully never ends in a SearchResultDone (SearchOutcome)
      this.o.log.warn({ conn: this.id, reason: outcome.reason }, 'search cannot be completed: dropping the connection');
      this.out.finish(ctx, ResultCode.unavailable);
      this.raw.destroy();
      return undefined;
    }
    if (ctx.abort.signal.aborted || this.isClosed) {
      this.out.finish(ctx, outcome.code);
      return undefined;
    }
    const controls = outcome.paged ? [pagedResponseControl(outcome.paged.size, outcome.paged.cookie)] : undefined;
    this.out.result(ctx, outcome.code, outcome.message, { controls, matchedDN: outcome.matchedDN });
    return undefined;
  }

  private extended(ctx: OpContext, oid: string): void {
    switch (oid) {
      case OID.whoami:
        return this.out.extended(ctx, ResultCode.success, { value: this.o.handlers.whoami(this) });
      case OID.startTLS:
        return this.startTLS(ctx);
      default:
        return this.out.extended(ctx, ResultCode.protocolError, { message: `unsupported extended operation ${oid}` });
    }
  }

  private startTLS(ctx: OpContext): void {
    const tlsCtx = this.o.startTLS;
    if (!tlsCtx) return this.out.extended(ctx, ResultCode.protocolError, { message: 'StartTLS is not enabled' });
    if (this.tls) return this.out.extended(ctx, ResultCode.operationsError, { message: 'TLS is already established' });
    // RFC 4511 §4.14.1: no other operation may be outstanding (this one is in the map itself)
    if (this.out.inFlight.size > 1) return this.out.extended(ctx, ResultCode.operationsError, { message: 'operations are outstanding' });
    this.out.extended(ctx, ResultCode.success, { name: OID.startTLS }); // the response goes out in clear text, now
    this.out.flush();
    const identity = this.identity;
    this.state = { kind: 'tls-handshake', identity };
    this.raw.removeListener('data', this.onData);
    const secure = new TLSSocket(this.raw, { isServer: true, secureContext: tlsCtx });
    secure.on('data', this.onData);
    secure.once('secure', () => {
      if (this.state.kind === 'tls-handshake') this.state = identity === null ? { kind: 'anonymous' } : { kind: 'bound', identity };
    });
    secure.on('error', (err) => {
      this.o.log.debug({ conn: this.id, err: err.message }, 'StartTLS handshake failed');
      this.raw.destroy();
    });
    this.stream = secure;
    this.out.swap(secure);
    this.tls = true;
    this.o.observer.connection(-1, false);
    this.o.observer.connection(1, true);
    this.countedTls = true;
  }

  // ---- ending ----

  /** Notice of Disconnection (RFC 4511 §4.4.1), then close. */
  disconnect(code: number, message: string): void {
    if (this.isClosed) return;
    this.out.notice(code, message);
    this.close();
  }

  close(): void {
    if (this.isClosed) return;
    this.state = { kind: 'closed' };
    this.out.abortAll();
    this.stream.end();
    setTimeout(() => this.raw.destroy(), 1000).unref();
  }

  private closed(): void {
    if (!this.isClosed) {
      this.state = { kind: 'closed' };
      this.out.abortAll();
    }
    this.o.observer.connection(-1, this.countedTls);
    this.o.handlers.closed?.(this);
  }
}

const TAGS: Record<Exclude<Message['operation']['op'], 'unbind' | 'abandon'>, number> = {
  bind: Tag.bindRequest,
  search: Tag.searchRequest,
  add: Tag.addRequest,
  modify: Tag.modifyRequest,
  modifyDN: Tag.modDNRequest,
  delete: Tag.delRequest,
  compare: Tag.compareRequest,
  passwordModify: Tag.extendedRequest,
  extended: Tag.extendedRequest,
};

const tagOf = (op: keyof typeof TAGS): number => TAGS[op];
