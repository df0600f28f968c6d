package gateway

import (
	"bytes"
	"errors"
	"image/png"
	"log/slog"
	"net/http"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
)

// totpEnrolment is a local account's TOTP enrolment from the account
// page: start (after a recent sign-in), show the secret as text, as an
// otpauth:// URI and as a QR code, then confirm with a first valid code,
// which enables the factor and shows the recovery codes once.
//
// The offered secret waits for its confirmation in an auxiliary record
// bound to the session that asked (its user and handle), sealed by the
// accounts' key file; the QR code is drawn from it on request, as a PNG
// from memory, never cached (img-src 'self' allows it).
type totpEnrolment struct {
	base
	accounts *accounts.Service
}

// The account page's TOTP form.
const formTOTP = "totp"

// qrSize is the QR code's width and height in pixels.
const qrSize = 240

func enrolmentKey(s *cloakroom.Session) cloakroom.Key {
	return cloakroom.AuxKey("gateway", "totp-enrolment", s.UserID()+"\x00"+s.Handle())
}

// start is POST {auth}/account/totp, behind a recent sign-in: it offers a
// new secret and shows the enrolment page.
func (t *totpEnrolment) start(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	e, err := t.accounts.BeginTOTP(r.Context(), s.UserID())
	if err != nil {
		t.fail(w, r, true, totpProblem(err))
		return
	}
	err = t.sessions.Store().CommitAux(r.Context(), cloakroom.AuxRecord{
		Key: enrolmentKey(s), Version: 1, Expires: e.Expires, Data: []byte(e.Sealed),
	})
	if errors.Is(err, cloakroom.ErrConflict) {
		// One is waiting already (a second click): offer this one instead.
		err = t.replace(r, s, e)
	}
	if err != nil {
		t.fail(w, r, true, err)
		return
	}
	t.log.LogAttrs(r.Context(), slog.LevelInfo, "second factor enrolment started", slog.String("user", s.UserID()), slog.String("session", s.Ref()))
	seeOther(w, t.auth+"/account/totp")
}

// replace puts e in place of the enrolment the session has waiting.
func (t *totpEnrolment) replace(r *http.Request, s *cloakroom.Session, e accounts.TOTPEnrolment) error {
	rec, found, err := t.sessions.Store().FindAux(r.Context(), enrolmentKey(s))
	if err != nil || !found {
		return errors.Join(err, errors.New("enrolment record vanished"))
	}
	rec.Version++
	rec.Expires, rec.Data = e.Expires, []byte(e.Sealed)
	return t.sessions.Store().CommitAux(r.Context(), rec)
}

// waiting returns the enrolment the session has waiting, found false
// when none (never started, expired, confirmed).
func (t *totpEnrolment) waiting(r *http.Request, s *cloakroom.Session) (accounts.TOTPEnrolment, bool, error) {
	rec, found, err := t.sessions.Store().FindAux(r.Context(), enrolmentKey(s))
	if err != nil || !found {
		return accounts.TOTPEnrolment{}, false, err
	}
	e, err := t.accounts.OpenTOTPEnrolment(s.UserID(), string(rec.Data))
	if err != nil {
		return accounts.TOTPEnrolment{}, false, nil
	}
	return e, true, nil
}

// page is GET {auth}/account/totp: the secret, its URI and QR code, and
// the form for the confirming code.
func (t *totpEnrolment) page(w http.ResponseWriter, r *http.Request) {
	t.show(w, r, http.StatusOK, "")
}

func (t *totpEnrolment) show(w http.ResponseWriter, r *http.Request, status int, errMsg string) {
	s := session(r)
	e, found, err := t.waiting(r, s)
	switch {
	case err != nil:
		t.fail(w, r, true, err)
		return
	case !found:
		seeOther(w, t.auth+"/account?totp=expired")
		return
	}
	t.render(w, r, status, "totp", pageData{
		Title: "Set up an authenticator app", User: s.UserID(), CSRFToken: s.CSRFToken(), Error: errMsg,
		TOTPSecret: e.Secret, TOTPURI: e.URI, TOTPExpires: formatTime(e.Expires),
	})
}

// qr is GET {auth}/account/totp/qr: the waiting enrolment's QR code.
func (t *totpEnrolment) qr(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	e, found, err := t.waiting(r, s)
	if err != nil || !found {
		w.Header().Set("Cache-Control", "no-store")
		http.NotFound(w, r)
		return
	}
	writeQR(w, r, &t.base, e)
}

// writeQR answers with e's QR code as a PNG, never cached.
func writeQR(w http.ResponseWriter, r *http.Request, b *base, e accounts.TOTPEnrolment) {
	img, err := e.QR(qrSize)
	var buf bytes.Buffer
	if err == nil {
		err = png.Encode(&buf, img)
	}
	if err != nil {
		b.fail(w, r, false, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/png")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'")
	_, _ = w.Write(buf.Bytes())
}

// confirm is POST {auth}/account/totp/confirm: the first code from the
// app. Right, it enables the factor and shows the recovery codes, once.
func (t *totpEnrolment) confirm(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	rec, found, err := t.sessions.Store().FindAux(r.Context(), enrolmentKey(s))
	if err != nil {
		t.fail(w, r, true, err)
		return
	}
	if !found {
		seeOther(w, t.auth+"/account?totp=expired")
		return
	}
	code := r.PostForm.Get("code")
	if len(code) > maxCodeLen {
		code = ""
	}
	codes, err := t.accounts.ConfirmTOTP(r.Context(), s.UserID(), string(rec.Data), code)
	t.log.LogAttrs(r.Context(), slog.LevelInfo, "second factor enrolment", slog.String("user", s.UserID()),
		slog.String("outcome", totpOutcome(err)), slog.String("session", s.Ref()))
	switch {
	case errors.Is(err, accounts.ErrInvalidCode):
		t.show(w, r, http.StatusBadRequest, "That code is not right. Enter the code your app shows now.")
		return
	case errors.Is(err, accounts.ErrEnrolmentExpired):
		seeOther(w, t.auth+"/account?totp=expired")
		return
	case err != nil:
		t.fail(w, r, true, totpProblem(err))
		return
	}
	if err := t.sessions.Store().DeleteAux(r.Context(), rec.Key); err != nil {
		t.log.WarnContext(r.Context(), "enrolment record not deleted; it expires on its own", "err", err)
	}
	t.render(w, r, http.StatusOK, "totp", pageData{
		Title: "Save your recovery codes", User: s.UserID(), CSRFToken: s.CSRFToken(), RecoveryCodes: codes,
	})
}

func totpOutcome(err error) string {
	switch {
	case err == nil:
		return outcomeSuccess
	case errors.Is(err, accounts.ErrInvalidCode):
		return "invalid_code"
	case errors.Is(err, accounts.ErrEnrolmentExpired):
		return "expired"
	case errors.Is(err, accounts.ErrAlreadyEnrolled):
		return "already_enrolled"
	}
	return outcomeError
}

// totpProblem maps the enrolment's errors to answers; others pass.
func totpProblem(err error) error {
	switch {
	case errors.Is(err, accounts.ErrNoSealer):
		return &problem{Status: http.StatusServiceUnavailable, Code: "not_configured",
			Message: "Authenticator apps cannot be set up here: the server has no key file to protect their secrets (the operator sets --totp-keys-file)."}
	case errors.Is(err, accounts.ErrAlreadyEnrolled):
		return &problem{Status: http.StatusBadRequest, Code: "already_enrolled",
			Message: "Your account has an authenticator app already. An administrator can reset it if you lost it."}
	case errors.Is(err, accounts.ErrNoSuchUser):
		return errUnauthenticated
	}
	return err
}

// info is what the account page shows of the user's second factor.
func (t *totpEnrolment) info(r *http.Request, s *cloakroom.Session) (on bool, since string, left int, available bool) {
	info, err := t.accounts.SecondFactors(r.Context(), s.UserID())
	if err != nil {
		t.log.WarnContext(r.Context(), "second factor not read for the account page", "err", err)
	}
	return info.TOTP, formatTime(info.Since.Truncate(time.Minute)), info.RecoveryCodesLeft, t.accounts.SecondFactorsAvailable()
}
