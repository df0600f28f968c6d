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
	// Enrol marks a pending enrolment (enrolsignin.go): a role that
	// requires a second factor, an account without one. Sealed is the
	// TOTP secret offered, once the enrolment page was shown.
	Enrol    bool   `json:"enrol,omitempty"`
	Sealed   string `json:"sealed,omitempty"`
	Remember bool   `json:"remember"`
	ReturnTo string `json:"return_to"`
	Attempts int    `json:"attempts"`
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
// factor, and sends the browser to the code page (a script gets 401
// second_factor_required naming it).
func (p *signInPages) startPending(a *loginAttempt, need *accounts.SecondFactorRequiredError) {
	user := need.User
	ctx := a.r.Context()
	id := rand.Text() // 130 random bits
	data, _ := json.Marshal(pendingSignIn{
		User: user.Name, PasswordChangedAt: user.PasswordChangedAt.UnixMicro(), Factor: need.Factor,
		Remember: a.req.Remember, ReturnTo: httpx.SafeReturnTo(a.req.ReturnTo),
	})
	err := p.sessions.Store().CommitAux(ctx, cloakroom.AuxRecord{
		Key: pendingKey(id), Version: 1, Expires: p.now().Add(pendingLifetime), Data: data,
	})
	if err != nil {
		p.log.ErrorContext(ctx, "pending sign-in not stored", "user", user.Name, "err", err)
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "pending sign-in not stored"))
		return
	}
	a.userName = user.Name
	a.w.Header().Add("Set-Cookie", pendingCookieLine(id))
	url := p.auth + "/second-factor"
	if a.isJSON {
		a.w.Header().Set("Cache-Control", "no-store")
		httpjson.Write(a.w, http.StatusUnauthorized, map[string]string{
			"error": "second_factor_required", "message": "Enter the code from your authenticator app, or a recovery code.",
			"second_factor_url": url,
		})
	} else {
		seeOther(a.w, url)
	}
	a.audit(outcomeSecondFactor)
}

// pending returns the browser's pending sign-in (enrol false) or pending
// enrolment (enrol true), found false when it has none of that kind (no
// cookie, expired, used).
func (p *signInPages) pending(r *http.Request, enrol bool) (cloakroom.AuxRecord, pendingSignIn, bool, error) {
	c, err := r.Cookie(pendingCookie)
	if err != nil || c.Value == "" || len(c.Value) > 64 {
		return cloakroom.AuxRecord{}, pendingSignIn{}, false, nil
	}
	rec, found, err := p.sessions.Store().FindAux(r.Context(), pendingKey(c.Value))
	if err != nil || !found {
		return rec, pendingSignIn{}, false, err
	}
	var ps pendingSignIn
	if err := json.Unmarshal(rec.Data, &ps); err != nil || ps.User == "" || ps.Enrol != enrol {
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
		p.render(w, r, http.StatusOK, "secondfactor", pageData{Title: "Two-step verification", Username: ps.User})
	}
}

// secondFactor is POST {auth}/second-factor: the code of a pending
// sign-in, as a form field or JSON {"code": "..."}. The first right code
// ends the pending sign-in and admits the session with amr ["pwd","otp"].
func (p *signInPages) secondFactor(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	code, isJSON, bad := readCode(w, r)
	s := p.sessions.Session(r)
	a := &loginAttempt{p: p, w: w, r: r, s: s, isJSON: isJSON}
	if bad != nil {
		a.fail(bad.Status, bad.Code, bad.Message)
		a.audit(outcomeBadRequest, slog.String("reason", bad.Message))
		return
	}
	rec, ps, found, err := p.pending(r, false)
	if err != nil {
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "session store unavailable"))
		return
	}
	a.req = loginRequest{Username: ps.User, Remember: ps.Remember, ReturnTo: ps.ReturnTo}
	if !found {
		w.Header().Add("Set-Cookie", pendingCookieLine(""))
		a.fail(http.StatusUnauthorized, "second_factor_expired", msgSignInAgain)
		a.audit(outcomeInvalid, slog.String("reason", "no pending sign-in"))
		return
	}
	// Counted before the check, atomically: two requests racing with one
	// pending sign-in cannot both spend the same attempt.
	ps.Attempts++
	rec.Version++
	rec.Data, _ = json.Marshal(ps)
	if err := p.sessions.Store().CommitAux(ctx, rec); err != nil {
		if errors.Is(err, cloakroom.ErrConflict) || errors.Is(err, cloakroom.ErrNotFound) {
			a.codeFailed(http.StatusConflict, "conflict", "Another attempt with this sign-in is under way. Try again.", ps)
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
	res, err := p.accounts.VerifySecondFactor(ctx, accounts.SecondFactorAttempt{
		Name: ps.User, Code: code, ClientIP: s.ClientIP(), Devices: signin.DeviceTokens(r),
		PasswordChangedAt: time.UnixMicro(ps.PasswordChangedAt).UTC(), Factor: ps.Factor,
	})
	switch {
	case errors.Is(err, accounts.ErrInvalidCode):
		if ps.Attempts >= maxCodeAttempts {
			p.endPending(ctx, rec.Key, w)
			a.codeFailed(http.StatusUnauthorized, "invalid_code", "Wrong code, too many times. Sign in again.", ps)
			return
		}
		a.codeFailed(http.StatusUnauthorized, "invalid_code", "Wrong code. Try again: enter the code your app shows now, or an unused recovery code.", ps)
		return
	case errors.Is(err, accounts.ErrInvalidCredentials):
		p.endPending(ctx, rec.Key, w) // the account changed: start over
		a.refused(err)
		return
	case err != nil:
		a.refused(err)
		return
	}
	// First use ends it; if that fails, no session is started from it.
	if err := p.sessions.Store().DeleteAux(ctx, rec.Key); err != nil {
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "pending sign-in not ended"))
		return
	}
	w.Header().Add("Set-Cookie", pendingCookieLine(""))
	user := res.User
	err = p.timeStore("login", func() error {
		return p.admission.Admit(ctx, r, w.Header(), signin.Identity{
			UserID: signin.LocalUser(user.Name), Method: signin.Password,
			// A recovery code is a one-time password too; the audit line
			// tells them apart.
			AMR:      []string{signin.AMRPassword, signin.AMROTP},
			AuthTime: p.now(), Email: user.Email, Roles: user.Roles,
			Pin: pin, Persistent: ps.Remember, DeviceTokens: res.Devices,
		})
	})
	if err != nil {
		a.refused(err)
		return
	}
	a.userName = user.Name
	if isJSON {
		httpjson.Write(w, http.StatusOK, map[string]any{
			"user": user.Name, "email": user.Email, "roles": signin.Roles(s), "csrf_token": s.CSRFToken(),
			"second_factor": res.SecondFactor, "recovery_codes_left": res.RecoveryCodesLeft,
		})
	} else {
		seeOther(w, httpx.SafeReturnTo(ps.ReturnTo))
	}
	a.audit(outcomeSuccess, slog.Bool("remember", ps.Remember), slog.String("second_factor", res.SecondFactor),
		slog.Int("recovery_codes_left", res.RecoveryCodesLeft))
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
	page := "secondfactor"
	if ps.Attempts >= maxCodeAttempts {
		page = "login"
	}
	a.p.render(a.w, a.r, status, page, pageData{Title: "Two-step verification", Error: message, Username: ps.User,
		ReturnTo: "/", Providers: a.p.providerLinks("/")})
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
