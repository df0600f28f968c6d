package oidcbff

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/httpjson"
)

// Back-channel logout limits.
const (
	maxLogoutBody    = 16 << 10
	maxLogoutToken   = 8 << 10
	maxSessionsOfSID = 64
)

// indexEntry names one session started under a provider's session ID.
type indexEntry struct {
	User   string `json:"u"`
	Handle string `json:"h,omitempty"`
	Ref    string `json:"r,omitempty"`
}

func indexID(provider, value string) string { return provider + "\x00" + value }

// index records the new session under the provider's sid (and, when users
// are not identified by sub, the sub's user IDs), for back-channel logout.
// What an index can no longer keep is ended now: a logout could not find
// it later.
func (c *Client) index(ctx context.Context, p *provider, id identity, handle, ref string, ttl time.Duration) error {
	if p.cfg.UserClaim != "sub" {
		evicted, err := c.addToIndex(ctx, kindSub, indexID(p.cfg.Name, id.Subject), indexEntry{User: id.User}, ttl)
		if err != nil {
			return err
		}
		for _, e := range evicted {
			if err := c.sessions.RevokeUser(ctx, e.User); err != nil {
				return err
			}
		}
	}
	if id.SID == "" {
		return nil
	}
	evicted, err := c.addToIndex(ctx, kindSID, indexID(p.cfg.Name, id.SID), indexEntry{User: id.User, Handle: handle, Ref: ref}, ttl)
	if err != nil {
		return err
	}
	for _, e := range evicted {
		if _, err := c.endEntry(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// addToIndex adds e to the index of kind and id, returning the entries it
// dropped to stay within maxSessionsOfSID.
func (c *Client) addToIndex(ctx context.Context, kind, id string, e indexEntry, ttl time.Duration) ([]indexEntry, error) {
	var evicted []indexEntry
	err := c.upsert(ctx, kind, id, ttl, func(prev []byte) []byte {
		var entries []indexEntry
		_ = json.Unmarshal(prev, &entries) // absent or unreadable: start over
		if kind == kindSub {
			// Each user ID the sub signed in as, once: the claim that
			// names users (an email) may change while the sub stays.
			entries = slices.DeleteFunc(entries, func(old indexEntry) bool { return old.User == e.User })
		}
		entries = append(entries, e)
		evicted = nil // of this attempt only
		if len(entries) > maxSessionsOfSID {
			evicted = slices.Clone(entries[:len(entries)-maxSessionsOfSID])
			entries = entries[len(entries)-maxSessionsOfSID:]
		}
		plain, _ := json.Marshal(entries) // strings always encode
		return plain
	})
	return evicted, err
}

// upsert replaces the sealed record of kind and id by merge of its
// current content (nil when there is none, or it does not open), creating
// it if absent. The record lives at least ttl from now.
func (c *Client) upsert(ctx context.Context, kind, id string, ttl time.Duration, merge func(prev []byte) []byte) error {
	key := recordKey(kind, id)
	aad := []byte(aadIndex + kind + "/" + id)
	for range 8 {
		rec, found, err := c.records.find(ctx, key)
		if err != nil {
			return err
		}
		var prev []byte
		if found {
			prev, _ = c.cfg.Sealer.Open(string(rec.Data), aad)
		}
		data := []byte(c.cfg.Sealer.Seal(merge(prev), aad))
		if found {
			// Keep the later of the two deadlines.
			if now := c.now(); rec.Expires.Before(now.Add(ttl)) {
				rec.Expires = now.Add(ttl)
			}
			_, err = c.records.update(ctx, rec, data)
		} else {
			// Indexes and tombstones outlive a global revocation: a
			// provider's logout must still find what it ends.
			_, err = c.records.create(ctx, key, data, ttl, false)
		}
		if !errors.Is(err, cloakroom.ErrConflict) && !errors.Is(err, cloakroom.ErrNotFound) {
			return err
		}
	}
	return fmt.Errorf("%s record: still conflicting", kind)
}

func (c *Client) readIndex(ctx context.Context, kind, id string) ([]indexEntry, error) {
	var entries []indexEntry
	plain, err := c.readSealed(ctx, kind, id)
	if err != nil || plain == nil {
		return nil, err
	}
	return entries, json.Unmarshal(plain, &entries)
}

// readSealed opens the record of kind and id: nil when there is none.
func (c *Client) readSealed(ctx context.Context, kind, id string) ([]byte, error) {
	rec, found, err := c.records.find(ctx, recordKey(kind, id))
	if err != nil || !found {
		return nil, err
	}
	plain, err := c.cfg.Sealer.Open(string(rec.Data), []byte(aadIndex+kind+"/"+id))
	if err != nil {
		return nil, fmt.Errorf("%s record does not open: %w", kind, err)
	}
	return plain, nil
}

// tombstone is a back-channel logout remembered for the logins that were
// in flight when it came: their sessions were not indexed yet, so it could
// not find them.
type tombstone struct {
	Sub string `json:"s,omitempty"` // the logout token's sub, if any (sid tombstones)
	IAT int64  `json:"t"`           // the logout token's iat, unix seconds (sub tombstones)
}

// tombstoneTTL bounds how long a logout is remembered. A login checks the
// tombstones at its end, and ends no later than its pre-login state's
// lifetime plus the clock skew after it started (see loginDeadline); a
// logout that concerns it comes after it started, give or take the skew
// on either clock, and may be delivered LogoutTokenMaxAge late.
func (c *Client) tombstoneTTL() time.Duration {
	return c.cfg.StateTTL + c.cfg.LogoutTokenMaxAge + 3*c.cfg.ClockSkew
}

// recordLogout leaves the tombstone of a logout token: under its sid when
// it has one, else under its sub with the latest iat.
func (c *Client) recordLogout(ctx context.Context, p *provider, lt logoutToken) error {
	if lt.SessionID != "" {
		plain, _ := json.Marshal(tombstone{Sub: lt.Subject, IAT: lt.IssuedAt.Unix()})
		return c.upsert(ctx, kindEndedSID, indexID(p.cfg.Name, lt.SessionID), c.tombstoneTTL(), func([]byte) []byte { return plain })
	}
	return c.upsert(ctx, kindEndedSub, indexID(p.cfg.Name, lt.Subject), c.tombstoneTTL(), func(prev []byte) []byte {
		var t tombstone
		_ = json.Unmarshal(prev, &t)
		t.IAT = max(t.IAT, lt.IssuedAt.Unix())
		plain, _ := json.Marshal(t)
		return plain
	})
}

// Why a login is refused at its end.
var (
	errLoggedOutDuringLogin = errors.New("the provider logged the session out during the login")
	errLoginTooSlow         = errors.New("the login took longer than its pre-login state may live")
)

// loggedOutDuringLogin runs at the end of a login, after its session was
// indexed: it returns errLoggedOutDuringLogin if a back-channel logout of
// its sid, or of its sub after the provider authenticated the user, was
// recorded. A logout that came before the index was written left its
// tombstone first; one that came after found the index. The login must
// also end before deadline, which bounds how long tombstones are needed.
func (c *Client) loggedOutDuringLogin(ctx context.Context, p *provider, id identity, deadline time.Time) error {
	if id.SID != "" {
		plain, err := c.readSealed(ctx, kindEndedSID, indexID(p.cfg.Name, id.SID))
		if err != nil {
			return err
		}
		var t tombstone
		if plain != nil && (json.Unmarshal(plain, &t) != nil || t.Sub == "" || t.Sub == id.Subject) {
			return errLoggedOutDuringLogin
		}
	}
	plain, err := c.readSealed(ctx, kindEndedSub, indexID(p.cfg.Name, id.Subject))
	if err != nil {
		return err
	}
	var t tombstone
	// The logout ended every provider session of the sub that existed
	// when it was issued; an authentication no later than that was one.
	if plain != nil && (json.Unmarshal(plain, &t) != nil || !id.Authenticated.After(time.Unix(t.IAT, 0))) {
		return errLoggedOutDuringLogin
	}
	if c.now().After(deadline) {
		return errLoginTooSlow
	}
	return nil
}

// errBadLogout is a logout request to refuse with 400.
var errBadLogout = errors.New("invalid logout token")

// backchannelLogout receives a logout token from the provider (OpenID
// Connect Back-Channel Logout 1.0) and ends the sessions it names, on every
// node: one session by deleting it, all of a user's by bumping the user's
// generation.
func (c *Client) backchannelLogout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := knownName(c, r.PathValue("provider"))
	audit := func(outcome, reason string, attrs ...slog.Attr) {
		c.log.LogAttrs(ctx, slog.LevelInfo, "oidc backchannel logout", append([]slog.Attr{
			slog.String("outcome", outcome), slog.String("provider", name), slog.String("reason", reason),
		}, attrs...)...)
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	p, ok := c.providers[r.PathValue("provider")]
	if !ok {
		httpjson.Error(w, http.StatusNotFound, "not_found", "No such provider.")
		return
	}
	raw, err := readLogoutToken(w, r)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		audit(outcomeInvalid, "body too large")
		httpjson.Error(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("The body is larger than %d bytes.", tooBig.Limit))
		return
	case err != nil:
		audit(outcomeInvalid, err.Error())
		httpjson.Error(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	lt, err := c.verifyLogoutToken(ctx, p, raw)
	if err != nil {
		audit(outcomeInvalid, err.Error())
		httpjson.Error(w, http.StatusBadRequest, "invalid_request", "The logout token is not valid.")
		return
	}
	// jti: each token acts once, across every node sharing the store.
	jtiKey := recordKey(kindJTI, indexID(p.cfg.Name, lt.TokenID))
	_, err = c.records.create(ctx, jtiKey, []byte("used"), c.cfg.LogoutTokenMaxAge+2*c.cfg.ClockSkew, false)
	switch {
	case errors.Is(err, cloakroom.ErrConflict):
		audit(outcomeInvalid, "logout token replayed")
		httpjson.Error(w, http.StatusBadRequest, "invalid_request", "The logout token was already used.")
		return
	case err != nil:
		audit(outcomeError, "store unavailable")
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "Sessions cannot be ended right now.")
		return
	}
	// The tombstone first: a login whose session is not indexed yet sees it
	// at its end (see loggedOutDuringLogin).
	if err := c.recordLogout(ctx, p, lt); err != nil {
		_ = c.records.delete(context.WithoutCancel(ctx), jtiKey)
		audit(outcomeError, err.Error())
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "Sessions cannot be ended right now.")
		return
	}
	ended, err := c.endSessions(ctx, p, lt.SessionID, lt.Subject)
	if err != nil {
		// Let the provider retry with the same token.
		_ = c.records.delete(context.WithoutCancel(ctx), jtiKey)
		audit(outcomeError, err.Error())
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "Sessions cannot be ended right now.")
		return
	}
	audit(outcomeSuccess, "", slog.Bool("by_sid", lt.SessionID != ""), slog.Int("sessions", ended))
	w.WriteHeader(http.StatusOK)
}

func readLogoutToken(w http.ResponseWriter, r *http.Request) (string, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return "", errors.New("send the logout token as application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutBody)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return "", err
		}
		return "", errors.New("the body could not be parsed")
	}
	values := r.PostForm["logout_token"]
	if len(values) != 1 || values[0] == "" || len(values[0]) > maxLogoutToken {
		return "", errors.New("the body must carry one logout_token")
	}
	return values[0], nil
}

// logoutToken is what a verified logout token says.
type logoutToken struct {
	TokenID, Subject, SessionID string
	IssuedAt                    time.Time
}

// verifyLogoutToken checks signature, iss, aud, exp, the events claim, the
// absence of nonce and a jti (go-oidc's VerifyLogout), then the typ header
// and the iat window.
func (c *Client) verifyLogoutToken(ctx context.Context, p *provider, raw string) (logoutToken, error) {
	typ, err := jwtType(raw)
	if err != nil {
		return logoutToken{}, err
	}
	if !logoutTyp(typ) {
		return logoutToken{}, fmt.Errorf("%w: typ %q is not logout+jwt", errBadLogout, safeCode(typ))
	}
	lt, err := p.logoutVerifier.VerifyLogout(ctx, raw)
	if err != nil {
		return logoutToken{}, fmt.Errorf("%w: %v", errBadLogout, err)
	}
	now := c.now()
	switch {
	case lt.IssuedAt.IsZero():
		return logoutToken{}, fmt.Errorf("%w: no iat", errBadLogout)
	case lt.IssuedAt.After(now.Add(c.cfg.ClockSkew)):
		return logoutToken{}, fmt.Errorf("%w: iat in the future", errBadLogout)
	case now.Sub(lt.IssuedAt) > c.cfg.LogoutTokenMaxAge+c.cfg.ClockSkew:
		return logoutToken{}, fmt.Errorf("%w: iat older than %v", errBadLogout, c.cfg.LogoutTokenMaxAge)
	case len(lt.TokenID) > maxClaimValue:
		return logoutToken{}, fmt.Errorf("%w: jti too long", errBadLogout)
	}
	return logoutToken{TokenID: lt.TokenID, Subject: lt.Subject, SessionID: lt.SessionID, IssuedAt: lt.IssuedAt}, nil
}

// logoutTyp reports whether a logout token's typ header is acceptable.
// Back-Channel Logout 1.0 (section 2.4) recommends explicit typing,
// "logout+jwt" (with the optional "application/" prefix of RFC 7515
// section 4.1.9), and does not require it: several real providers send
// none (Dex) or the generic "JWT" their JWT library writes by default
// (Keycloak before 25, Authentik before 2025.12). Neither says what the
// token is, so both are accepted and the claims decide, as for any
// untyped token: the back-channel event in events, no nonce (no ID token
// passes), iss, aud, iat, exp, jti, and sid or sub. Any other explicit
// type (an access token's "at+jwt", say) names another kind of token and
// is refused.
func logoutTyp(typ string) bool {
	switch strings.ToLower(typ) {
	case "", "jwt", "logout+jwt", "application/logout+jwt":
		return true
	}
	return false
}

// jwtType reads the typ header of a compact JWS. The signature is checked
// afterwards by go-oidc; this only looks at the protected header.
func jwtType(raw string) (string, error) {
	header, _, ok := strings.Cut(raw, ".")
	if !ok || len(header) > 1024 {
		return "", fmt.Errorf("%w: not a compact JWS", errBadLogout)
	}
	b, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		return "", fmt.Errorf("%w: header is not base64url", errBadLogout)
	}
	var h struct {
		Typ string `json:"typ"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return "", fmt.Errorf("%w: header is not a JSON object", errBadLogout)
	}
	return h.Typ, nil
}

// endSessions ends the sessions of sid (those of sub, when sid is empty),
// returning how many it ended (-1 for "every session of the user").
func (c *Client) endSessions(ctx context.Context, p *provider, sid, sub string) (int, error) {
	if sid != "" {
		entries, err := c.readIndex(ctx, kindSID, indexID(p.cfg.Name, sid))
		if err != nil {
			return 0, err
		}
		ended, skipped := 0, false
		for _, e := range entries {
			if sub != "" && p.cfg.UserClaim == "sub" && e.User != UserID(p.cfg.Name, sub) {
				skipped = true
				continue // the sid belongs to someone else: ignore it
			}
			found, err := c.endEntry(ctx, e)
			if err != nil {
				return ended, err
			}
			if found {
				ended++
			}
		}
		if skipped {
			// Keep the index for a logout naming their own sub; the
			// sessions ended here are simply not found again.
			return ended, nil
		}
		return ended, c.records.delete(ctx, recordKey(kindSID, indexID(p.cfg.Name, sid)))
	}
	if p.cfg.UserClaim == "sub" {
		return -1, c.sessions.RevokeUser(ctx, UserID(p.cfg.Name, sub))
	}
	entries, err := c.readIndex(ctx, kindSub, indexID(p.cfg.Name, sub))
	if err != nil || len(entries) == 0 {
		return 0, err // nobody signed in under that sub
	}
	for _, e := range entries {
		if err := c.sessions.RevokeUser(ctx, e.User); err != nil {
			return 0, err
		}
	}
	return -1, nil
}

// endEntry ends the session of a sid index entry and deletes its tokens,
// reporting whether the session was still there.
func (c *Client) endEntry(ctx context.Context, e indexEntry) (bool, error) {
	err := c.sessions.RevokeDevice(ctx, e.User, e.Handle)
	if err != nil && !errors.Is(err, cloakroom.ErrNotFound) {
		return false, err
	}
	if e.Ref != "" {
		c.cache.drop(e.Ref)
		_ = c.records.delete(ctx, recordKey(kindTokens, e.Ref))
	}
	return err == nil, nil
}
