// The operation writer: the one place an operation ends. It writes the response, records the metrics,
// releases the operation's slot, and gives back-pressure to searches (waiting for the socket to drain,
// but never past an abandon or a closed connection).
import type { Socket } from 'node:net';
import { envelope } from '../ldap/ber';
import { OID, REQUESTS, Tag } from '../ldap/protocol';
import type { OpObserver } from '../ldap/types';
import { encodeEntry, encodeExtended, encodeResult } from './ldapjs';

/** One operation in flight: its slot in the session, and its abort signal (abandon, close, shutdown). */
export interface OpContext {
  readonly messageId: number;
  readonly opTag: number;
  readonly started: bigint;
  readonly abort: AbortController;
}

export class OperationWriter {
  private corked = false;
  readonly inFlight = new Map<number, OpContext>();

  constructor(
    private stream: Socket,
    private readonly observer: OpObserver,
  ) {}

  /** StartTLS: from now on write to the TLS socket */
  swap(stream: Socket): void {
    this.stream = stream;
  }

  get closed(): boolean {
    return this.stream.destroyed;
  }

  begin(messageId: number, opTag: number): OpContext {
    const ctx: OpContext = { messageId, opTag, started: process.hrtime.bigint(), abort: new AbortController() };
    this.inFlight.set(messageId, ctx);
    return ctx;
  }

  /** End an operation with its LDAPResult (any response but ExtendedResponse). */
  result(ctx: OpContext, code: number, message = '', opts: { controls?: unknown[]; matchedDN?: string } = {}): void {
    const response = REQUESTS.get(ctx.opTag)?.response;
    if (response !== undefined && response !== Tag.extendedResponse) this.write(encodeResult(response, ctx.messageId, code, message, opts.controls, opts.matchedDN));
    this.finish(ctx, code);
  }

  /** End an extended operation. */
  extended(ctx: OpContext, code: number, opts: { name?: string; value?: string; message?: string } = {}): void {
    this.write(encodeExtended(ctx.messageId, code, opts));
    this.finish(ctx, code);
  }

  /** Answer a request at once with an error, without taking a slot (it may reuse an outstanding messageID). */
  refuse(messageId: number, opTag: number, code: number, message: string): void {
    const response = REQUESTS.get(opTag)?.response;
    if (response === Tag.extendedResponse) this.write(encodeExtended(messageId, code, { message }));
    else if (response !== undefined) this.write(encodeResult(response, messageId, code, message));
    this.observer.op(REQUESTS.get(opTag)?.name ?? 'unknown', code, 0);
  }

  /** End an operation without a response (abandoned, or the connection is being dropped). */
  finish(ctx: OpContext, code: number): void {
    if (this.inFlight.get(ctx.messageId) !== ctx) return; // ended already
    this.inFlight.delete(ctx.messageId);
    this.observer.op(REQUESTS.get(ctx.opTag)?.name ?? 'unknown', code, Number(process.hrtime.bigint() - ctx.started) / 1e9);
  }

  /** Send one search entry; resolves when the socket can take more, rejects once the operation is aborted. */
  entry(ctx: OpContext, dn: string, attributes: ReadonlyArray<{ type: string; values: readonly string[] }>): Promise<void> | void {
    if (ctx.abort.signal.aborted || this.closed) throw new Error('abandoned');
    if (this.write(encodeEntry(ctx.messageId, dn, attributes))) return;
    return this.drained(ctx.abort.signal);
  }

  /** Send one search entry encoded ahead of this operation (ber.ts encodeSearchEntryBody), as entry() does. */
  encodedEntry(ctx: OpContext, body: Buffer): Promise<void> | void {
    if (ctx.abort.signal.aborted || this.closed) throw new Error('abandoned');
    this.write(envelope(ctx.messageId, body.length));
    if (this.write(body)) return;
    return this.drained(ctx.abort.signal);
  }

  private drained(signal: AbortSignal): Promise<void> {
    const stream = this.stream;
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        stream.off('drain', onDrain);
        stream.off('close', onClose);
        signal.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () => done(new Error('connection closed'));
      const onAbort = () => done(new Error('abandoned'));
      stream.on('drain', onDrain);
      stream.on('close', onClose);
      signal.addEventListener('abort', onAbort);
      if (stream.destroyed) onClose();
    });
  }

  /** Notice of Disconnection (RFC 4511 §4.4.1). */
  notice(code: number, message: string): void {
    this.write(encodeExtended(0, code, { name: OID.noticeOfDisconnection, message }));
  }

  /** Abort every operation still in flight (their handlers stop at the next entry or check). */
  abortAll(): void {
    for (const ctx of this.inFlight.values()) ctx.abort.abort();
  }

  /**
   * Everything written in one tick leaves in one writev: an entry and its SearchResultDone were two
   * syscalls and two TCP segments (NODELAY), a third of the gateway's CPU in a search benchmark.
   */
  write(buf: Buffer): boolean {
    const stream = this.stream; // uncork the stream that was corked, even if StartTLS swaps it meanwhile
    if (stream.destroyed || !stream.writable) return true;
    if (!this.corked) {
      this.corked = true;
      stream.cork();
      process.nextTick(() => {
        this.corked = false;
        stream.uncork();
      });
    }
    return stream.write(buf);
  }

  /** Write now, without waiting for the tick (StartTLS: its response must precede the handshake). */
  flush(): void {
    this.stream.uncork();
  }
}
