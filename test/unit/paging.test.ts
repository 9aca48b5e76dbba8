// Paged listings read the next page ahead (directory/paging.ts): while the client reads page k, page k+1
// is read and encoded; what the client then gets is exactly what it would have got page by page.
// The directory here is a generator over numbered entries that counts how far it has been read.
import t, { type Test } from 'tap';
import { CursorStore } from '../../src/directory/cursors';
import { SearchRunner } from '../../src/directory/paging';
import { UpstreamFailure, type DirectorySearch } from '../../src/directory/search';
import type { EncodedEntry, Entry, SearchOp, SearchOutcome, SearchSink } from '../../src/ldap/types';

interface Listing {
  pulled: number;
  closed: boolean;
}

/** A directory of `total` entries; `failAt`: the upstream fails when that entry is read. */
function directory(total: number, failAt = -1): { dir: DirectorySearch; listing: Listing } {
  const listing: Listing = { pulled: 0, closed: false };
  const dir = {
    async *entries() {
      try {
        for (let i = 0; i < total; i++) {
          await new Promise((r) => setImmediate(r)); // an upstream read takes a turn of the loop
          if (i === failAt) throw new UpstreamFailure(new Error('DC went away'));
          listing.pulled++;
          yield { dn: `uid=u${i},ou=people,dc=x`, attributes: [{ type: 'uid', values: [`u${i}`] }] } as Entry;
        }
        return { code: 0 };
      } finally {
        listing.closed = true;
      }
    },
  } as unknown as DirectorySearch;
  return { dir, listing };
}

const op = (size: number, cookie: Buffer): SearchOp => ({
  op: 'search', messageId: 1, base: 'ou=people,dc=x', scope: 'sub', filter: { type: 'present', attr: 'objectClass' }, attributes: [], sizeLimit: 0, timeLimit: 0, typesOnly: false, paged: { size, cookie },
} as SearchOp);

/** A sink that records the uids it was given, plain or encoded ahead (the encoding here is the uid's bytes). */
function sink(got: string[], encodes = true): SearchSink {
  return {
    signal: new AbortController().signal,
    entry: (e: Entry) => void got.push(e.attributes[0]?.values[0] as string),
    ...(encodes ? { encode: (e: Entry): EncodedEntry => ({ encoded: Buffer.from(e.attributes[0]?.values[0] as string) }), encoded: (e: EncodedEntry) => void got.push(e.encoded.toString()) } : {}),
  };
}

const uids = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `u${from + i}`);
const cookieOf = (o: SearchOutcome) => ('paged' in o && o.paged ? o.paged.cookie : Buffer.alloc(0));
/** until the read-ahead has read n entries (bounded: the test fails rather than hangs) */
async function pulled(l: Listing, n: number): Promise<boolean> {
  for (let i = 0; i < 1000 && l.pulled < n; i++) await new Promise((r) => setImmediate(r));
  return l.pulled >= n;
}

/** A runner over a directory of `total` entries, its listing's counters, and one connection's pages. */
function setup(t: Test, total: number, failAt = -1) {
  const { dir, listing } = directory(total, failAt);
  const cursors = new CursorStore({ maxCursorsPerConnection: 5, cursorIdleMs: 60_000 });
  t.teardown(() => cursors.stop());
  const runner = new SearchRunner(dir, cursors);
  const session = {};
  /** the page of `size` after the outcome `after` (none: the first page), its entries' uids into got */
  const page = (size: number, after: SearchOutcome | undefined, got: string[], encodes = true) =>
    runner.run(op(size, after ? cookieOf(after) : Buffer.alloc(0)), {}, session, sink(got, encodes), 'me');
  return { listing, cursors, runner, session, page };
}

t.test('the next page is read while the client reads this one, and arrives whole and in order', async (t) => {
  const { listing, page } = setup(t, 25);
  const got: string[] = [];
  let out = await page(10, undefined, got);
  t.same(got, uids(0, 10), 'first page');
  t.ok(await pulled(listing, 20), 'page two read before the client asked for it');
  t.equal(listing.pulled, 20, 'and no further than one page ahead');
  out = await page(10, out, got);
  t.same(got, uids(0, 20), 'second page, from what was read ahead');
  t.ok(await pulled(listing, 25));
  // a smaller page this time: what was read ahead and not sent stays first in line
  out = await page(2, out, got);
  t.same(got, uids(0, 22));
  out = await page(10, out, got);
  t.same(got, uids(0, 25), 'the last page');
  t.same(out, { code: 0, paged: { size: 0, cookie: Buffer.alloc(0) } }, 'ends with an empty cookie');
  t.ok(listing.closed);
});

t.test('a sink that cannot encode ahead gets the entries as entries', async (t) => {
  const { page } = setup(t, 7);
  const got: string[] = [];
  const out = await page(4, await page(4, undefined, got, false), got, false);
  t.same(got, uids(0, 7));
  t.equal('code' in out && out.code, 0);
});

t.test('an upstream failure met while reading ahead: the entries before it, then a dropped connection', async (t) => {
  const { listing, page } = setup(t, 30, 13);
  const got: string[] = [];
  const first = await page(10, undefined, got);
  t.ok(await pulled(listing, 13), 'read ahead up to the failure');
  const out = await page(10, first, got);
  t.same(got, uids(0, 13), 'what was read before the failure is sent');
  t.same(out, { drop: true, reason: 'DC went away' }, 'never a SearchResultDone');
});

t.test('a listing closed while its next page is being read ends, and releases the directory', async (t) => {
  const { listing, cursors, runner, session, page } = setup(t, 1000);
  await page(100, undefined, []);
  t.ok(listing.pulled < 200, 'the read-ahead is under way');
  await cursors.closeSession(session);
  t.ok(listing.closed, 'the generator was closed');
  t.ok(listing.pulled <= 200, 'and not read past the page it was on');
  t.equal(runner.openCursors, 0);
});
