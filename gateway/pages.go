package gateway

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cloakroom/cloakroom/oidcbff"
)

//go:embed pages/*.html pages/assets
var pageFiles embed.FS

// pageCSP returns the Content-Security-Policy of every built-in page:
// nothing but the gateway's own stylesheet loads, no script runs, no other
// site can frame the page, and forms post only to this origin. Browsers
// apply form-action to where a form's answer redirects too, so the origins
// a logout form is sent on to (an OpenID provider's end-session endpoint)
// are allowed as well.
//
// With passkeys on, the pages also run the gateway's own script file
// (script-src 'self', never inline) and let it call this origin
// (connect-src 'self'): WebAuthn has no form-only path.
func pageCSP(logoutOrigins []string, scripts bool) string {
	formAction := "'self'"
	for _, o := range logoutOrigins {
		formAction += " " + o
	}
	script := ""
	if scripts {
		script = "script-src 'self'; connect-src 'self'; "
	}
	return "default-src 'none'; " + script + "style-src 'self'; img-src 'self'; form-action " + formAction + "; frame-ancestors 'none'; base-uri 'none'"
}

// pages holds one template set per built-in page, each with the layout.
type pages map[string]*template.Template

func parsePages() (pages, error) {
	p := make(pages)
	for _, name := range []string{"login", "account", "error", "secondfactor", "totp", "passkey"} {
		t, err := template.New(name).ParseFS(pageFiles, "pages/layout.html", "pages/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("gateway: parse page %s: %w", name, err)
		}
		p[name] = t
	}
	return p, nil
}

// pageData feeds the templates. Every field is escaped by html/template.
type pageData struct {
	Title     string
	Auth      string // the auth prefix, for links and form actions
	User      string // the logged-in user; "" shows no logout button
	CSRFToken string // for the hidden csrf_token fields
	Error     string
	Notice    string
	AppURL    string // the application's start page, for the way back

	// FormError is a form's failure shown next to that form (the account
	// page re-rendered after a refused post) rather than at the top.
	FormError formError

	// Login page.
	Providers []oidcbff.ProviderLink // one "Sign in with" button each
	ReturnTo  string
	Username  string
	Remember  bool

	// Account page.
	Email          string
	Roles          []string
	Created        string
	AbsoluteExpiry string
	IdleTimeout    string
	Devices        []deviceRow
	StepUp         bool   // a local account's sign-in is old: forms that end sessions ask for the password
	StepUpHint     string // how a provider's or vault user steps up, when their sign-in is old
	LocalAccount   bool   // the user has a password here to change

	// Second factor: the account page's section, the enrolment page.
	TOTP              bool   // the account has a TOTP factor
	TOTPSince         string // when it was enabled
	RecoveryCodesLeft int
	TOTPAvailable     bool     // a key file seals TOTP secrets
	TOTPSecret        string   // the secret being enrolled, as text
	TOTPURI           string   // and as an otpauth:// URI
	TOTPExpires       string   // when the enrolment ends unconfirmed
	RecoveryCodes     []string // shown once, after the confirmation
	// EnrolAtSignIn: the enrolment a role's policy requires before the
	// session (no session, no CSRF token yet; "done" goes to ReturnTo).
	EnrolAtSignIn bool

	// Passkeys: on at all (the login button, the account section, the
	// script), the account's list, the registration page.
	Passkeys       bool
	PasskeyList    []passkeyRow
	PasskeyName    string // the passkey being registered
	PasskeyOptions string // its creation options, JSON, for the script
	PasskeyFinish  string // where the script posts the authenticator's answer
	// PasskeyFactor: the pages between the factors offer the account's
	// passkeys next to the code.
	PasskeyFactor bool
}

type passkeyRow struct {
	ID, Name, Created, LastUsed string
	Synced                      bool
}

// formError is a message for one form of a page: Form names it, and
// Handle the device row for the per-device forms.
type formError struct {
	Form, Handle, Message string
}

// ErrorFor returns the message for the named form, "" for the others.
func (d pageData) ErrorFor(form string) string {
	if d.FormError.Form == form && d.FormError.Handle == "" {
		return d.FormError.Message
	}
	return ""
}

// ErrorForDevice returns the message for the device row's form.
func (d pageData) ErrorForDevice(form, handle string) string {
	if d.FormError.Form == form && handle != "" && d.FormError.Handle == handle {
		return d.FormError.Message
	}
	return ""
}

type deviceRow struct {
	Handle, Name, Label, IP, Created, LastSeen, LastSeenAt string
	Current, Persistent, Bound                             bool
}

// setPageHeaders sets the security headers of a built-in HTML page, with
// csp from pageCSP.
func setPageHeaders(h http.Header, csp string) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// formatTime shows a time for people, in UTC so that server and test
// output do not depend on the host's zone.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// formatAgo shows how long ago t was, for "last seen" columns.
func formatAgo(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case t.IsZero():
		return "—"
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour") + " ago"
	}
	return formatTime(t)
}

// formatDuration shows a timeout for people: "30 minutes", "12 hours".
func formatDuration(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return plural(int(d/time.Hour), "hour")
	case d >= time.Minute && d%time.Minute == 0:
		return plural(int(d/time.Minute), "minute")
	}
	return d.String()
}

// retryAfter is the whole seconds of a Retry-After header for a wait of
// d: rounded up, at least 1.
func retryAfter(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// formatWait says how long to wait for people: "45 seconds", "3 minutes",
// "1 hour 5 minutes". It rounds up (to whole seconds under a minute, then
// to whole minutes), so that trying again when the time shown has passed
// is not refused again.
func formatWait(d time.Duration) string {
	secs := retryAfter(d)
	if secs <= 60 {
		return plural(secs, "second")
	}
	minutes := (secs + 59) / 60
	if minutes < 60 {
		return plural(minutes, "minute")
	}
	if minutes%60 == 0 {
		return plural(minutes/60, "hour")
	}
	return plural(minutes/60, "hour") + " " + plural(minutes%60, "minute")
}

// throttledMessage tells a throttled user how long to wait; wait is 0
// when unknown.
func throttledMessage(wait time.Duration) string {
	if wait <= 0 {
		return msgThrottled
	}
	return "Too many attempts. Try again in " + formatWait(wait) + "."
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}

// assetHandler serves the embedded stylesheet (and any other file under
// pages/assets). Directory paths answer 404 rather than a listing.
func assetHandler() http.Handler {
	sub, err := fs.Sub(pageFiles, "pages/assets")
	if err != nil {
		panic(err) // the embed pattern above guarantees the folder
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") || r.URL.Path == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}
