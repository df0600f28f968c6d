package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/signin"
)

// Input limits. A password hash costs memory and time, so oversized
// passwords are refused before they reach it.
const (
	maxLoginBody   = 8 << 10
	maxFormBody    = 4 << 10
	maxUsernameLen = 256
	maxPasswordLen = 1024
)

// Messages shown to people. Failed logins all get the same one, whatever
// the reason, so that they reveal nothing about which accounts exist.
const (
	msgInvalidCredentials = "Invalid username or password."
	msgThrottled          = "Too many attempts. Wait a moment, then try again."
	msgUnavailable        = "Signing in is not possible right now. Try again shortly."
)

// loginRequest is the body of POST {auth}/login, as a form or as JSON.
type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Remember bool   `json:"remember"`
	ReturnTo string `json:"return_to"`
}

// inputError is a request the client must fix; Message is safe to show.
type inputError struct {
	Status  int
	Message string
}

func (e *inputError) Error() string { return e.Message }

func badInput(status int, format string, args ...any) *inputError {
	return &inputError{Status: status, Message: fmt.Sprintf(format, args...)}
}

// readLogin parses and validates a login body. isJSON says how to answer,
// and is meaningful even when err is not nil.
func readLogin(w http.ResponseWriter, r *http.Request) (req loginRequest, isJSON bool, err error) {
	mediaType, _, mtErr := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mtErr != nil {
		mediaType = ""
	}
	if refused := bodyRefusal(r); refused != nil {
		isForm := mediaType == "application/x-www-form-urlencoded"
		return req, mediaType == "application/json" || !isForm && wantsJSON(r), refused
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	switch mediaType {
	case "application/json":
		isJSON = true
		req, err = decodeLoginJSON(r.Body)
	case "application/x-www-form-urlencoded":
		req, err = decodeLoginForm(r)
	default:
		return req, wantsJSON(r), badInput(http.StatusUnsupportedMediaType,
			"Send the login as application/json or application/x-www-form-urlencoded.")
	}
	if err != nil {
		return req, isJSON, err
	}
	return req, isJSON, validateLogin(req)
}

func decodeLoginJSON(body io.Reader) (loginRequest, error) {
	var req loginRequest
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, jsonBodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return req, badInput(http.StatusBadRequest, "The body must hold a single JSON object.")
	}
	return req, nil
}

func jsonBodyError(err error) *inputError {
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return badInput(http.StatusRequestEntityTooLarge, "The body is larger than %d bytes.", tooBig.Limit)
	case errors.Is(err, io.EOF):
		return badInput(http.StatusBadRequest, "The body is empty; send a JSON object with username and password.")
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return badInput(http.StatusBadRequest, "The body is not valid JSON.")
	case errors.As(err, &typeErr):
		return badInput(http.StatusBadRequest, "Field %q has the wrong type.", typeErr.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for unknown fields.
		return badInput(http.StatusBadRequest, "Unknown field %s.", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return badInput(http.StatusBadRequest, "The body is not a valid login request.")
}

func decodeLoginForm(r *http.Request) (loginRequest, error) {
	var req loginRequest
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return req, badInput(http.StatusRequestEntityTooLarge, "The form is larger than %d bytes.", tooBig.Limit)
		}
		return req, badInput(http.StatusBadRequest, "The form could not be parsed.")
	}
	for _, field := range []string{"username", "password", "return_to", "remember"} {
		if len(r.PostForm[field]) > 1 {
			return req, badInput(http.StatusBadRequest, "Field %q is given more than once.", field)
		}
	}
	req.Username = r.PostForm.Get("username")
	req.Password = r.PostForm.Get("password")
	req.ReturnTo = r.PostForm.Get("return_to")
	switch strings.ToLower(r.PostForm.Get("remember")) {
	case "", "off", "false", "0":
	case "on", "true", "1":
		req.Remember = true
	default:
		return req, badInput(http.StatusBadRequest, `Field "remember" must be on or off.`)
	}
	return req, nil
}

func validateLogin(req loginRequest) error {
	switch {
	case req.Username == "" || req.Password == "":
		return badInput(http.StatusBadRequest, "Enter a username and a password.")
	case len(req.Username) > maxUsernameLen:
		return badInput(http.StatusBadRequest, "The username is longer than %d bytes.", maxUsernameLen)
	case len(req.Password) > maxPasswordLen:
		return badInput(http.StatusBadRequest, "The password is longer than %d bytes.", maxPasswordLen)
	case !utf8.ValidString(req.Username) || strings.ContainsFunc(req.Username, isControl):
		return badInput(http.StatusBadRequest, "The username contains characters that are not allowed.")
	case !utf8.ValidString(req.Password) || strings.ContainsRune(req.Password, 0):
		return badInput(http.StatusBadRequest, "The password contains characters that are not allowed.")
	case len(req.ReturnTo) > maxReturnTo:
		return badInput(http.StatusBadRequest, "return_to is longer than %d bytes.", maxReturnTo)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }

// wantsJSON guesses the answer format for a request whose body could not
// tell: script requests get JSON, navigations get a page.
func wantsJSON(r *http.Request) bool { return !isNavigation(r) }

// loginPage serves the login form.
func (g *Gateway) loginPage(w http.ResponseWriter, r *http.Request) {
	s := g.sessions.Session(r)
	data := pageData{Title: "Sign in", ReturnTo: safeReturnTo(r.URL.Query().Get("return_to"))}
	data.Providers = g.providerLinks(data.ReturnTo)
	if s.LoggedIn() {
		data.User, data.CSRFToken = s.UserID(), s.CSRFToken()
	}
	g.render(w, r, http.StatusOK, "login", data)
}

// login checks a username and password and starts a session.
func (g *Gateway) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ip := g.sessions.Config().ClientIP(r)
	req, isJSON, err := readLogin(w, r)
	s := g.sessions.Session(r)
	var userName string
	audit := func(outcome string, extra ...slog.Attr) {
		g.metrics.logins.WithLabelValues(outcome).Inc()
		// The name typed is logged only once it names the account that
		// logged in; otherwise it may be a mistyped password, and a keyed
		// hash prefix lets the operator correlate attempts without it.
		who := slog.String("user_ref", g.accounts.NameRef(ctx, req.Username))
		if outcome == outcomeSuccess {
			who = slog.String("user", userName)
		}
		attrs := append([]slog.Attr{
			slog.String("outcome", outcome), who,
			slog.String("client_ip", ip), slog.String("session", s.Ref()), // the new session's after a login
		}, extra...)
		g.log.LogAttrs(ctx, slog.LevelInfo, "login", attrs...)
	}
	fail := func(status int, code, message string) {
		if isJSON {
			httpjson.Error(w, status, code, message)
			return
		}
		g.render(w, r, status, "login", pageData{
			Title: "Sign in", Error: message, Username: req.Username,
			ReturnTo: safeReturnTo(req.ReturnTo), Remember: req.Remember,
			Providers: g.providerLinks(safeReturnTo(req.ReturnTo)),
		})
	}
	var in *inputError
	if errors.As(err, &in) {
		fail(in.Status, "bad_request", in.Message)
		audit(outcomeBadRequest, slog.String("reason", in.Message))
		return
	}

	if s.Err() != nil {
		// Checked first so that an outage does not count against the
		// user's attempts.
		fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		audit(outcomeError, slog.String("reason", "session store unavailable"))
		return
	}
	res, pin, err := g.authenticate(ctx, accounts.LoginAttempt{
		Name: req.Username, Password: req.Password, ClientIP: ip, Devices: signin.DeviceTokens(r),
	})
	user := res.User
	var throttled *accounts.ThrottledError
	switch {
	case err == nil:
	case errors.Is(err, errAccountChanged):
		// Told apart only in the log: to the client it is a failed login.
		fail(http.StatusUnauthorized, "invalid_credentials", msgInvalidCredentials)
		audit(outcomeInvalid, slog.String("reason", "account changed during login"))
		return
	case errors.As(err, &throttled) || errors.Is(err, accounts.ErrThrottled):
		secs := 1
		if throttled != nil {
			secs = max(1, int(math.Ceil(throttled.RetryAfter.Seconds())))
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		fail(http.StatusTooManyRequests, "throttled", msgThrottled)
		audit(outcomeThrottled, slog.Int("retry_after", secs))
		return
	case errors.Is(err, accounts.ErrInvalidCredentials):
		fail(http.StatusUnauthorized, "invalid_credentials", msgInvalidCredentials)
		audit(outcomeInvalid)
		return
	case errors.Is(err, accounts.ErrInvalidInput):
		// Treated like any failed attempt: the reason would tell which
		// accounts exist.
		fail(http.StatusUnauthorized, "invalid_credentials", msgInvalidCredentials)
		audit(outcomeInvalid, slog.String("reason", err.Error()))
		return
	default:
		g.log.ErrorContext(ctx, "authenticate", "err", err)
		fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		audit(outcomeError, slog.String("reason", "accounts unavailable"))
		return
	}

	err = g.timeStore("login", func() error {
		return g.admission.Admit(ctx, r, w.Header(), signin.Identity{
			UserID: signin.LocalUser(user.Name), Method: signin.Password, AMR: []string{signin.AMRPassword},
			AuthTime: g.cfg.Now(), Email: user.Email, Roles: user.Roles,
			Pin: pin, Persistent: req.Remember, DeviceTokens: res.Devices,
		})
	})
	switch {
	case errors.Is(err, signin.ErrChangedMeanwhile):
		// The account changed (disabled, password or roles) after the pin:
		// what was checked is stale, and nothing was created.
		fail(http.StatusUnauthorized, "invalid_credentials", msgInvalidCredentials)
		audit(outcomeInvalid, slog.String("reason", "account changed during login"))
		return
	case err != nil:
		g.log.ErrorContext(ctx, "start session", "user", user.Name, "err", err)
		fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		audit(outcomeError, slog.String("reason", "session not created"))
		return
	}
	userName = user.Name
	roles := signin.Roles(s)

	if isJSON {
		httpjson.Write(w, http.StatusOK, map[string]any{
			"user": user.Name, "email": user.Email, "roles": roles, "csrf_token": s.CSRFToken(),
		})
	} else {
		seeOther(w, safeReturnTo(req.ReturnTo))
	}
	audit(outcomeSuccess, slog.Bool("remember", req.Remember))
}

// errAccountChanged reports that the account changed while its password
// was being checked.
var errAccountChanged = errors.New("gateway: the account changed during the login")

// authenticate checks a login with the user's session generation pinned
// before the account record is read. Every account change (disable,
// delete, password, roles) updates the record and then bumps the
// generation, so a change that lands while the password is being hashed
// makes the pinned Login fail instead of starting a session with the
// record read before it.
func (g *Gateway) authenticate(ctx context.Context, a accounts.LoginAttempt) (accounts.LoginResult, cloakroom.Pin, error) {
	pin, err := g.sessions.Pin(ctx, a.Name)
	if err != nil {
		return accounts.LoginResult{}, pin, err
	}
	res, err := g.accounts.Login(ctx, a)
	if err != nil || res.User.Name == a.Name {
		return res, pin, err
	}
	// The name was typed in another case than the stored one, the user
	// ID: pin that, then check that the record is still the one the
	// password was checked against.
	user := res.User
	if pin, err = g.sessions.Pin(ctx, user.Name); err != nil {
		return accounts.LoginResult{}, pin, err
	}
	now, err := g.accounts.Get(ctx, user.Name)
	switch {
	case errors.Is(err, accounts.ErrNoSuchUser):
		return accounts.LoginResult{}, pin, errAccountChanged
	case err != nil:
		return accounts.LoginResult{}, pin, err
	case now.Disabled || !now.PasswordChangedAt.Equal(user.PasswordChangedAt) ||
		now.Email != user.Email || !slices.Equal(now.Roles, user.Roles):
		return accounts.LoginResult{}, pin, errAccountChanged
	}
	return res, pin, nil
}

// logout ends the session: deleted in the store, cookie expired, and
// Clear-Site-Data (set by the session middleware).
func (g *Gateway) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s := g.sessions.Session(r)
	form := isFormContent(r)
	if form {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	}
	if !g.checkCSRF(r, s, false) {
		g.forbidden(w, r, form)
		return
	}
	user, ref := s.UserID(), s.Ref()
	loadErr := s.Err()
	// Before the logout: the provider's tokens go with the session.
	endSession := g.oidcEndSession(r, s, form)
	err := g.timeStore("logout", func() error { return s.Logout(ctx) })
	outcome := "success"
	if loadErr != nil || err != nil {
		outcome = "error"
	}
	g.log.LogAttrs(ctx, slog.LevelInfo, "logout",
		slog.String("outcome", outcome), slog.String("user", user),
		slog.String("client_ip", g.sessions.Config().ClientIP(r)), slog.String("session", ref))
	if outcome != "success" {
		// The cookie is expired anyway; the server-side session may live on
		// until it times out, and the client should know.
		if form {
			http.Error(w, "Service Unavailable: you are logged out of this browser, but the session could not be ended on the server. Try again shortly.", http.StatusServiceUnavailable)
			return
		}
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "The session could not be ended on the server; the cookie was cleared. Try again shortly.")
		return
	}
	if endSession != "" {
		g.oidcLoggedOut(w, endSession, form)
		return
	}
	if form {
		seeOther(w, g.auth+"/login")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// checkCSRF is the synchronizer-token check for forms, the part of CSRF
// defence the session middleware cannot do: it never reads bodies. The
// middleware has already refused cross-site requests (Fetch Metadata and
// Origin), a wrong X-CSRF-Token header, and a session request with neither
// Fetch Metadata nor Origin that lacks the right header. A request an HTML
// form could have sent (form or text/plain body) must also carry the
// session's token in its csrf_token field, and so must every request when
// requireField is set (the account page), so that a same-origin form post
// proves it came from our page whatever the headers say. Without a live
// session there is no ambient authority to abuse.
func (g *Gateway) checkCSRF(r *http.Request, s *cloakroom.Session, requireField bool) bool {
	if !requireField && !isFormContent(r) {
		return true // the middleware's checks are the whole of it
	}
	want := s.CSRFToken() // derived from the token: only when needed
	if want == "" {
		return true
	}
	return tokensEqual(formField(r, "csrf_token"), want)
}

func tokensEqual(got, want string) bool {
	return want != "" && len(got) == len(want) && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func (g *Gateway) forbidden(w http.ResponseWriter, r *http.Request, page bool) {
	g.log.WarnContext(r.Context(), "csrf token missing or wrong", "method", r.Method, "path", r.URL.Path,
		"client_ip", g.sessions.Config().ClientIP(r), "session", g.sessions.Session(r).Ref())
	if page {
		http.Error(w, "Forbidden: this form has expired. Reload the page and try again.", http.StatusForbidden)
		return
	}
	httpjson.Error(w, http.StatusForbidden, "csrf", "Missing or wrong CSRF token.")
}
