package gateway

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/signin"
)

// Enrolment at sign-in: a local account whose role requires a second
// factor (signin.Config.RequireSecondFactor) and that has none gets no
// session for its password. It gets a pending enrolment instead: the
// pending sign-in's record and cookie, marked Enrol, living
// enrolLifetime, which opens only the enrolment of a TOTP app (the
// secret, its QR code, the confirming code). The confirming code enables
// the factor and admits the session with amr ["pwd","otp"]; the recovery
// codes are shown once.
const (
	enrolLifetime = accounts.TOTPEnrolmentLifetime
	// outcomeEnrolmentRequired is the login audit line of a right
	// password that only opens the enrolment.
	outcomeEnrolmentRequired = "second_factor_enrolment_required"
	outcomeEnrolled          = "second_factor_enrolled"
)

// startEnrolment records a right password of an account that must enrol
// a second factor first, and sends the browser to the enrolment page (a
// script gets 401 second_factor_enrolment_required naming it).
func (p *signInPages) startEnrolment(a *loginAttempt, user accounts.User) {
	ctx := a.r.Context()
	id := rand.Text() // 130 random bits
	data, _ := json.Marshal(pendingSignIn{
		User: user.Name, PasswordChangedAt: user.PasswordChangedAt.UnixMicro(), Enrol: true,
		Remember: a.req.Remember, ReturnTo: httpx.SafeReturnTo(a.req.ReturnTo),
	})
	err := p.sessions.Store().CommitAux(ctx, cloakroom.AuxRecord{
		Key: pendingKey(id), Version: 1, Expires: p.now().Add(enrolLifetime), Data: data,
	})
	if err != nil {
		p.log.ErrorContext(ctx, "pending enrolment not stored", "user", user.Name, "err", err)
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "pending enrolment not stored"))
		return
	}
	a.userName = user.Name
	a.w.Header().Add("Set-Cookie", pendingCookieLineFor(id, enrolLifetime))
	url := p.auth + "/second-factor/enrol"
	if a.isJSON {
		a.w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(a.w, http.StatusUnauthorized, map[string]string{
			"error":   "second_factor_enrolment_required",
			"message": "Your role requires two-step verification: set up an authenticator app to sign in.", "enrolment_url": url,
		})
	} else {
		seeOther(a.w, url)
	}
	a.audit(outcomeEnrolmentRequired)
}

// msgEnrolAgain: the pending enrolment is gone.
const msgEnrolAgain = "Sign in again: setting up the authenticator app took too long, or was already finished."

// enrolmentGone answers a request without a pending enrolment.
func (p *signInPages) enrolmentGone(w http.ResponseWriter, r *http.Request, status int, message string) {
	w.Header().Add("Set-Cookie", pendingCookieLine(""))
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		httpjson.Error(w, status, "second_factor_expired", message)
		return
	}
	p.render(w, r, status, "login", pageData{Title: "Sign in", Notice: message, ReturnTo: "/", Providers: p.providerLinks("/")})
}

// offered returns the enrolment a pending enrolment offers, drawing its
// secret on the first call and keeping it sealed in the record, so that
// every later view shows the secret the app scanned.
func (p *signInPages) offered(r *http.Request, rec cloakroom.AuxRecord, ps pendingSignIn) (accounts.TOTPEnrolment, error) {
	if ps.Sealed != "" {
		return p.accounts.OpenTOTPEnrolment(ps.User, ps.Sealed)
	}
	e, err := p.accounts.BeginTOTP(r.Context(), ps.User)
	if err != nil {
		return accounts.TOTPEnrolment{}, err
	}
	ps.Sealed = e.Sealed
	rec.Version++
	rec.Data, _ = json.Marshal(ps)
	if err := p.sessions.Store().CommitAux(r.Context(), rec); err != nil {
		return accounts.TOTPEnrolment{}, err
	}
	return e, nil
}

// enrolPage is GET {auth}/second-factor/enrol: the secret of a pending
// enrolment, as text, URI and QR code, with the form for the confirming
// code; JSON {"secret","uri","expires_at","confirm_url"} for a script.
func (p *signInPages) enrolPage(w http.ResponseWriter, r *http.Request) {
	rec, ps, found, err := p.pending(r, true)
	switch {
	case err != nil:
		p.fail(w, r, !wantsJSON(r), err)
		return
	case !found:
		p.enrolmentGone(w, r, http.StatusUnauthorized, msgEnrolAgain)
		return
	}
	e, err := p.offered(r, rec, ps)
	if err != nil {
		p.enrolmentFailed(w, r, rec.Key, err)
		return
	}
	p.showEnrolment(w, r, http.StatusOK, ps, e, "")
}

func (p *signInPages) showEnrolment(w http.ResponseWriter, r *http.Request, status int, ps pendingSignIn, e accounts.TOTPEnrolment, errMsg string) {
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		if errMsg != "" {
			httpjson.Error(w, status, "invalid_code", errMsg)
			return
		}
		httpjson.Write(w, status, map[string]string{
			"secret": e.Secret, "uri": e.URI, "expires_at": e.Expires.UTC().Format(time.RFC3339),
			"confirm_url": p.auth + "/second-factor/enrol",
		})
		return
	}
	p.render(w, r, status, "totp", pageData{
		Title: "Set up an authenticator app", Error: errMsg, EnrolAtSignIn: true, Username: ps.User,
		TOTPSecret: e.Secret, TOTPURI: e.URI, TOTPExpires: formatTime(e.Expires),
	})
}

// enrolmentFailed answers an enrolment the accounts refused: expired or
// already done ends it (sign in again), a missing key file is 503.
func (p *signInPages) enrolmentFailed(w http.ResponseWriter, r *http.Request, key cloakroom.Key, err error) {
	switch {
	case errors.Is(err, accounts.ErrEnrolmentExpired), errors.Is(err, accounts.ErrAlreadyEnrolled), errors.Is(err, accounts.ErrNoSuchUser):
		p.endPending(r.Context(), key, w)
		p.enrolmentGone(w, r, http.StatusUnauthorized, msgEnrolAgain)
	default:
		p.fail(w, r, !wantsJSON(r), totpProblem(err))
	}
}

// enrolQR is GET {auth}/second-factor/enrol/qr: the QR code of the
// pending enrolment's secret, once the page drew it.
func (p *signInPages) enrolQR(w http.ResponseWriter, r *http.Request) {
	_, ps, found, err := p.pending(r, true)
	var e accounts.TOTPEnrolment
	if err == nil && found && ps.Sealed != "" {
		e, err = p.accounts.OpenTOTPEnrolment(ps.User, ps.Sealed)
	}
	if err != nil || !found || ps.Sealed == "" {
		w.Header().Set("Cache-Control", "no-store")
		http.NotFound(w, r)
		return
	}
	writeQR(w, r, &p.base, e)
}

// enrol is POST {auth}/second-factor/enrol: the first code of the app.
// Right, it enables the factor, ends the pending enrolment and admits the
// session with amr ["pwd","otp"], then shows the recovery codes once.
func (p *signInPages) enrol(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	code, isJSON, bad := readCode(w, r)
	s := p.sessions.Session(r)
	a := &loginAttempt{p: p, w: w, r: r, s: s, isJSON: isJSON}
	if bad != nil {
		a.fail(bad.Status, bad.Code, bad.Message)
		a.audit(outcomeBadRequest, slog.String("reason", bad.Message))
		return
	}
	rec, ps, found, err := p.pending(r, true)
	if err != nil {
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "session store unavailable"))
		return
	}
	a.req = loginRequest{Username: ps.User, Remember: ps.Remember, ReturnTo: ps.ReturnTo}
	if !found || ps.Sealed == "" {
		p.enrolmentGone(w, r, http.StatusUnauthorized, msgEnrolAgain)
		a.audit(outcomeInvalid, slog.String("reason", "no pending enrolment"))
		return
	}
	// Counted before the check, atomically, as codes between the factors.
	ps.Attempts++
	rec.Version++
	rec.Data, _ = json.Marshal(ps)
	if err := p.sessions.Store().CommitAux(ctx, rec); err != nil {
		if errors.Is(err, cloakroom.ErrConflict) || errors.Is(err, cloakroom.ErrNotFound) {
			a.fail(http.StatusConflict, "conflict", "Another attempt with this sign-in is under way. Try again.")
			a.audit(outcomeInvalid, slog.String("reason", "conflict"))
			return
		}
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "session store unavailable"))
		return
	}
	pin, err := p.sessions.Pin(ctx, ps.User)
	if err != nil {
		a.refused(err)
		return
	}
	// The account must be as it was at the password: a change since
	// (disabled, deleted, new password) ends the enrolment unconfirmed.
	user, err := p.accounts.Get(ctx, ps.User)
	if errors.Is(err, accounts.ErrNoSuchUser) || err == nil && (user.Disabled || user.PasswordChangedAt.UnixMicro() != ps.PasswordChangedAt) {
		p.endPending(ctx, rec.Key, w)
		a.refused(accounts.ErrInvalidCredentials)
		return
	}
	if err != nil {
		a.refused(err)
		return
	}
	codes, err := p.accounts.ConfirmTOTP(ctx, ps.User, ps.Sealed, code)
	switch {
	case errors.Is(err, accounts.ErrInvalidCode):
		if ps.Attempts >= maxCodeAttempts {
			p.endPending(ctx, rec.Key, w)
			p.enrolmentGone(w, r, http.StatusUnauthorized, "Wrong code, too many times. Sign in again.")
			a.audit(outcomeInvalid, slog.String("reason", "invalid_code"), slog.Int("attempt", ps.Attempts))
			return
		}
		e, oerr := p.accounts.OpenTOTPEnrolment(ps.User, ps.Sealed)
		if oerr != nil {
			p.enrolmentFailed(w, r, rec.Key, oerr)
			return
		}
		p.showEnrolment(w, r, http.StatusUnauthorized, ps, e, "That code is not right. Enter the code your app shows now.")
		a.audit(outcomeInvalid, slog.String("reason", "invalid_code"), slog.Int("attempt", ps.Attempts))
		return
	case err != nil:
		p.enrolmentFailed(w, r, rec.Key, err)
		a.audit(outcomeInvalid, slog.String("reason", totpOutcome(err)))
		return
	}
	if err := p.sessions.Store().DeleteAux(ctx, rec.Key); err != nil {
		// The factor is on; the next sign-in asks for its code.
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "pending enrolment not ended"))
		return
	}
	w.Header().Add("Set-Cookie", pendingCookieLine(""))
	err = p.timeStore("login", func() error {
		return p.admission.Admit(ctx, r, w.Header(), signin.Identity{
			UserID: signin.LocalUser(user.Name), Method: signin.Password,
			AMR:      []string{signin.AMRPassword, signin.AMROTP},
			AuthTime: p.now(), Email: user.Email, Roles: user.Roles, Pin: pin, Persistent: ps.Remember,
		})
	})
	if err != nil {
		a.refused(err)
		return
	}
	a.userName = user.Name
	w.Header().Set("Cache-Control", "no-store")
	if isJSON {
		httpjson.Write(w, http.StatusOK, map[string]any{
			"user": user.Name, "email": user.Email, "roles": signin.Roles(s), "csrf_token": s.CSRFToken(),
			"second_factor": "totp", "recovery_codes": codes,
		})
	} else {
		p.render(w, r, http.StatusOK, "totp", pageData{
			Title: "Save your recovery codes", User: user.Name, CSRFToken: s.CSRFToken(), RecoveryCodes: codes,
			EnrolAtSignIn: true, ReturnTo: httpx.SafeReturnTo(ps.ReturnTo),
		})
	}
	a.audit(outcomeSuccess, slog.String("second_factor", outcomeEnrolled), slog.Bool("remember", ps.Remember))
}
