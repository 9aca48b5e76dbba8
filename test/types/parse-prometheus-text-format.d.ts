// The package ships no types; this is the part the tests use.
declare module 'parse-prometheus-text-format' {
  export default function parse(text: string): Array<{ name: string; help: string; type: string; metrics: Array<{ labels?: Record<string, string>; value?: string }> }>;
}
