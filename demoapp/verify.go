package demoapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// VerifyConfig makes the API believe the identity headers only next to the
// gateway's internal JWT (`--internal-jwt`), checked against the gateway's
// published key set: the setup we recommend, because any local process
// that reaches the API's port could send X-Forwarded-User itself.
type VerifyConfig struct {
	// JWKSURL is the gateway's key set, such as
	// http://localhost:8080/.well-known/jwks.json. Required.
	JWKSURL string
	// Audience is the route's audience: its prefix ("/api/") unless the
	// route sets another. Required.
	Audience string
	// Issuer, when set, must equal the token's "iss".
	Issuer string
	// Client fetches the key set. Default: a client with a 5-second timeout.
	Client *http.Client
}

// jwksCacheFor is how long a fetched key set is used before fetching again;
// an unknown key ID refetches at once (at most once a second).
const jwksCacheFor = 5 * time.Minute

// Verified wraps an API handler (from [API]) so that every request must
// carry "Authorization: Bearer <JWT>" signed by the gateway for
// cfg.Audience, for the same user as X-Forwarded-User, and used only once.
func Verified(next http.Handler, cfg VerifyConfig) (http.Handler, error) {
	if cfg.JWKSURL == "" || cfg.Audience == "" {
		return nil, errors.New("demoapp: VerifyConfig needs JWKSURL and Audience")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Second}
	}
	keys := &jwksCache{cfg: cfg}
	replays := upstreamjwt.NewReplayCache(0)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, err := keys.verify(r)
		if err == nil && cfg.Issuer != "" && claims.Issuer != cfg.Issuer {
			err = errors.New("wrong issuer")
		}
		if err == nil && claims.Subject != r.Header.Get(HeaderUser) {
			err = errors.New("the token is for another user than X-Forwarded-User")
		}
		if err == nil {
			err = replays.Check(claims, time.Now())
		}
		if err != nil {
			w.Header().Set("Cache-Control", "no-store")
			writeError(w, http.StatusUnauthorized, "no valid gateway token: this API must be reached through the cloakroom gateway")
			return
		}
		next.ServeHTTP(w, r)
	}), nil
}

type jwksCache struct {
	cfg     VerifyConfig
	mu      sync.Mutex
	keys    []byte
	fetched time.Time
}

func (c *jwksCache) verify(r *http.Request) (upstreamjwt.Claims, error) {
	auth := r.Header.Values("Authorization")
	if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") {
		return upstreamjwt.Claims{}, errors.New("no bearer token")
	}
	token := strings.TrimPrefix(auth[0], "Bearer ")
	keys, err := c.get(r.Context(), false)
	if err != nil {
		return upstreamjwt.Claims{}, err
	}
	claims, err := upstreamjwt.Verify(token, keys, c.cfg.Audience, time.Now())
	if errors.Is(err, upstreamjwt.ErrUnknownKey) {
		// The gateway may have rotated its key: fetch again, once.
		if keys, err = c.get(r.Context(), true); err == nil {
			claims, err = upstreamjwt.Verify(token, keys, c.cfg.Audience, time.Now())
		}
	}
	return claims, err
}

func (c *jwksCache) get(ctx context.Context, refresh bool) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	age := time.Since(c.fetched)
	if c.keys != nil && age < jwksCacheFor && (!refresh || age < time.Second) {
		return c.keys, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	res, err := c.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS: status %d", res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	c.keys, c.fetched = body, time.Now()
	return body, nil
}
