// HTTP for deliveries (Node's built-in fetch), with a timeout, and the decision every caller needs:
// is a failure worth retrying, and when.
export class DeliveryError extends Error {
  constructor(
    message: string,
    /** retry later (network, 5xx, 429, 408), or give up (a 4xx the request itself caused) */
    readonly retryable: boolean,
    /** from Retry-After, in ms */
    readonly retryAfterMs?: number,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'DeliveryError';
  }
}

/** Retry-After as seconds or an HTTP date (RFC 9110 §10.2.3), in ms from now. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (!header) return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
  const t = Date.parse(header);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

export interface JsonResponse {
  status: number;
  body: unknown;
}

export async function request(method: string, url: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number): Promise<JsonResponse> {
  let res: Response;
  try {
    res = await fetch(url, { method, headers: { accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers }, body, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    throw new DeliveryError(`${method} ${new URL(url).pathname}: ${cause ?? (err as Error).name}`, true);
  }
  const text = await res.text().catch(() => '');
  let parsed: unknown = text;
  try {
    parsed = text ? (JSON.parse(text) as unknown) : undefined;
  } catch {
    // not JSON: keep the text
  }
  if (res.status >= 500 || res.status === 429 || res.status === 408) {
    throw new DeliveryError(`${method} ${new URL(url).pathname}: HTTP ${res.status}`, true, retryAfterMs(res.headers.get('retry-after')), res.status);
  }
  return { status: res.status, body: parsed };
}

/** The message of an error body ({msg: …} in Defguard), short and without echoing request data. */
export function errorText(body: unknown): string {
  if (body && typeof body === 'object' && 'msg' in body) return String((body as { msg: unknown }).msg).slice(0, 200);
  return typeof body === 'string' ? body.slice(0, 200) : '';
}
