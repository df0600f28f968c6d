package oidcbff

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
)

// Errors of [Client.AccessToken]. They are wrapped.
var (
	// ErrSessionEnded: the provider refused to refresh the tokens (revoked,
	// expired) or they are gone. The caller ends the session and answers
	// 401.
	ErrSessionEnded = errors.New("oidcbff: the sign-in at the provider has ended")
	// ErrUnavailable: the provider or the store cannot be reached and the
	// access token has expired. The caller answers 503.
	ErrUnavailable = errors.New("oidcbff: tokens cannot be refreshed right now")
)

// maxExpiresIn bounds a token response's expires_in: a year, in seconds.
const maxExpiresIn = 365 * 24 * 60 * 60

// leasePoll is how often a node waiting for another node's refresh reads
// the token record again.
const leasePoll = 20 * time.Millisecond

// tokenSet is the sealed content of a session's token record.
type tokenSet struct {
	Provider   string    `json:"p"`
	Access     string    `json:"a"`
	Refresh    string    `json:"r,omitempty"`
	IDToken    string    `json:"i,omitempty"`
	Expiry     time.Time `json:"e,omitzero"`
	Subject    string    `json:"s"`
	LeaseOwner string    `json:"lo,omitempty"`
	LeaseUntil time.Time `json:"lu,omitzero"`
	Ended      bool      `json:"x,omitempty"` // the provider refused a refresh
}

func (c *Client) sealTokens(ts tokenSet, ref string) []byte {
	plain, _ := json.Marshal(ts) // strings and times always encode
	return []byte(c.cfg.Sealer.Seal(plain, []byte(aadTokens+ref)))
}

func (c *Client) openTokens(data []byte, ref string) (tokenSet, error) {
	var ts tokenSet
	plain, err := c.cfg.Sealer.Open(string(data), []byte(aadTokens+ref))
	if err != nil {
		return ts, err
	}
	return ts, json.Unmarshal(plain, &ts)
}

// startSession stores the tokens, then logs the user in and records the
// identity in the session values, indexes the session for back-channel
// logout, and checks that no such logout came meanwhile. The session's
// cookie reaches the browser only when this returns nil; on an error after
// the login the session is ended again.
func (c *Client) startSession(ctx context.Context, r *http.Request, h http.Header, p *provider, id identity, tok *oauth2.Token, pin cloakroom.Pin, deadline time.Time) error {
	ref := randomID()
	ts := tokenSet{
		Provider: p.cfg.Name, Access: tok.AccessToken, Refresh: tok.RefreshToken, IDToken: id.IDToken,
		Expiry: c.expiry(tok), Subject: id.Subject,
	}
	ttl := c.sessions.Config().MaxAbsoluteTimeout + c.cfg.ClockSkew
	key := recordKey(kindTokens, ref)
	if _, err := c.records.create(ctx, key, c.sealTokens(ts, ref), ttl, true); err != nil {
		return fmt.Errorf("store tokens: %w", err)
	}
	values := map[string]string{ValueProvider: p.cfg.Name, ValueSubject: id.Subject, ValueRef: ref}
	if id.SID != "" {
		values[ValueSID] = id.SID
	}
	s := c.sessions.Session(r)
	previous := s.GetString(ValueRef) // a session this login replaces
	// The values go in the sign-in's own write: the session never exists
	// without them.
	err := c.admission.Admit(ctx, r, h, signin.Identity{
		UserID: id.User, Method: signin.OIDC, AMR: id.AMR, AuthTime: id.AuthTime,
		Email: id.Email, Name: id.Name, Roles: id.Groups, Pin: pin, Values: values,
	})
	if err != nil {
		_ = c.records.delete(context.WithoutCancel(ctx), key)
		return err
	}
	if previous != "" {
		c.cache.drop(previous)
		_ = c.records.delete(ctx, recordKey(kindTokens, previous)) // it died with the old session
	}
	// The index lets a back-channel logout find this session, and the
	// tombstones tell of one that came before the index: without both
	// the provider could not end it, so either failing ends the login.
	err = c.index(ctx, p, id, s.Handle(), ref, ttl)
	if err == nil {
		err = c.loggedOutDuringLogin(ctx, p, id, deadline)
	}
	if err != nil {
		wctx := context.WithoutCancel(ctx)
		if lerr := s.Logout(wctx); lerr != nil {
			// The cookie is not sent either way; the record expires.
			c.log.LogAttrs(ctx, slog.LevelWarn, "oidc session not ended after a failed login", slog.String("error", lerr.Error()))
		}
		c.cache.drop(ref)
		_ = c.records.delete(wctx, key)
		return err
	}
	return nil
}

// expiry is when tok stops being valid by the gateway's clock, from the
// token response's expires_in (oauth2 computes tok.Expiry from time.Now).
// A response without expires_in gives the zero time: never refreshed
// ahead of time.
func (c *Client) expiry(tok *oauth2.Token) time.Time {
	if tok.ExpiresIn <= 0 {
		return time.Time{}
	}
	// Bounded so that an absurd value cannot overflow into the past.
	return c.now().Add(time.Duration(min(tok.ExpiresIn, maxExpiresIn)) * time.Second)
}

// AccessToken returns the session's access token, refreshing it first when
// it expires within RefreshLeeway. It returns an error wrapping
// ErrSessionEnded, ErrUnavailable, or errNoTokens for a session that did
// not come from a provider.
func (c *Client) AccessToken(ctx context.Context, s *cloakroom.Session) (string, error) {
	ref := s.GetString(ValueRef)
	if ref == "" {
		return "", errNoTokens
	}
	if tok, ok := c.cache.get(ref, c.now().Add(c.cfg.RefreshLeeway)); ok {
		return tok, nil
	}
	// One caller per session does the work; the others in this process
	// share its result. The work must not die with the first caller's
	// request, and must not outlive its lease.
	return c.flights.do(ref, func() (string, error) {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LeaseTTL+DefaultProviderTimeout)
		defer cancel()
		return c.accessToken(wctx, ref)
	})
}

func (c *Client) accessToken(ctx context.Context, ref string) (string, error) {
	key := recordKey(kindTokens, ref)
	for {
		rec, found, err := c.records.find(ctx, key)
		if err != nil {
			return "", fmt.Errorf("%w: read tokens: %w", ErrUnavailable, err)
		}
		if !found {
			return "", fmt.Errorf("%w: token record gone", ErrSessionEnded)
		}
		ts, err := c.openTokens(rec.Data, ref)
		if err != nil {
			return "", fmt.Errorf("%w: tokens do not open: %w", ErrSessionEnded, err)
		}
		now := c.now()
		switch {
		case ts.Ended:
			return "", fmt.Errorf("%w: refresh refused earlier", ErrSessionEnded)
		case ts.Expiry.IsZero() || ts.Expiry.Sub(now) > c.cfg.RefreshLeeway:
			c.cache.put(ref, ts.Access, ts.Expiry)
			return ts.Access, nil
		case ts.Refresh == "":
			if ts.Expiry.After(now) {
				return ts.Access, nil
			}
			return "", fmt.Errorf("%w: access token expired and no refresh token", ErrSessionEnded)
		case ts.LeaseOwner != "" && ts.LeaseUntil.After(now):
			// Another node (or an earlier flight) is refreshing: wait for
			// its result rather than spend the refresh token twice.
			select {
			case <-ctx.Done():
				if ts.Expiry.After(now) {
					return ts.Access, nil
				}
				return "", fmt.Errorf("%w: waiting for another node's refresh: %w", ErrUnavailable, ctx.Err())
			case <-time.After(leasePoll):
			}
			continue
		}
		p, ok := c.providers[ts.Provider]
		if !ok {
			return "", fmt.Errorf("%w: provider %q is no longer configured", ErrSessionEnded, ts.Provider)
		}
		// Take the lease: the versioned Commit succeeds on one node only.
		leased := ts
		leased.LeaseOwner, leased.LeaseUntil = c.node+"/"+randomID(), now.Add(c.cfg.LeaseTTL)
		rec, err = c.records.update(ctx, rec, c.sealTokens(leased, ref))
		switch {
		case errors.Is(err, cloakroom.ErrConflict):
			// Someone wrote first; a store with a client-side cache may
			// still show the old record for a moment, so do not spin.
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("%w: refresh lease contended: %w", ErrUnavailable, ctx.Err())
			case <-time.After(leasePoll / 4):
			}
			continue
		case errors.Is(err, cloakroom.ErrNotFound):
			return "", fmt.Errorf("%w: token record gone", ErrSessionEnded)
		case err != nil:
			return "", fmt.Errorf("%w: take refresh lease: %w", ErrUnavailable, err)
		}
		fresh, err := c.refresh(ctx, p, ts)
		switch {
		case errors.Is(err, ErrSessionEnded):
			ended := ts
			ended.Ended, ended.Access, ended.Refresh = true, "", ""
			c.release(ctx, key, ref, rec, leased.LeaseOwner, ended)
			return "", err
		case err != nil:
			c.release(ctx, key, ref, rec, leased.LeaseOwner, ts)
			if ts.Expiry.After(c.now()) {
				return ts.Access, nil // still valid: try again next time
			}
			return "", err
		}
		if !c.release(ctx, key, ref, rec, leased.LeaseOwner, fresh) {
			// Logged out or revoked while the provider answered: the fresh
			// token belongs to a dead session and goes nowhere.
			return "", fmt.Errorf("%w: token record gone during the refresh", ErrSessionEnded)
		}
		c.cache.put(ref, fresh.Access, fresh.Expiry)
		return fresh.Access, nil
	}
}

// release writes the outcome of a refresh and drops the lease. A conflict
// means another request of the session wrote the record (it cannot have
// refreshed: the lease is ours), so it is re-read and written again, as
// long as the lease is still ours. It reports false only when the token
// record is gone (the session ended meanwhile).
func (c *Client) release(ctx context.Context, key cloakroom.Key, ref string, rec cloakroom.AuxRecord, owner string, ts tokenSet) bool {
	ts.LeaseOwner, ts.LeaseUntil = "", time.Time{}
	for range 8 {
		_, err := c.records.update(ctx, rec, c.sealTokens(ts, ref))
		if !errors.Is(err, cloakroom.ErrConflict) {
			if errors.Is(err, cloakroom.ErrNotFound) {
				return false
			}
			if err != nil {
				c.log.LogAttrs(ctx, slog.LevelError, "oidc tokens not saved after refresh", slog.String("error", err.Error()))
			}
			return true
		}
		var found bool
		rec, found, err = c.records.find(ctx, key)
		if err != nil {
			return true
		}
		if !found {
			return false
		}
		cur, err := c.openTokens(rec.Data, ref)
		if err != nil || cur.LeaseOwner != owner {
			return true
		}
	}
	return true
}

// refresh spends ts's refresh token at the provider.
func (c *Client) refresh(ctx context.Context, p *provider, ts tokenSet) (tokenSet, error) {
	pctx := context.WithValue(oidc.ClientContext(ctx, c.cfg.HTTPClient), oauth2.HTTPClient, c.cfg.HTTPClient)
	// An expired token with only the refresh token makes the source refresh.
	src := p.oauth.TokenSource(pctx, &oauth2.Token{RefreshToken: ts.Refresh, Expiry: time.Unix(1, 0)})
	tok, err := src.Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
			c.log.LogAttrs(ctx, slog.LevelInfo, "oidc refresh refused", slog.String("provider", p.cfg.Name),
				slog.Int("status", re.Response.StatusCode), slog.String("error", safeCode(re.ErrorCode)))
			return ts, fmt.Errorf("%w: the provider refused the refresh (%s)", ErrSessionEnded, safeCode(re.ErrorCode))
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "oidc refresh failed", slog.String("provider", p.cfg.Name), slog.String("error", redact(err)))
		return ts, fmt.Errorf("%w: %s", ErrUnavailable, redact(err))
	}
	fresh := ts
	fresh.Access, fresh.Expiry = tok.AccessToken, c.expiry(tok)
	if tok.RefreshToken != "" {
		fresh.Refresh = tok.RefreshToken
	}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		// OIDC Core 12.2: a refreshed ID token must be valid and name the
		// same user; one that is not ends the session (fail closed).
		idt, err := p.verifier.Verify(pctx, raw)
		if err != nil || idt.Subject != ts.Subject {
			c.log.LogAttrs(ctx, slog.LevelWarn, "oidc refreshed id token refused", slog.String("provider", p.cfg.Name))
			return ts, fmt.Errorf("%w: refreshed id token invalid", ErrSessionEnded)
		}
		fresh.IDToken = raw
	}
	c.log.LogAttrs(ctx, slog.LevelInfo, "oidc tokens refreshed", slog.String("provider", p.cfg.Name))
	return fresh, nil
}

// Relay returns the upstream mode of token relay, to register on the
// proxy routes ("/api/") that receive the user's access token as
// "Authorization: Bearer" instead of the internal JWT (proxy.Route.Mode).
// The token is refreshed first when it expires soon. Sessions of local
// accounts pass through unchanged, with the internal JWT.
func (c *Client) Relay() proxy.Mode { return relayMode{c} }

// relayMode is token relay's [proxy.Mode].
type relayMode struct{ c *Client }

// Anonymous is false: a relay route needs a session.
func (relayMode) Anonymous() bool { return false }

// Prepare attaches the session's access token to c, or answers 401 when
// the provider ended the sign-in (the session ends here too) and 503 when
// the token cannot be had right now.
func (m relayMode) Prepare(w http.ResponseWriter, r *http.Request, call proxy.Call) (proxy.Call, bool) {
	c, ctx := m.c, r.Context()
	s := c.sessions.Session(r)
	if call.Identity.User == "" || s.GetString(ValueRef) == "" {
		return call, true
	}
	tok, err := c.AccessToken(ctx, s)
	switch {
	case err == nil:
		call.AccessToken = tok
		return call, true
	case errors.Is(err, ErrSessionEnded):
		// The provider refused a refresh: the sign-in is over everywhere.
		c.log.LogAttrs(ctx, slog.LevelInfo, "session ended by the provider", slog.String("user", s.UserID()),
			slog.String("session", s.Ref()), slog.String("reason", err.Error()))
		_ = s.Logout(ctx)
		httpjson.Write(w, http.StatusUnauthorized, map[string]string{
			"error": "unauthenticated", "message": "Your sign-in has ended. Log in again.", "login_url": c.cfg.AuthPrefix + "/login",
		})
	default:
		c.log.LogAttrs(ctx, slog.LevelWarn, "access token unavailable", slog.String("user", s.UserID()), slog.String("err", err.Error()))
		w.Header().Set("Retry-After", "5")
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "The identity provider cannot be reached. Try again shortly.")
	}
	return call, false
}

// reauthURL is where a session logs in again: at its provider with max_age
// and prompt=login, or at the local login page.
func (c *Client) reauthURL(s *cloakroom.Session, maxAge time.Duration) string {
	if u := c.ProviderReauthURL(s, maxAge, ""); u != "" {
		return u
	}
	return c.cfg.AuthPrefix + "/login"
}

// ProviderReauthURL returns where a session from a provider proves its
// user again (it has no password): the provider's login with max_age and
// prompt=login, coming back to returnTo (a local path, "" for none). It
// returns "" for other sessions.
func (c *Client) ProviderReauthURL(s *cloakroom.Session, maxAge time.Duration, returnTo string) string {
	name := s.GetString(ValueProvider)
	if c.providers[name] == nil {
		return ""
	}
	u := fmt.Sprintf("%s/login/%s?max_age=%d&prompt=login", c.cfg.AuthPrefix, name, int64(maxAge/time.Second))
	if returnTo != "" {
		u += "&return_to=" + url.QueryEscape(returnTo)
	}
	return u
}

// StepUpURL returns where s must log in again before a request to path,
// or "" when no step-up rule covers path or s's login is recent enough.
func (c *Client) StepUpURL(s *cloakroom.Session, path string) string {
	if su, ok := c.unmetStepUp(s, path); ok {
		return c.reauthURL(s, su.MaxAge)
	}
	return ""
}

// unmetStepUp returns the first step-up rule covering path that s's login
// is too old for.
func (c *Client) unmetStepUp(s *cloakroom.Session, path string) (StepUp, bool) {
	for _, su := range c.cfg.StepUp {
		if httpx.PathUnder(path, su.Prefix) && !c.admission.Recent(s, su.MaxAge) {
			return su, true
		}
	}
	return StepUp{}, false
}

// EndSession deletes the session's tokens and returns the provider's
// end-session URL to send the browser to ("" when the session did not come
// from a provider, or the provider has no end_session_endpoint). With
// hint, the URL carries the ID token as id_token_hint, so the provider
// knows whom to sign out without asking; the caller must only put it in a
// redirect (Location) of a top-level navigation. Call it before the
// session's Logout.
func (c *Client) EndSession(ctx context.Context, s *cloakroom.Session, hint bool) string {
	ref, name := s.GetString(ValueRef), s.GetString(ValueProvider)
	p := c.providers[name]
	if ref == "" || p == nil {
		return ""
	}
	c.cache.drop(ref)
	key := recordKey(kindTokens, ref)
	var idToken string
	if rec, found, err := c.records.find(ctx, key); err == nil && found {
		if ts, err := c.openTokens(rec.Data, ref); err == nil {
			idToken = ts.IDToken
		}
	}
	if err := c.records.delete(ctx, key); err != nil {
		c.log.LogAttrs(ctx, slog.LevelWarn, "oidc tokens not deleted at logout", slog.String("error", err.Error()))
	}
	if p.endSession == "" {
		return ""
	}
	u, err := url.Parse(p.endSession)
	if err != nil {
		return ""
	}
	q := u.Query()
	if hint && idToken != "" {
		q.Set("id_token_hint", idToken)
	}
	q.Set("client_id", p.cfg.ClientID)
	q.Set("post_logout_redirect_uri", c.PostLogoutURL())
	u.RawQuery = q.Encode()
	return u.String()
}

// tokenCache keeps access tokens read in this process until they near
// expiry, so a relayed request costs no store read. A session that ends
// is refused by the session middleware before its entry is looked at.
type tokenCache struct {
	mu      sync.Mutex
	entries map[string]cachedToken
}

type cachedToken struct {
	access string
	expiry time.Time
}

const maxCachedTokens = 10000

func (tc *tokenCache) get(ref string, needValidUntil time.Time) (string, bool) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	e, ok := tc.entries[ref]
	if !ok || (!e.expiry.IsZero() && !e.expiry.After(needValidUntil)) {
		return "", false
	}
	return e.access, true
}

func (tc *tokenCache) put(ref, access string, expiry time.Time) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if len(tc.entries) >= maxCachedTokens {
		clear(tc.entries) // rare; the store still has every token
	}
	tc.entries[ref] = cachedToken{access: access, expiry: expiry}
}

func (tc *tokenCache) drop(ref string) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	delete(tc.entries, ref)
}
