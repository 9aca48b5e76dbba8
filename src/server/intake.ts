// Intake: bytes in, decoded messages out. Framing (framing.ts), the well-formedness check every PDU passes
// before any decoder sees it, decoding (decode.ts), and what to do with a PDU that cannot be decoded:
// answer it when its operation is known and has a response, otherwise end the connection.
import { wellFormed } from '../ldap/ber';
import { REQUESTS, ResultCode } from '../ldap/protocol';
import type { Message, RejectReason } from '../ldap/types';
import { DecodeError, decodeMessage, peekEnvelope, type DecodeLimits } from './decode';
import { PduFramer } from './framing';
import { startsWithProxySignature } from './proxy-protocol';

export type Intake =
  | { kind: 'message'; message: Message }
  /** answer this request with an error result and go on */
  | { kind: 'answer'; messageId: number; opTag: number; code: number; text: string; rejected?: RejectReason }
  /** end the connection with a Notice of Disconnection */
  | { kind: 'fatal'; code: number; text: string; rejected: RejectReason };

const MAX_BER_DEPTH = 100;

export interface IntakeOptions {
  /** the connection's first bytes must not be a PROXY protocol header (listen.proxyProtocol is on, the peer is not trusted) */
  refuseProxyHeader?: boolean;
}

export class IntakeStream {
  private readonly framer: PduFramer;
  private firstBytes: boolean;

  constructor(
    private readonly maxPduBytes: number,
    private readonly lim: DecodeLimits,
    o: IntakeOptions = {},
  ) {
    this.framer = new PduFramer(maxPduBytes);
    this.firstBytes = o.refuseProxyHeader === true;
  }

  /** Everything a chunk of bytes yields, in order; nothing follows a fatal item. */
  push(data: Buffer): Intake[] {
    if (this.firstBytes && data.length > 0) {
      this.firstBytes = false;
      // no LDAPMessage starts with 'P' or CR: a partial signature is refused as well
      if (startsWithProxySignature(data)) return [{ kind: 'fatal', code: ResultCode.protocolError, text: 'PROXY protocol header from an untrusted address', rejected: 'proxy_protocol' }];
    }
    const { pdus, error } = this.framer.push(data);
    const out = pdus.map((pdu) => decodePdu(pdu, this.lim));
    if (error === 'too_large') out.push({ kind: 'fatal', code: ResultCode.protocolError, text: `PDU larger than ${this.maxPduBytes} bytes`, rejected: 'pdu_too_large' });
    else if (error) out.push({ kind: 'fatal', code: ResultCode.protocolError, text: 'malformed LDAP message', rejected: 'malformed' });
    return out;
  }
}

/** One whole PDU -> a message, an error answer, or the end of the connection. */
export function decodePdu(pdu: Buffer, lim: DecodeLimits): Intake {
  // inconsistent inner lengths or absurd nesting never reach a decoder (ldap/ber.ts wellFormed)
  if (!wellFormed(pdu, MAX_BER_DEPTH)) return undecodable(peekEnvelope(pdu), ResultCode.protocolError, 'malformed BER');
  try {
    return { kind: 'message', message: decodeMessage(pdu, lim) };
  } catch (err) {
    if (!(err instanceof DecodeError)) throw err;
    const env = err.messageId !== undefined && err.opTag !== undefined ? { messageId: err.messageId, opTag: err.opTag } : undefined;
    return undecodable(env, err.code, err.message);
  }
}

function undecodable(env: { messageId: number; opTag: number } | undefined, code: number, text: string): Intake {
  const response = env ? REQUESTS.get(env.opTag)?.response : undefined;
  // an unsupported SASL bind is well formed: refused, not counted as malformed input
  const rejected: RejectReason | undefined = code === ResultCode.authMethodNotSupported ? undefined : 'malformed';
  if (!env || response === undefined) return { kind: 'fatal', code: ResultCode.protocolError, text: env ? 'unsupported operation' : 'undecodable LDAP message', rejected: 'malformed' };
  return { kind: 'answer', messageId: env.messageId, opTag: env.opTag, code, text, ...(rejected ? { rejected } : {}) };
}
