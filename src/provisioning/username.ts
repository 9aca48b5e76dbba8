// Defguard's username rule (handlers/user.rs check_username, reference/defguard-ldap.md §3):
// ASCII letters, digits, '.', '_' and '-', starting with a letter or digit, 1 to 63 characters.
const RULE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Why Defguard would reject this username, or undefined when it is acceptable. */
export function defguardUsernameProblem(username: string): string | undefined {
  if (RULE.test(username)) return undefined;
  if (username.length === 0 || username.length > 63) return 'must be 1 to 63 characters';
  if (/[^\x20-\x7e]/.test(username)) return 'must be ASCII';
  if (!/^[A-Za-z0-9]/.test(username)) return 'must start with a letter or digit';
  return "may contain only letters, digits, '.', '_' and '-'";
}
