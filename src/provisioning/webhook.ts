// Delivery to any HTTP endpoint: the event as JSON, signed with HMAC-SHA256 over the exact body so the
// receiver can verify it came from the gateway: X-Ldap-Gateway-Signature: sha256=<hex>.
import { createHmac } from 'node:crypto';
import { DeliveryError, errorText, request } from './http';

export interface WebhookOptions {
  url: string;
  secret: string;
  timeoutMs: number;
}

export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}

export class WebhookClient {
  constructor(private readonly o: WebhookOptions) {}

  async send(id: number, kind: string, event: unknown): Promise<void> {
    const body = JSON.stringify({ id, ...(event as object) });
    const r = await request('POST', this.o.url, { 'x-ldap-gateway-event': kind, 'x-ldap-gateway-delivery': String(id), 'x-ldap-gateway-signature': signature(this.o.secret, body) }, body, this.o.timeoutMs);
    if (r.status < 200 || r.status >= 300) throw new DeliveryError(`webhook: HTTP ${r.status}${errorText(r.body) ? ` (${errorText(r.body)})` : ''}`, false, undefined, r.status);
  }
}
