package gateway

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/signin"
)

// Between the factors: a right password for an account with a second
// factor starts no session. It leaves a pending sign-in, an auxiliary
// record of the session store that lives pendingLifetime, named by a
// random value only the browser holds, in the pendingCookie. The
// second-factor page posts the code with that cookie; the first correct
// code deletes the record and admits the session. An abandoned sign-in
// leaves nothing behind once the record expires.
const (
	// pendingCookie: __Host- and Http- prefixes (Secure, host-only,
	// HttpOnly), SameSite=Strict, so no other site can post a code with
	// it.
	pendingCookie   = "__Host-Http-pending"
	pendingLifetime = 5 * time.Minute
	// maxCodeAttempts is how many codes one password entry may try; then
	// the pending sign-in ends and the password is asked again. The login
	// throttle counts every wrong code besides.
	maxCodeAttempts = 3
	maxCodeLen      = 64
	// outcomeSecondFactor is the login audit line of a right password
	// that waits for its code.
	outcomeSecondFactor = "second_factor_required"
)

// pendingSignIn is the record of a sign-in between its factors.
type pendingSignIn struct {
	User string `json:"user"`
	// PasswordChangedAt (Unix microseconds) of the account when its
	// password was checked; a change since ends the sign-in.
	PasswordChangedAt int64 `json:"pwd_at"`
	// Factor names the factor the password was checked against; a reset
	// since (by an administrator) ends the sign-in.
	Factor string `json:"factor"`
	// Enrol marks a pending enrolment (below): a role that
	// requires a second factor, an account without one. Sealed is the
	// TOTP secret offered, once the enrolment page was shown.
	Enrol    bool   `json:"enrol,omitempty"`
	Sealed   string `json:"sealed,omitempty"`
	Remember bool   `json:"remember"`
	ReturnTo string `json:"return_to"`
	Attempts int    `json:"attempts"`
	// PasskeyState is the waiting passkey ceremony of this sign-in (its
	// challenge), if one was begun; its answer clears it.
	PasskeyState []byte `json:"passkey,omitempty"`
}

func pendingKey(id string) cloakroom.Key { return cloakroom.AuxKey("gateway", "pending-sign-in", id) }

// pendingCookieLine is the Set-Cookie of the pending sign-in's value; ""
// expires the cookie.
func pendingCookieLine(id string) string { return pendingCookieLineFor(id, pendingLifetime) }

// pendingCookieLineFor is pendingCookieLine for a record of lifetime.
func pendingCookieLineFor(id string, lifetime time.Duration) string {
	c := &http.Cookie{Name: pendingCookie, Value: id, Path: "/", MaxAge: int(lifetime / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode}
	if id == "" {
		c.MaxAge = -1
	}
	return c.String()
}

// startPending records a right password for an account that has a second
// factor, and sends the browser to the page between the factors (a script
// gets 401 second_factor_required naming it, and the passkey step's URL
// when the account has a passkey). Which step is asked is decided once,
// by the accounts' Login: an app or a passkey, whichever the account has.
func (p *signInPages) startPending(a *loginAttempt, need *accounts.SecondFactorRequiredError) {
	factors := need.Factors
	if !p.passkeys {
		factors.Passkeys = 0
	}
	answer := map[string]string{"error": "second_factor_required", "message": factorPrompt(factors)}
	if factors.Passkeys > 0 {
		answer["passkey_begin_url"] = p.auth + "/second-factor/passkey/begin"
	}
	p.startPendingStep(a, pendingSignIn{User: need.User.Name, PasswordChangedAt: need.User.PasswordChangedAt.UnixMicro(), Factor: need.Factor},
		pendingLifetime, "/second-factor", outcomeSecondFactor, answer, "second_factor_url")
}

// factorPrompt tells the user what finishes their sign-in: what the
// account has, nothing it has not.
func factorPrompt(f accounts.SignInFactors) string {
	code := "Enter the code from your authenticator app"
	if f.RecoveryCodes > 0 {
		code += " or a recovery code"
	}
	switch {
	case f.TOTP && f.Passkeys > 0:
		return code + ", or use a passkey."
	case f.TOTP:
		return code + "."
	}
	return "Use your passkey to finish signing in."
}

// factorsOf is what the pages between the factors offer user: the
// account's factors, passkeys only while the gateway offers them. If the
// accounts cannot be read, the code form is shown: the step refuses what
// it cannot check.
func (p *signInPages) factorsOf(r *http.Request, user string) accounts.SignInFactors {
	f, err := p.accounts.SignInFactors(r.Context(), user)
	if err != nil {
		p.log.WarnContext(r.Context(), "factors not read for the second-factor page", "err", err)
		return accounts.SignInFactors{TOTP: true}
	}
	if !p.passkeys {
		f.Passkeys = 0
	}
	return f
}

// secondFactorPageData is the page between the factors for user.
func (p *signInPages) secondFactorPageData(r *http.Request, user string) pageData {
	f := p.factorsOf(r, user)
	return pageData{Title: "Two-step verification", Username: user,
		TOTP: f.TOTP, RecoveryCodesLeft: f.RecoveryCodes, PasskeyFactor: f.Passkeys > 0}
}

// startPendingStep stores ps, the state between a right password and the
// session, for lifetime under a random name the browser gets as its
// pending cookie, and sends the browser to the step's page at path (a
// script gets 401 with answer and the page's URL under urlKey).
func (p *signInPages) startPendingStep(a *loginAttempt, ps pendingSignIn, lifetime time.Duration, path, outcome string, answer map[string]string, urlKey string) {
	ctx := a.r.Context()
	id := rand.Text() // 130 random bits
	ps.Remember, ps.ReturnTo = a.req.Remember, httpx.SafeReturnTo(a.req.ReturnTo)
	data, _ := json.Marshal(ps)
	err := p.sessions.Store().CommitAux(ctx, cloakroom.AuxRecord{
		Key: pendingKey(id), Version: 1, Expires: p.now().Add(lifetime), Data: data,
	})
	if err != nil {
		p.log.ErrorContext(ctx, "pending sign-in not stored", "user", ps.User, "enrol", ps.Enrol, "err", err)
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "pending sign-in not stored"))
		return
	}
	a.userName = ps.User
	a.w.Header().Add("Set-Cookie", pendingCookieLineFor(id, lifetime))
	url := p.auth + path
	if a.isJSON {
		a.w.Header().Set("Cache-Control", "no-store")
		answer[urlKey] = url
		httpjson.Write(a.w, http.StatusUnauthorized, answer)
	} else {
		seeOther(a.w, url)
	}
	a.audit(outcome)
}

// pending returns the browser's pending sign-in (enrol false) or pending
// enrolment (enrol true), found false when it has none of that kind (no
// cookie, expired, used).
func (p *signInPages) pending(r *http.Request, enrol bool) (cloakroom.AuxRecord, pendingSignIn, bool, error) {
	rec, ps, found, err := p.pendingOfEitherKind(r)
	if !found || ps.Enrol != enrol {
		return rec, pendingSignIn{}, false, err
	}
	return rec, ps, true, nil
}

// pendingOfEitherKind returns the browser's pending sign-in or pending
// enrolment: a passkey completes either.
func (p *signInPages) pendingOfEitherKind(r *http.Request) (cloakroom.AuxRecord, pendingSignIn, bool, error) {
	// A repeated cookie is none: the first may be planted, to have the
	// victim finish the planter's sign-in.
	id, err := cloakroom.CookieValue(r.Header, pendingCookie)
	if err != nil || id == "" || len(id) > 64 {
		return cloakroom.AuxRecord{}, pendingSignIn{}, false, nil
	}
	rec, found, err := p.sessions.Store().FindAux(r.Context(), pendingKey(id))
	if err != nil || !found {
		return rec, pendingSignIn{}, false, err
	}
	var ps pendingSignIn
	if err := json.Unmarshal(rec.Data, &ps); err != nil || ps.User == "" {
		return rec, pendingSignIn{}, false, nil
	}
	return rec, ps, true, nil
}

// msgSignInAgain: the pending sign-in is gone (expired, used up, or
// never there).
const msgSignInAgain = "Sign in again: the sign-in waited too long for its code, or was already used."

// secondFactorPage is GET {auth}/second-factor: the code form of a
// pending sign-in, or the login page when there is none.
func (p *signInPages) secondFactorPage(w http.ResponseWriter, r *http.Request) {
	_, ps, found, err := p.pending(r, false)
	switch {
	case err != nil:
		p.fail(w, r, true, err)
	case !found:
		w.Header().Add("Set-Cookie", pendingCookieLine(""))
		p.render(w, r, http.StatusOK, "login", pageData{Title: "Sign in", Notice: msgSignInAgain, ReturnTo: "/", Providers: p.providerLinks("/")})
	default:
		p.render(w, r, http.StatusOK, "secondfactor", p.secondFactorPageData(r, ps.User))
	}
}

// secondFactor is POST {auth}/second-factor: the code of a pending
// sign-in, as a form field or JSON {"code": "..."}. The first right code
// ends the pending sign-in and admits the session with amr ["pwd","otp"].
func (p *signInPages) secondFactor(w http.ResponseWriter, r *http.Request) {
	st, ok := p.startCodeStep(w, r, false)
	if !ok {
		return
	}
	ctx, a, ps := r.Context(), st.a, st.ps
	if ps.Factor == "" {
		// The account had no app when its password was checked (its
		// factor is a passkey): no code can finish this sign-in.
		a.codeFailed(http.StatusConflict, "no_code_factor", "Your account has no authenticator app: use your passkey to finish signing in.", ps)
		return
	}
	res, err := p.accounts.VerifySecondFactor(ctx, accounts.SecondFactorAttempt{
		Name: ps.User, Code: st.code, ClientIP: a.s.ClientIP(), Devices: signin.DeviceTokens(r),
		PasswordChangedAt: time.UnixMicro(ps.PasswordChangedAt).UTC(), Factor: ps.Factor,
	})
	switch {
	case errors.Is(err, accounts.ErrInvalidCode):
		if ps.spent() {
			p.endPending(ctx, st.rec.Key, w)
			a.codeFailed(http.StatusUnauthorized, "invalid_code", "Wrong code, too many times. Sign in again.", ps)
			return
		}
		a.codeFailed(http.StatusUnauthorized, "invalid_code", "Wrong code. Try again: enter the code your app shows now, or an unused recovery code.", ps)
		return
	case err != nil:
		p.stepRefused(a, st.rec.Key, err)
		return
	}
	user := res.User
	if !p.admitAfterCode(st, signin.Identity{
		UserID: signin.LocalUser(user.Name), Method: signin.Password,
		// A recovery code is a one-time password too; the audit line
		// tells them apart.
		AMR:      []string{signin.AMRPassword, signin.AMROTP},
		AuthTime: p.now(), Email: user.Email, Roles: user.Roles,
		Pin: st.pin, Persistent: ps.Remember, DeviceTokens: res.Devices,
	}) {
		return
	}
	a.userName = user.Name
	if a.isJSON {
		httpjson.Write(w, http.StatusOK, map[string]any{
			"user": user.Name, "email": user.Email, "roles": signin.Roles(a.s), "csrf_token": a.s.CSRFToken(),
			"second_factor": res.SecondFactor, "recovery_codes_left": res.RecoveryCodesLeft,
		})
	} else {
		seeOther(w, httpx.SafeReturnTo(ps.ReturnTo))
	}
	a.audit(outcomeSuccess, slog.Bool("remember", ps.Remember), slog.String("second_factor", res.SecondFactor),
		slog.Int("recovery_codes_left", res.RecoveryCodesLeft))
}

// codeStep is a code sent between the password and the session: for the
// second factor, or for the enrolment a role requires.
type codeStep struct {
	a    *loginAttempt
	code string
	rec  cloakroom.AuxRecord
	ps   pendingSignIn
	pin  cloakroom.Pin // the user's sessions as they were before the check
}

// startCodeStep is what both code steps begin with: the code read, the
// pending sign-in (enrol: the pending enrolment) found, this attempt
// counted before the check, atomically, so that two requests racing with
// one pending sign-in cannot both spend the same attempt, and the pin
// taken. It answers and reports false when the step cannot go on.
func (p *signInPages) startCodeStep(w http.ResponseWriter, r *http.Request, enrol bool) (*codeStep, bool) {
	ctx := r.Context()
	code, isJSON, bad := readCode(w, r)
	a := &loginAttempt{p: p, w: w, r: r, s: p.sessions.Session(r), isJSON: isJSON}
	if bad != nil {
		a.fail(bad.Status, bad.Code, bad.Message)
		a.audit(outcomeBadRequest, slog.String("reason", bad.Message))
		return nil, false
	}
	rec, ps, found, err := p.pending(r, enrol)
	if err != nil {
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "session store unavailable"))
		return nil, false
	}
	a.req = loginRequest{Username: ps.User, Remember: ps.Remember, ReturnTo: ps.ReturnTo}
	step := stepCode
	if enrol {
		step = stepEnrol
	}
	if !found || enrol && ps.Sealed == "" {
		p.pendingGone(a, step)
		return nil, false
	}
	if !p.commitPending(a, &rec, &ps, step, true) {
		return nil, false
	}
	pin, err := p.sessions.Pin(ctx, ps.User)
	if err != nil {
		a.refused(err)
		return nil, false
	}
	return &codeStep{a: a, code: code, rec: rec, ps: ps, pin: pin}, true
}

// pendingStep is the kind of step under way with a pending sign-in, for
// the answers commitPending gives.
type pendingStep int

const (
	stepCode    pendingStep = iota // a code (TOTP or recovery) after the password
	stepEnrol                      // the first code of a pending enrolment
	stepPasskey                    // a passkey step (JSON only)
)

// auditAttrs are what the step adds to the login audit line.
func (step pendingStep) auditAttrs(attrs ...slog.Attr) []slog.Attr {
	if step == stepPasskey {
		return append(attrs, slog.String("method", "passkey"))
	}
	return attrs
}

// spent reports whether the pending sign-in's attempts are used up
// (codes and passkey steps begun together): nothing more is checked with
// it, and it ends.
func (ps pendingSignIn) spent() bool { return ps.Attempts >= maxCodeAttempts }

// pendingGone answers a step whose pending sign-in is not there (no
// cookie, expired, used, ended) or went while the step wrote it back
// (expired meanwhile, or ended by another step): 401
// second_factor_expired, the cookie expired, the password asked again (a
// navigation gets the login page saying so), whatever the step.
func (p *signInPages) pendingGone(a *loginAttempt, step pendingStep, attrs ...slog.Attr) {
	if len(attrs) == 0 {
		reason := "no pending sign-in"
		if step == stepEnrol {
			reason = "no pending enrolment"
		}
		attrs = []slog.Attr{slog.String("reason", reason)}
	}
	if step == stepEnrol {
		p.enrolmentGone(a.w, a.r, http.StatusUnauthorized, msgEnrolAgain)
	} else {
		a.w.Header().Add("Set-Cookie", pendingCookieLine(""))
		a.fail(http.StatusUnauthorized, "second_factor_expired", msgSignInAgain)
	}
	a.audit(outcomeInvalid, step.auditAttrs(attrs...)...)
}

// attemptsSpent answers a step of a pending sign-in whose attempts are
// used up: it ends, and the password is asked again.
func (p *signInPages) attemptsSpent(a *loginAttempt, rec cloakroom.AuxRecord, ps pendingSignIn, step pendingStep) {
	if err := p.sessions.Store().DeleteAux(context.WithoutCancel(a.r.Context()), rec.Key); err != nil {
		p.log.WarnContext(a.r.Context(), "pending sign-in not deleted; it expires on its own", "err", err)
	}
	p.pendingGone(a, step, slog.String("reason", "attempts spent"), slog.Int("attempt", ps.Attempts))
}

// commitPending is how every step through the pending sign-in writes it
// back: when spend, the step first counts one of its attempts, refused
// (attemptsSpent) once they are used up, so that no code or passkey is
// checked past the bound; then rec takes ps, compare-and-set on its
// version, so that of two steps racing with one pending sign-in one goes
// on and the other is answered 409 (and cannot spend the same attempt).
// It reports whether the write went through; when it did not, the step
// has been answered.
func (p *signInPages) commitPending(a *loginAttempt, rec *cloakroom.AuxRecord, ps *pendingSignIn, step pendingStep, spend bool) bool {
	if spend {
		if ps.spent() {
			p.attemptsSpent(a, *rec, *ps, step)
			return false
		}
		ps.Attempts++
	}
	rec.Version++
	rec.Data, _ = json.Marshal(ps)
	err := p.sessions.Store().CommitAux(a.r.Context(), *rec)
	switch {
	case err == nil:
		return true
	case errors.Is(err, cloakroom.ErrNotFound):
		// Expired or ended since it was read: as if it were not there.
		p.pendingGone(a, step, slog.String("reason", "pending sign-in gone"))
	case errors.Is(err, cloakroom.ErrConflict):
		const busy = "Another attempt with this sign-in is under way. Try again."
		if step == stepCode {
			a.codeFailed(http.StatusConflict, "conflict", busy, *ps)
			return false
		}
		a.fail(http.StatusConflict, "conflict", busy)
		a.audit(outcomeInvalid, step.auditAttrs(slog.String("reason", "conflict"))...)
	default:
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "session store unavailable"))
	}
	return false
}

// stepRefused answers a second-factor step the accounts refused for
// another reason than its code or passkey: an account changed since the
// password (ErrInvalidCredentials) ends the pending sign-in, to start
// over.
func (p *signInPages) stepRefused(a *loginAttempt, key cloakroom.Key, err error) {
	if errors.Is(err, accounts.ErrInvalidCredentials) {
		p.endPending(a.r.Context(), key, a.w)
	}
	a.refused(err)
}

// admitAfterCode ends the pending state, first use only (if that fails,
// no session is started from it), and admits the session of id. It
// answers and reports false when it could not.
func (p *signInPages) admitAfterCode(st *codeStep, id signin.Identity) bool {
	a, ctx := st.a, st.a.r.Context()
	if err := p.sessions.Store().DeleteAux(ctx, st.rec.Key); err != nil {
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "pending sign-in not ended"))
		return false
	}
	a.w.Header().Add("Set-Cookie", pendingCookieLine(""))
	err := p.timeStore("login", func() error { return p.admission.Admit(ctx, a.r, a.w.Header(), id) })
	if err != nil {
		a.refused(err)
		return false
	}
	return true
}

// endPending deletes a pending sign-in and its cookie.
func (p *signInPages) endPending(ctx context.Context, key cloakroom.Key, w http.ResponseWriter) {
	if err := p.sessions.Store().DeleteAux(context.WithoutCancel(ctx), key); err != nil {
		p.log.WarnContext(ctx, "pending sign-in not deleted; it expires on its own", "err", err)
	}
	w.Header().Add("Set-Cookie", pendingCookieLine(""))
}

// codeFailed answers a refused code: JSON, or the code page again with
// the message (the login page once the pending sign-in is gone).
func (a *loginAttempt) codeFailed(status int, code, message string, ps pendingSignIn) {
	a.audit(outcomeInvalid, slog.String("reason", code), slog.Int("attempt", ps.Attempts))
	if a.isJSON {
		httpjson.Error(a.w, status, code, message)
		return
	}
	if ps.spent() {
		a.p.render(a.w, a.r, status, "login", pageData{Title: "Two-step verification", Error: message, Username: ps.User,
			ReturnTo: "/", Providers: a.p.providerLinks("/")})
		return
	}
	data := a.p.secondFactorPageData(a.r, ps.User)
	data.Error = message
	a.p.render(a.w, a.r, status, "secondfactor", data)
}

// readCode reads the code of POST {auth}/second-factor.
func readCode(w http.ResponseWriter, r *http.Request) (code string, isJSON bool, bad *problem) {
	if refused := bodyRefusal(r); refused != nil {
		return "", !isFormContent(r) && wantsJSON(r), refused
	}
	if isFormContent(r) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
		if err := r.ParseForm(); err != nil || len(r.PostForm["code"]) > 1 {
			return "", false, badInput(http.StatusBadRequest, "The form could not be read.")
		}
		code = r.PostForm.Get("code")
	} else {
		var body struct {
			Code string `json:"code"`
		}
		if p := decodeJSONBody(w, r, &body); p != nil {
			return "", true, p
		}
		code, isJSON = body.Code, true
	}
	code = strings.TrimSpace(code)
	if code == "" || len(code) > maxCodeLen {
		return "", isJSON, badInput(http.StatusBadRequest, "Enter the 6-digit code from your app, or a recovery code.")
	}
	return code, isJSON, nil
}

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
	answer := map[string]string{
		"error":   "second_factor_enrolment_required",
		"message": "Your role requires two-step verification: set up an authenticator app to sign in.",
	}
	if p.offersPasskey(a.r, user.Name) {
		answer["message"] = "Your role requires two-step verification: use one of your passkeys, or set up an authenticator app, to sign in."
		answer["passkey_begin_url"] = p.auth + "/second-factor/passkey/begin"
	}
	p.startPendingStep(a, pendingSignIn{User: user.Name, PasswordChangedAt: user.PasswordChangedAt.UnixMicro(), Enrol: true},
		enrolLifetime, "/second-factor/enrol", outcomeEnrolmentRequired, answer, "enrolment_url")
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
		PasskeyFactor: p.offersPasskey(r, ps.User),
		TOTPSecret:    e.Secret, TOTPURI: e.URI, TOTPExpires: formatTime(e.Expires),
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
	st, ok := p.startCodeStep(w, r, true)
	if !ok {
		return
	}
	ctx, a, ps, rec := r.Context(), st.a, st.ps, st.rec
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
	codes, err := p.accounts.ConfirmTOTP(ctx, ps.User, ps.Sealed, st.code)
	switch {
	case errors.Is(err, accounts.ErrInvalidCode):
		if ps.spent() {
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
	// The factor is on from here: if the session cannot start, the next
	// sign-in asks for its code.
	if !p.admitAfterCode(st, signin.Identity{
		UserID: signin.LocalUser(user.Name), Method: signin.Password,
		AMR:      []string{signin.AMRPassword, signin.AMROTP},
		AuthTime: p.now(), Email: user.Email, Roles: user.Roles, Pin: st.pin, Persistent: ps.Remember,
	}) {
		return
	}
	a.userName = user.Name
	w.Header().Set("Cache-Control", "no-store")
	if a.isJSON {
		httpjson.Write(w, http.StatusOK, map[string]any{
			"user": user.Name, "email": user.Email, "roles": signin.Roles(a.s), "csrf_token": a.s.CSRFToken(),
			"second_factor": "totp", "recovery_codes": codes,
		})
	} else {
		p.render(w, r, http.StatusOK, "totp", pageData{
			Title: "Save your recovery codes", User: user.Name, CSRFToken: a.s.CSRFToken(), RecoveryCodes: codes,
			EnrolAtSignIn: true, ReturnTo: httpx.SafeReturnTo(ps.ReturnTo),
		})
	}
	a.audit(outcomeSuccess, slog.String("second_factor", outcomeEnrolled), slog.Bool("remember", ps.Remember))
}
