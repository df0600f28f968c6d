package gateway

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/signin"
)

// A passkey as the second factor: between a right password and the
// session (a pending sign-in, or the pending enrolment a role requires),
// the account's own passkeys may stand for the code. The ceremony's state
// lives in the pending record itself, so it is bound to the browser that
// typed the password (its pending cookie) and ends with it; beginning a
// ceremony spends one of the pending sign-in's maxCodeAttempts, and its
// answer clears the state with a compare-and-swap before it is checked,
// so each challenge is answered once. The session is admitted through
// the same seam as every other way in, with amr pwd, hwk or swk, user,
// pin when the authenticator verified its user, and mfa.

// outcomePasskeyFactor is the audit value of a login finished with a
// passkey after the password.
const outcomePasskeyFactor = "passkey"

// offersPasskey reports whether the pages between the factors offer
// user's passkeys: what accounts.SignInFactors counts (passkeys on, the
// account has one), the rule the step after the password follows.
func (p *signInPages) offersPasskey(r *http.Request, user string) bool {
	return p.factorsOf(r, user).Passkeys > 0
}

// passkeyFactorBegin is POST {auth}/second-factor/passkey/begin: the
// options of a ceremony with the pending sign-in's account's passkeys,
// for navigator.credentials.get.
func (p *signInPages) passkeyFactorBegin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a := &loginAttempt{p: p, w: w, r: r, s: p.sessions.Session(r), isJSON: true}
	rec, ps, found, err := p.pendingOfEitherKind(r)
	if err != nil {
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "session store unavailable"))
		return
	}
	a.req = loginRequest{Username: ps.User, Remember: ps.Remember, ReturnTo: ps.ReturnTo}
	switch {
	case !found:
		p.pendingGone(a, stepPasskey)
		return
	case ps.spent():
		// Before a ceremony is drawn; commitPending checks again.
		p.attemptsSpent(a, rec, ps, stepPasskey)
		return
	}
	c, err := p.accounts.BeginPasskeySecondFactor(ctx, ps.User)
	switch {
	case errors.Is(err, accounts.ErrNoSuchPasskey), errors.Is(err, accounts.ErrNoSuchUser):
		a.fail(http.StatusConflict, "no_passkey", "Your account has no passkey. Enter the code from your authenticator app instead.")
		a.audit(outcomeInvalid, slog.String("reason", "no passkey"), slog.String("method", "passkey"))
		return
	case err != nil:
		p.log.ErrorContext(ctx, "passkey second factor not started", "err", err)
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "passkey ceremony not started"))
		return
	}
	ps.PasskeyState = c.State
	if !p.commitPending(a, &rec, &ps, stepPasskey, true) {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpjson.Write(w, http.StatusOK, json.RawMessage(c.Options))
}

// passkeyFactorFinish is POST {auth}/second-factor/passkey/finish: the
// authenticator's answer, {"credential": PublicKeyCredential}, to the
// pending sign-in's ceremony. Accepted, it ends the pending sign-in and
// admits the session.
func (p *signInPages) passkeyFactorFinish(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a := &loginAttempt{p: p, w: w, r: r, s: p.sessions.Session(r), isJSON: true}
	var body passkeySignIn // remember and return_to are the pending sign-in's own: ignored
	if bad := decodeJSONBody(w, r, &body); bad != nil {
		a.fail(bad.Status, bad.Code, bad.Message)
		a.audit(outcomeBadRequest, slog.String("reason", bad.Message), slog.String("method", "passkey"))
		return
	}
	rec, ps, found, err := p.pendingOfEitherKind(r)
	if err != nil {
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "session store unavailable"))
		return
	}
	a.req = loginRequest{Username: ps.User, Remember: ps.Remember, ReturnTo: ps.ReturnTo}
	if !found {
		p.pendingGone(a, stepPasskey)
		return
	}
	if len(ps.PasskeyState) == 0 {
		a.fail(http.StatusUnauthorized, "passkey_expired", "The passkey step took too long or was already used. Try again.")
		a.audit(outcomeInvalid, slog.String("reason", "no passkey ceremony"), slog.String("method", "passkey"))
		return
	}
	// The challenge is used up before its answer is checked: of two
	// answers racing, one goes on.
	state := ps.PasskeyState
	ps.PasskeyState = nil
	if !p.commitPending(a, &rec, &ps, stepPasskey, false) {
		return
	}
	pin, err := p.sessions.Pin(ctx, ps.User)
	if err != nil {
		a.refused(err)
		return
	}
	res, err := p.accounts.VerifyPasskeySecondFactor(ctx, accounts.PasskeySecondFactorAttempt{
		Name: ps.User, State: state, Response: body.Credential, ClientIP: a.s.ClientIP(), Devices: signin.DeviceTokens(r),
		PasswordChangedAt: time.UnixMicro(ps.PasswordChangedAt).UTC(), Factor: ps.Factor,
	})
	switch {
	case errors.Is(err, accounts.ErrInvalidPasskey):
		if ps.spent() {
			p.endPending(ctx, rec.Key, w)
		}
		a.fail(http.StatusUnauthorized, outcomePasskeyRefused, "That passkey was not accepted. Try again, or enter a code.")
		a.audit(outcomePasskeyRefused, slog.String("reason", err.Error()), slog.String("method", "passkey"), slog.Int("attempt", ps.Attempts))
		return
	case err != nil:
		p.stepRefused(a, rec.Key, err)
		return
	}
	user := res.User
	if !p.admitAfterCode(&codeStep{a: a, rec: rec, ps: ps, pin: pin}, signin.Identity{
		UserID: signin.LocalUser(user.Name), Method: signin.Password, AMR: passkeyFactorAMR(res),
		AuthTime: p.now(), Email: user.Email, Roles: user.Roles,
		Pin: pin, Persistent: ps.Remember, DeviceTokens: res.Devices,
	}) {
		return
	}
	a.userName = user.Name
	w.Header().Set("Cache-Control", "no-store")
	httpjson.Write(w, http.StatusOK, map[string]any{
		"user": user.Name, "email": user.Email, "roles": signin.Roles(a.s), "csrf_token": a.s.CSRFToken(),
		"second_factor": outcomePasskeyFactor, "redirect": httpx.SafeReturnTo(ps.ReturnTo),
	})
	a.audit(outcomeSuccess, slog.Bool("remember", ps.Remember), slog.String("second_factor", outcomePasskeyFactor),
		slog.String("passkey", res.Passkey.ID), slog.Bool("user_verified", res.UserVerified), slog.Bool("enrolment_pending", ps.Enrol))
}

// passkeyFactorAMR is the RFC 8176 amr of a password and a passkey: pwd,
// then the passkey's own (hwk or swk, user, pin when the authenticator
// verified its user), and mfa, two factors at least.
func passkeyFactorAMR(res accounts.PasskeyLoginResult) []string {
	amr := append([]string{signin.AMRPassword}, passkeyAMR(res)...)
	if !res.UserVerified {
		amr = append(amr, signin.AMRMFA)
	}
	return amr
}
