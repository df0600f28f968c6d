// Package accounts keeps the cloakroom gateway's local user accounts: names,
// roles, an optional email, and an argon2id password hash, in a [Store]. A
// [Service] on top validates input, checks logins and keeps accounts and
// sessions consistent.
//
// # Backends
//
// The stores live in packages of their own, one per backend, as the session
// stores do, so this package imports no database driver:
//
//   - accounts/sqliteaccounts: SQLite, sharing sqlitestore's file and
//     writer connection (the gateway's default).
//   - accounts/pgaccounts: PostgreSQL, in pgstore's schema, with a
//     [ThrottleStore] the gateway nodes share.
//   - accounts/redisaccounts: Redis, under redisstore's prefix, with a
//     shared [ThrottleStore] too.
//   - accounts/memaccounts: process memory, for tests, demos and tools,
//     and the in-process [ThrottleStore] (memaccounts.NewThrottle) for a
//     single node, whatever its account store.
//
// Every one passes the conformance suite in accounts/accountstest.
//
// # Passwords
//
// New passwords follow ASVS 5.0 V6.2: 8 characters to 1024 bytes, any
// printable Unicode including spaces, no composition rules; not one of the
// 11611 most common passwords of that length shipped with the package,
// not a repeated pattern, a run or a keyboard row, not the user name or
// email with digits added ([CheckStrength]); [Config.CheckPassword] can
// add a breached-password check. Passwords set before keep working. Passwords are never trimmed, case-folded or
// normalized. They are hashed with argon2id at the OWASP / ASVS 5.0
// Appendix C parameters (m=19 MiB, t=2, p=1, 16-byte salt, 32-byte key)
// and stored PHC-encoded ($argon2id$v=19$m=19456,t=2,p=1$salt$key). The
// parameters travel in each hash, so they can be raised later: a login
// whose hash is older is rehashed ([NeedsRehash]).
//
// Each hash holds 19 MiB for tens of milliseconds, so at most
// [Config.MaxConcurrentHashes] run at once; a caller that cannot get a slot
// within [Config.MaxHashWait] gets [ErrBusy], which is overload, not
// throttling: nothing is counted against the user.
//
// # Logins and brute force (ASVS 6.1.1, 6.3.1, 6.3.8)
//
// [Service.Login] answers an unknown user, a disabled user and a
// wrong password with the same [ErrInvalidCredentials] after the same work:
// an unknown user is checked against a dummy hash made with the same
// parameters.
//
// Failures are counted in the [ThrottleStore] given as [Config.Throttle]:
// in process memory (memaccounts.NewThrottle), or in the Redis or
// PostgreSQL database the gateway nodes share (redisaccounts.NewThrottle,
// pgaccounts.NewThrottle). After a
// few free failures each further attempt must wait, the wait doubling with
// each failure up to a cap ([Config.AccountThrottle], [Config.DeviceThrottle],
// [Config.IPThrottle]); a refused attempt costs no hash, is not counted and
// returns a [*ThrottledError] with the time to wait.
//
// Accounts are never locked for their user (OWASP device cookies): a
// successful [Service.Login] returns a device token signed for the account
// and its password generation, valid [Config.DeviceTokenLifetime] (90 days
// by default, renewed at each login), which the gateway keeps in an
// HttpOnly cookie. A password change ends every token of the account;
// [Service.ChangeOwnPassword] returns the changing browser's new one. An attempt presenting it
// is throttled on that device's failures alone; attempts without it share
// the account's budget for unknown devices and their client IP's (IPv6 by
// /64). An attacker who knows a name can slow down new browsers, never the
// ones its user already logged in from. A success clears the counters it
// was charged to.
//
// The in-process throttle's tables are bounded; blocked entries are never
// evicted before unblocked ones, and a table full of blocked entries
// throttles new keys, so a flood of made-up names cannot free a blocked
// account.
//
// # Sessions
//
// Disable, Delete, SetPassword and SetRoles end all the user's sessions
// through [Config.RevokeSessions] (cloakroom's Manager.RevokeUser) and
// report its failure (ASVS 7.4.2, 7.4.3). The account changes first, so a
// failure leaves the change made and the old sessions alive: the error
// wraps the session store's, and calling the same method again (each is
// idempotent) ends them. Logins are refused or pinned from the change on
// (cloakroom's Manager.Pin), so no new session outlives it meanwhile. The
// `cloakroom user` commands print such a failure and exit non-zero, so the
// operator runs them again.
//
// # Names
//
// A name is up to 64 bytes of Unicode letters of one script, ASCII
// digits, '.', '_', '@' and '-' ([CanonicalName] has the rules), stored
// NFC-normalised with full-width letters mapped. Names are unique and
// looked up by [FoldName], the PRECIS UsernameCaseMapped form of RFC 8265,
// which for an ASCII name is its lower case, as before Unicode names; the
// throttle and device tokens key accounts by it too. [User.Name] as
// returned by the service is the user ID to give the session manager.
package accounts
