// A raw LDAP connection for protocol tests: requests are built with the BER helpers (ber.ts), responses
// are decoded by ldapjs's own parser, independently of the gateway's decoder and encoder.
import { connect, type Socket } from 'node:net';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const ldap = require('ldapjs') as { Parser: new () => { on(ev: string, fn: (x: never) => void): void; write(b: Buffer): void } };

export interface Response {
  messageId: number;
  protocolOp: number;
  status?: number;
  diagnosticMessage?: string;
  responseName?: string;
  objectName?: unknown;
  controls: Array<{ type: string; value?: { size?: number; cookie?: Buffer } }>;
}

export class Wire {
  readonly socket: Socket;
  private readonly queue: Response[] = [];
  private waiters: Array<(r: Response | undefined) => void> = [];
  closed = false;
  readonly ended: Promise<void>;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('error', () => undefined);
    const parser = new ldap.Parser();
    parser.on('message', (m: Response) => {
      const w = this.waiters.shift();
      if (w) w(m);
      else this.queue.push(m);
    });
    parser.on('error', () => undefined);
    this.socket.on('data', (d) => parser.write(d));
    this.ended = new Promise((resolve) =>
      this.socket.once('close', () => {
        this.closed = true;
        for (const w of this.waiters) w(undefined);
        this.waiters = [];
        resolve();
      }),
    );
  }

  ready(): Promise<void> {
    return new Promise((r) => (this.socket.connecting ? this.socket.once('connect', () => r()) : r()));
  }

  send(...pdus: Buffer[]): void {
    this.socket.write(Buffer.concat(pdus));
  }

  /** the next response, or undefined once the connection is closed; rejects after timeoutMs */
  next(timeoutMs = 10_000): Promise<Response | undefined> {
    const r = this.queue.shift();
    if (r) return Promise.resolve(r);
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no response within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (x: Response | undefined) => {
        clearTimeout(timer);
        resolve(x);
      };
      this.waiters.push(waiter);
    });
  }

  /** responses up to and including the one with this op tag (or until the connection closes) */
  async until(protocolOp: number): Promise<{ responses: Response[]; last?: Response }> {
    const responses: Response[] = [];
    for (;;) {
      const r = await this.next();
      if (!r) return { responses };
      responses.push(r);
      if (r.protocolOp === protocolOp) return { responses, last: r };
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
