package gateway

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/signin"
)

// Passkeys (WebAuthn). Each ceremony's challenge lives in an auxiliary
// record of the session store for accounts.PasskeyCeremonyLifetime,
// bound to the browser that asked, and is used once: the first answer
// bumps the record's version (a compare-and-swap, so of two answers
// racing only one goes on) and deletes it, whatever the verdict.
//
//   - A sign-in's record is named by a random value in passkeyCookie,
//     SameSite=Strict, HttpOnly: no other browser, and no other site,
//     can answer it.
//   - A registration's record is named by the session (its user and
//     handle), started by an account form after a recent sign-in.
//
// The pages call WebAuthn from the gateway's own script,
// assets/passkey.js (the pages allow no inline script).
const (
	passkeyCookie = "__Host-Http-passkey"
	// formPasskey names the account page's passkey forms.
	formPasskey = "passkey"
	// outcomePasskeyRefused is the login audit line of a passkey answer
	// the relying party refused.
	outcomePasskeyRefused = "passkey_refused"
	msgPasskeyRefused     = "That passkey was not accepted. Try again, or sign in with your password."
	msgPasskeyExpired     = "The passkey sign-in took too long or was already used. Try again."
)

func passkeySignInKey(id string) cloakroom.Key {
	return cloakroom.AuxKey("gateway", "passkey-sign-in", id)
}

func passkeyRegistrationKey(s *cloakroom.Session) cloakroom.Key {
	return cloakroom.AuxKey("gateway", "passkey-registration", s.UserID()+"\x00"+s.Handle())
}

// passkeyCookieLine is the Set-Cookie of a sign-in ceremony's value; ""
// expires the cookie.
func passkeyCookieLine(id string) string {
	c := &http.Cookie{Name: passkeyCookie, Value: id, Path: "/", MaxAge: int(accounts.PasskeyCeremonyLifetime.Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode}
	if id == "" {
		c.MaxAge = -1
	}
	return c.String()
}

// consumeCeremony ends the ceremony under key and returns what it held,
// found false when it is gone, expired or already answered. The version
// bump decides races; the delete follows, and a ceremony whose delete
// failed is still used up (its Data is empty).
func consumeCeremony(ctx context.Context, store cloakroom.Store, key cloakroom.Key) ([]byte, bool, error) {
	rec, found, err := store.FindAux(ctx, key)
	if err != nil || !found || len(rec.Data) == 0 {
		return nil, false, err
	}
	data := rec.Data
	rec.Version++
	rec.Data = nil
	if err := store.CommitAux(ctx, rec); errors.Is(err, cloakroom.ErrConflict) || errors.Is(err, cloakroom.ErrNotFound) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, err
	}
	// Best effort: the record is used up already, and expires.
	_ = store.DeleteAux(context.WithoutCancel(ctx), key)
	return data, true, nil
}

// passkeyBegin is POST {auth}/passkey/begin: the options of a sign-in
// with a discoverable passkey, for navigator.credentials.get, and the
// cookie that binds the ceremony to this browser.
func (p *signInPages) passkeyBegin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if p.passkeyThrottled(&loginAttempt{p: p, w: w, r: r, s: p.sessions.Session(r), isJSON: true}, "begin") {
		return
	}
	c, err := p.accounts.BeginPasskeyLogin()
	if err != nil {
		p.log.ErrorContext(ctx, "passkey sign-in not started", "err", err)
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		return
	}
	id := rand.Text() // 130 random bits
	err = p.sessions.Store().CommitAux(ctx, cloakroom.AuxRecord{
		Key: passkeySignInKey(id), Version: 1, Expires: p.now().Add(accounts.PasskeyCeremonyLifetime), Data: c.State,
	})
	if err != nil {
		p.log.ErrorContext(ctx, "passkey sign-in not stored", "err", err)
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		return
	}
	w.Header().Add("Set-Cookie", passkeyCookieLine(id))
	w.Header().Set("Cache-Control", "no-store")
	httpjson.Write(w, http.StatusOK, json.RawMessage(c.Options))
}

// passkeySignIn is the body of POST {auth}/passkey/finish.
type passkeySignIn struct {
	// Credential is the browser's PublicKeyCredential, as JSON.
	Credential json.RawMessage `json:"credential"`
	Remember   bool            `json:"remember"`
	ReturnTo   string          `json:"return_to"`
}

// passkeyFinish is POST {auth}/passkey/finish: the authenticator's answer
// to this browser's sign-in ceremony. An accepted passkey admits the
// account's session with amr hwk (a device-bound key) or swk (a synced
// one), user, and pin and mfa when the authenticator verified the user.
func (p *signInPages) passkeyFinish(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s := p.sessions.Session(r)
	a := &loginAttempt{p: p, w: w, r: r, s: s, isJSON: true}
	if p.passkeyThrottled(a, "finish") {
		return
	}
	var body passkeySignIn
	if bad := decodeJSONBody(w, r, &body); bad != nil {
		a.fail(bad.Status, bad.Code, bad.Message)
		a.audit(outcomeBadRequest, slog.String("reason", bad.Message), slog.String("method", "passkey"))
		return
	}
	a.req = loginRequest{Remember: body.Remember, ReturnTo: body.ReturnTo}
	w.Header().Add("Set-Cookie", passkeyCookieLine(""))
	if s.Err() != nil {
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "session store unavailable"))
		return
	}
	var state []byte
	found := false
	// A repeated cookie is none: the first may be planted.
	if id, err := cloakroom.CookieValue(r.Header, passkeyCookie); err == nil && id != "" && len(id) <= 64 {
		var err error
		if state, found, err = consumeCeremony(ctx, p.sessions.Store(), passkeySignInKey(id)); err != nil {
			a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
			a.audit(outcomeError, slog.String("reason", "session store unavailable"))
			return
		}
	}
	if !found {
		a.fail(http.StatusUnauthorized, "passkey_expired", msgPasskeyExpired)
		a.audit(outcomeInvalid, slog.String("reason", "no passkey ceremony"), slog.String("method", "passkey"))
		return
	}
	// The pin comes first, as for a password: the account the answer
	// names has its sessions pinned before the answer is checked against
	// the record read after it, so a change before the pin is seen by the
	// check, and a revocation after it (the user's sessions, everyone's, a
	// disable, a delete, new roles) fails the admission.
	name, err := p.accounts.PasskeySignInName(ctx, body.Credential)
	var pin cloakroom.Pin
	if err == nil {
		pin, err = p.sessions.Pin(ctx, name)
	}
	var res accounts.PasskeyLoginResult
	if err == nil {
		res, err = p.accounts.PasskeyLogin(ctx, state, body.Credential)
	}
	if errors.Is(err, accounts.ErrInvalidPasskey) {
		a.fail(http.StatusUnauthorized, outcomePasskeyRefused, msgPasskeyRefused)
		a.audit(outcomePasskeyRefused, slog.String("reason", err.Error()), slog.String("method", "passkey"))
		return
	}
	if err == nil && res.User.Name != name {
		err = errAccountChanged // another account under the handle since the pin
	}
	if err != nil {
		a.refused(err)
		return
	}
	user := res.User
	err = p.timeStore("login", func() error {
		return p.admission.Admit(ctx, r, w.Header(), signin.Identity{
			UserID: signin.LocalUser(user.Name), Method: signin.Passkey, AMR: passkeyAMR(res),
			AuthTime: p.now(), Email: user.Email, Roles: user.Roles,
			Pin: pin, Persistent: body.Remember,
		})
	})
	if err != nil {
		a.refused(err)
		return
	}
	a.userName = user.Name
	httpjson.Write(w, http.StatusOK, map[string]any{
		"user": user.Name, "email": user.Email, "roles": signin.Roles(s), "csrf_token": s.CSRFToken(),
		"redirect": httpx.SafeReturnTo(body.ReturnTo),
	})
	a.audit(outcomeSuccess, slog.String("method", "passkey"), slog.String("passkey", res.Passkey.ID),
		slog.Bool("user_verified", res.UserVerified), slog.Bool("remember", body.Remember))
}

// passkeyAMR is the RFC 8176 amr of a passkey sign-in: hwk for a key
// bound to its device, swk for a synced one (backup eligible, so it
// exists outside the device's hardware), user for the presence test, and
// with user verification pin (a PIN or a biometric: the authenticator
// does not say which) and mfa, since the key and its unlocking are two
// factors.
func passkeyAMR(res accounts.PasskeyLoginResult) []string {
	amr := []string{signin.AMRHardware, signin.AMRUser}
	if res.Synced {
		amr[0] = signin.AMRSoftware
	}
	if res.UserVerified {
		amr = append(amr, signin.AMRPin, signin.AMRMFA)
	}
	return amr
}

// passkeyPages are the account page's passkeys: registration (a form
// after a recent sign-in, then a page whose script runs the ceremony),
// the list, removal.
type passkeyPages struct {
	base
	accounts *accounts.Service
}

// passkeyRegistration is a registration ceremony's record.
type passkeyRegistration struct {
	Name    string          `json:"name"`
	Options json.RawMessage `json:"options"`
	State   []byte          `json:"state"`
}

// passkeyNotices maps the account page's passkey= parameter to fixed
// messages.
var passkeyNotices = map[string]string{
	"added":   "The passkey was added. You can sign in with it without typing your name.",
	"removed": "The passkey was removed: it no longer signs you in.",
	"expired": "Adding the passkey took too long or was already finished. Start again.",
}

// start is POST {auth}/account/passkeys, behind a recent sign-in: the
// passkey's name, then the registration page.
func (k *passkeyPages) start(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	ctx := r.Context()
	if signin.KindOfSession(s) != signin.KindLocal {
		// A provider's or an app's user authenticates there.
		k.fail(w, r, true, &problem{Status: http.StatusForbidden, Code: "not_local",
			Message: "Passkeys are for accounts of this server; your sign-in is managed elsewhere."})
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name")) // as the service stores it
	if err := accounts.ValidatePasskeyName(name); err != nil {
		k.fail(w, r, true, passkeyProblem(err))
		return
	}
	c, err := k.accounts.BeginPasskeyRegistration(ctx, s.UserID())
	if err != nil {
		k.fail(w, r, true, passkeyProblem(err))
		return
	}
	data, _ := json.Marshal(passkeyRegistration{Name: name, Options: c.Options, State: c.State})
	store := k.sessions.Store()
	rec := cloakroom.AuxRecord{Key: passkeyRegistrationKey(s), Version: 1, Expires: c.Expires, Data: data}
	err = store.CommitAux(ctx, rec)
	if errors.Is(err, cloakroom.ErrConflict) {
		// One is waiting already (a second click): this one replaces it.
		old, found, ferr := store.FindAux(ctx, rec.Key)
		switch {
		case ferr != nil:
			err = ferr
		case !found:
			err = errors.New("passkey registration record vanished")
		default:
			rec.Version = old.Version + 1
			err = store.CommitAux(ctx, rec)
		}
	}
	if err != nil {
		k.fail(w, r, true, err)
		return
	}
	k.log.LogAttrs(ctx, slog.LevelInfo, "passkey registration started", slog.String("user", s.UserID()), slog.String("session", s.Ref()))
	seeOther(w, k.auth+"/account/passkeys/new")
}

// page is GET {auth}/account/passkeys/new: the waiting registration,
// whose script asks the browser for the passkey.
func (k *passkeyPages) page(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	rec, found, err := k.sessions.Store().FindAux(r.Context(), passkeyRegistrationKey(s))
	var reg passkeyRegistration
	if err == nil && found {
		if json.Unmarshal(rec.Data, &reg) != nil {
			found = false
		}
	}
	switch {
	case err != nil:
		k.fail(w, r, true, err)
		return
	case !found || len(rec.Data) == 0:
		seeOther(w, k.auth+"/account?passkey=expired")
		return
	}
	k.render(w, r, http.StatusOK, "passkey", pageData{
		Title: "Add a passkey", User: s.UserID(), CSRFToken: s.CSRFToken(),
		PasskeyName: reg.Name, PasskeyOptions: string(reg.Options), PasskeyFinish: k.auth + "/account/passkeys/finish",
	})
}

// finish is POST {auth}/account/passkeys/finish: the authenticator's
// answer (the PublicKeyCredential as JSON) to the session's waiting
// registration. The first answer ends the ceremony, accepted or not.
func (k *passkeyPages) finish(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	ctx := r.Context()
	var body struct {
		Credential json.RawMessage `json:"credential"`
	}
	if bad := decodeJSONBody(w, r, &body); bad != nil {
		k.fail(w, r, false, bad)
		return
	}
	data, found, err := consumeCeremony(ctx, k.sessions.Store(), passkeyRegistrationKey(s))
	if err != nil {
		k.fail(w, r, false, err)
		return
	}
	var reg passkeyRegistration
	if !found || json.Unmarshal(data, &reg) != nil {
		httpjson.Error(w, http.StatusConflict, "passkey_expired", passkeyNotices["expired"])
		return
	}
	info, err := k.accounts.FinishPasskeyRegistration(ctx, s.UserID(), reg.Name, reg.State, body.Credential)
	outcome := outcomeSuccess
	if err != nil {
		outcome = err.Error()
	}
	k.log.LogAttrs(ctx, slog.LevelInfo, "passkey registration", slog.String("user", s.UserID()),
		slog.String("outcome", outcome), slog.String("passkey", info.ID), slog.String("session", s.Ref()))
	if err != nil {
		k.fail(w, r, false, passkeyProblem(err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpjson.Write(w, http.StatusOK, map[string]any{"passkey": info, "redirect": k.auth + "/account?passkey=added#passkeys"})
}

// remove is POST {auth}/account/passkeys/remove, behind a recent
// sign-in: the passkey id no longer signs the user in.
func (k *passkeyPages) remove(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	id := r.PostForm.Get("id")
	err := k.accounts.RemovePasskey(r.Context(), s.UserID(), id)
	k.log.LogAttrs(r.Context(), slog.LevelInfo, "passkey removal", slog.String("user", s.UserID()),
		slog.String("passkey", id), slog.Bool("removed", err == nil), slog.String("session", s.Ref()))
	if err != nil {
		k.fail(w, r, true, passkeyProblem(err))
		return
	}
	seeOther(w, k.auth+"/account?passkey=removed#passkeys")
}

// list is the account page's passkeys.
func (k *passkeyPages) list(r *http.Request, s *cloakroom.Session) []passkeyRow {
	infos, err := k.accounts.Passkeys(r.Context(), s.UserID())
	if err != nil {
		k.log.WarnContext(r.Context(), "passkeys not read for the account page", "err", err)
		return nil
	}
	rows := make([]passkeyRow, len(infos))
	for i, p := range infos {
		rows[i] = passkeyRow{ID: p.ID, Name: p.Name, Created: formatTime(p.Created), LastUsed: formatTime(p.LastUsed), Synced: p.Synced}
	}
	return rows
}

// passkeyProblem maps the passkeys' errors to answers; others pass.
func passkeyProblem(err error) error {
	switch {
	case errors.Is(err, accounts.ErrInvalidPasskey):
		return &problem{Status: http.StatusBadRequest, Code: "passkey_refused", Message: "The passkey was not accepted. Start again."}
	case errors.Is(err, accounts.ErrTooManyPasskeys):
		return &problem{Status: http.StatusBadRequest, Code: "too_many_passkeys",
			Message: "You have " + strconv.Itoa(accounts.MaxPasskeys) + " passkeys already, the most an account may have. Remove one first."}
	case errors.Is(err, accounts.ErrNoSuchPasskey):
		return &problem{Status: http.StatusNotFound, Code: "no_such_passkey", Message: "That passkey is not on your account (already removed?)."}
	case errors.Is(err, accounts.ErrPasskeysOff):
		return &problem{Status: http.StatusServiceUnavailable, Code: "not_configured", Message: "Passkeys are not set up on this server."}
	case errors.Is(err, accounts.ErrInvalidInput):
		return badInput(http.StatusBadRequest, "%s", err.Error()) // an *accounts.InputError: written for the user
	case errors.Is(err, accounts.ErrNoSuchUser):
		return errUnauthenticated
	}
	return err
}
