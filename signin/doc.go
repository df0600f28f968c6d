// Package signin is the one way into a session. Every way a user signs in
// (a local password, an OpenID provider, a token captured by the vault;
// passkeys and forward auth next) describes who signed in as an
// [Identity], and [Admission.Admit] turns it into a session, applying every
// rule that holds for all sessions once:
//
//   - the user ID lies in the namespace of its way in ([LocalUser],
//     [ProviderUser], [VaultUser]), so no way in can sign in as another's
//     user;
//   - the pin taken before the credentials were checked, so an account
//     change or a global revocation meanwhile makes the sign-in fail
//     instead of starting a session with what was checked before;
//   - the authentication time: when the user actually proved who they are,
//     or unknown, which is never recent; a time in the future is refused;
//   - how the user signed in: the method and its RFC 8176 amr values;
//   - a second factor for the roles of [Config.RequireSecondFactor]: an
//     identity with such a role and no amr of otp, hwk, swk or mfa is
//     refused ([ErrSecondFactorRequired]; [Admission.NeedsSecondFactor]
//     lets a way in offer its own second step first);
//   - the per-user session cap (the oldest sessions beyond it end);
//   - the known-device cookie of the login throttle;
//   - one audit line and the sign-in metrics.
//
// A new way in builds an Identity and calls Admit; it never calls
// [cloakroom.Session.Login] itself, so it cannot skip a rule.
//
// The same package answers what the rules recorded: [AuthTime],
// [Admission.Recent] for step-up checks, [MethodOf], [Roles] and [Email].
package signin
