package gateway

import (
	"net/http"
	"strings"

	"github.com/cloakroom/cloakroom/accounts"
)

// DeviceCookie holds the browser's device tokens (OWASP device cookies): one
// per account that logged in from this browser, so that an attacker who
// spends an account's budget for unknown devices cannot lock its user out
// of the browsers they already use. __Host- and Http- prefixes: Secure,
// host-only, HttpOnly, never written by page script.
const DeviceCookie = "__Host-Http-device"

// deviceCookieMaxAge is 400 days, the longest browsers keep a cookie.
const deviceCookieMaxAge = 400 * 24 * 60 * 60

// maxDeviceCookie bounds what is parsed of the device cookie.
const maxDeviceCookie = 512

// deviceTokens returns the device tokens the request carries.
func deviceTokens(r *http.Request) []string {
	c, err := r.Cookie(DeviceCookie)
	if err != nil || len(c.Value) > maxDeviceCookie {
		return nil
	}
	tokens := strings.Split(c.Value, ".")
	return tokens[:min(len(tokens), accounts.MaxDeviceTokens)]
}

// setDeviceCookie stores tokens in the browser. SameSite=Strict: it is only
// ever needed by the login form, on the gateway's own origin.
func setDeviceCookie(w http.ResponseWriter, tokens []string) {
	if len(tokens) == 0 {
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: DeviceCookie, Value: strings.Join(tokens, "."), Path: "/",
		MaxAge: deviceCookieMaxAge, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}
