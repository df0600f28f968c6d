package signin

import (
	"net/http"
	"strings"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
)

// DeviceCookie holds the browser's known-device tokens (OWASP device
// cookies) for the login throttle: one per local account that signed in
// from this browser, so that an attacker who spends an account's budget
// for unknown devices cannot lock its user out of the browsers they
// already use. __Host- and Http- prefixes: Secure, host-only, HttpOnly,
// never written by page script. Logout never removes it.
const DeviceCookie = "__Host-Http-device"

// deviceCookieMaxAge is 400 days, the longest browsers keep a cookie. Each
// token in it has a shorter life of its own (accounts.Config.
// DeviceTokenLifetime, 90 days by default), checked by the accounts at
// every login: the cookie only carries them.
const deviceCookieMaxAge = 400 * 24 * 60 * 60

// maxDeviceCookie bounds what is parsed of the device cookie.
const maxDeviceCookie = 512

// DeviceTokens returns the known-device tokens the request carries. A
// request carrying the device cookie twice carries none: the first may be
// planted beside the browser's own.
func DeviceTokens(r *http.Request) []string {
	v, err := cloakroom.CookieValue(r.Header, DeviceCookie)
	if err != nil || v == "" || len(v) > maxDeviceCookie {
		return nil
	}
	tokens := strings.Split(v, ".")
	return tokens[:min(len(tokens), accounts.MaxDeviceTokens)]
}

// deviceCookie is the Set-Cookie value keeping tokens in the browser.
// SameSite=Strict: only the sign-in forms, on the gateway's own origin,
// need it.
func deviceCookie(tokens []string) string {
	c := &http.Cookie{
		Name: DeviceCookie, Value: strings.Join(tokens[:min(len(tokens), accounts.MaxDeviceTokens)], "."), Path: "/",
		MaxAge: deviceCookieMaxAge, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	}
	return c.String()
}

// SetDeviceTokens adds to h the Set-Cookie that makes the browser keep
// tokens as its known-device tokens, as a sign-in does. A password change
// answers with it: the change ends the account's device tokens, and the
// browser that made it gets its new one (accounts.Service.
// ChangeOwnPassword) so it stays a known device. Nothing is set for no
// tokens.
func SetDeviceTokens(h http.Header, tokens []string) {
	if len(tokens) > 0 {
		h.Add("Set-Cookie", deviceCookie(tokens))
	}
}
