// Package dbsctest is a Device Bound Session Credentials client for tests
// and the lab: a browser-like HTTP client that holds a device key (ES256
// or RS256), registers when a response offers it
// (Secure-Session-Registration), refreshes its bound cookies before
// sending a request that would lack one (answering the server's 403 and
// Secure-Session-Challenge with a signed proof), and carries its cookies
// by hand, so a test can copy its cookie jar the way an infostealer
// copies a browser's.
//
// It follows the specification (w3c/webappsec-dbsc): proofs are compact
// JWS with typ "dbsc+jwt", the challenge as jti, the public key as a jwk
// in the header at registration only; the registration and refresh
// requests are POSTs carrying the session's cookies.
package dbsctest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloakroom/cloakroom/dbsc"
)

// maxBody bounds a response body the client reads.
const maxBody = 1 << 20

// ErrNoSession means the client holds no registered session to refresh.
var ErrNoSession = errors.New("dbsctest: no registered device-bound session")

// Key is a device key: a P-256 key for ES256 or an RSA key for RS256.
type Key struct {
	signer crypto.Signer
	alg    string
}

// NewKey generates a device key for alg (dbsc.AlgES256 or dbsc.AlgRS256,
// a 2048-bit modulus).
func NewKey(alg string) (*Key, error) {
	switch alg {
	case dbsc.AlgES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		return &Key{k, alg}, nil
	case dbsc.AlgRS256:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		return &Key{k, alg}, nil
	}
	return nil, fmt.Errorf("dbsctest: algorithm %q not supported", alg)
}

// Algorithm returns the key's JWS algorithm.
func (k *Key) Algorithm() string { return k.alg }

// JWK returns the public key as a JWK object.
func (k *Key) JWK() map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	switch pub := k.signer.Public().(type) {
	case *ecdsa.PublicKey:
		raw, _ := pub.Bytes() // 0x04 || X || Y
		return map[string]string{"kty": "EC", "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}
	}
	panic("dbsctest: unknown key type")
}

// ProofOptions shape a proof beyond its challenge.
type ProofOptions struct {
	// WithJWK puts the public key in the JWT header (registration).
	WithJWK bool
	// JWKInPayload puts it in the payload instead, as the
	// specification's example does.
	JWKInPayload bool
	// Authorization is copied into the authorization claim when set.
	Authorization string
	// IssuedAt is the iat claim; zero leaves it out.
	IssuedAt time.Time
}

// Proof signs a DBSC proof over challenge.
func (k *Key) Proof(challenge string, opts ProofOptions) (string, error) {
	header := map[string]any{"alg": k.alg, "typ": "dbsc+jwt"}
	payload := map[string]any{"jti": challenge}
	if opts.WithJWK {
		header["jwk"] = k.JWK()
	}
	if opts.JWKInPayload {
		payload["jwk"] = k.JWK()
	}
	if opts.Authorization != "" {
		payload["authorization"] = opts.Authorization
	}
	if !opts.IssuedAt.IsZero() {
		payload["iat"] = opts.IssuedAt.Unix()
	}
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	input := b64(h) + "." + b64(p)
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	switch signer := k.signer.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, signer, digest[:])
		if err != nil {
			return "", err
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case *rsa.PrivateKey:
		if sig, err = rsa.SignPKCS1v15(rand.Reader, signer, crypto.SHA256, digest[:]); err != nil {
			return "", err
		}
	}
	return input + "." + b64(sig), nil
}

// Session is what the client knows of a registered device-bound session.
type Session struct {
	ID         string
	RefreshURL string
	Cookies    []string // names of the bound cookies it keeps alive
	Challenge  string   // the cached challenge for the next refresh, "" for none
}

type cookie struct {
	value   string
	expires time.Time // zero: a session cookie
}

// Client is a browser-like client of one origin. Its zero value is not
// usable; create one with [New]. It is safe for concurrent use.
type Client struct {
	// Base is the origin requests go to ("https://localhost:8443").
	Base string
	// HTTP sends the requests; it must trust the server's certificate.
	// Redirects are not followed: the caller sees each response.
	HTTP *http.Client
	// Header is sent with every request. New sets what a browser sends
	// for a same-origin fetch (Sec-Fetch-Site: same-origin, a Chrome
	// User-Agent).
	Header http.Header
	// Now is the client's clock: cookie expiry and the proofs' iat.
	// Default time.Now; tests share the server's fake clock.
	Now func() time.Time
	// Register, when true (New's default), answers a
	// Secure-Session-Registration on any response by registering, as a
	// browser with DBSC does. False acts as a browser without DBSC.
	Register bool
	// JWKInPayload sends the registration key in the proof's payload
	// instead of its header.
	JWKInPayload bool
	// Quoted sends Sec-Secure-Session-Id and Secure-Session-Response as
	// sf-strings, as the specification writes them. Default false: raw,
	// as Chromium 156 sends them.
	Quoted bool

	mu      sync.Mutex
	key     *Key
	cookies map[string]cookie
	session *Session
	// Registrations and Refreshes count the requests of each kind sent.
	registrations, refreshes int
}

// New returns a client of base holding key, with a browser's default
// headers and registration on.
func New(base string, hc *http.Client, key *Key) *Client {
	h := http.Header{}
	h.Set("Sec-Fetch-Site", "same-origin")
	h.Set("Sec-Fetch-Mode", "cors")
	h.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36")
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{Base: strings.TrimSuffix(base, "/"), HTTP: &c, Header: h, Now: time.Now, Register: true, key: key, cookies: map[string]cookie{}}
}

// Clone returns another tab of the same browser: the same key and
// registered session, a copy of the cookies, which from then on evolve
// apart.
func (c *Client) Clone() *Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := &Client{Base: c.Base, HTTP: c.HTTP, Header: c.Header.Clone(), Now: c.Now, Register: c.Register, JWKInPayload: c.JWKInPayload, Quoted: c.Quoted, key: c.key, cookies: map[string]cookie{}}
	for k, v := range c.cookies {
		n.cookies[k] = v
	}
	if c.session != nil {
		s := *c.session
		s.Cookies = append([]string(nil), s.Cookies...)
		n.session = &s
	}
	return n
}

// Key returns the client's device key.
func (c *Client) Key() *Key { return c.key }

// SetKey replaces the device key, keeping the session: a refresh then
// signs with a key the server did not register.
func (c *Client) SetKey(k *Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.key = k
}

// Session returns a copy of the registered session, or nil.
func (c *Client) Session() *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session == nil {
		return nil
	}
	s := *c.session
	return &s
}

// Counts returns how many registration and refresh requests were sent.
func (c *Client) Counts() (registrations, refreshes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.registrations, c.refreshes
}

// Jar returns the client's live cookies, name to value: what an
// infostealer copies off the machine.
func (c *Client) Jar() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	now := c.Now()
	for name, ck := range c.cookies {
		if ck.expires.IsZero() || now.Before(ck.expires) {
			out[name] = ck.value
		}
	}
	return out
}

// Cookie returns the live value of the named cookie.
func (c *Client) Cookie(name string) (string, bool) {
	v, ok := c.Jar()[name]
	return v, ok
}

// SetCookie puts a cookie in the jar, as a test planting one.
func (c *Client) SetCookie(name, value string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cookies[name] = cookie{value: value}
}

// Response is a response read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r *Response) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// Get sends a GET to path.
func (c *Client) Get(ctx context.Context, path string) (*Response, error) {
	return c.Do(ctx, http.MethodGet, path, nil, nil)
}

// Do sends a request to path as a browser with DBSC would: first, if a
// registered session's bound cookie is missing or expired, it refreshes
// the session (the browser defers the request until then); then it sends
// the request with its cookies, keeps the cookies the response sets,
// caches any Secure-Session-Challenge, and registers when the response
// offers it. extra holds more headers.
func (c *Client) Do(ctx context.Context, method, path string, body []byte, extra http.Header) (*Response, error) {
	if c.needsRefresh() {
		if err := c.Refresh(ctx); err != nil && !errors.Is(err, ErrNoSession) {
			return nil, fmt.Errorf("refresh before %s %s: %w", method, path, err)
		}
	}
	resp, err := c.send(ctx, method, c.resolve(path), body, extra)
	if err != nil {
		return nil, err
	}
	if c.Register {
		if offer := resp.Header.Get(dbsc.HeaderRegistration); offer != "" {
			if err := c.register(ctx, c.resolve(path), offer); err != nil {
				return resp, fmt.Errorf("registration: %w", err)
			}
		}
	}
	return resp, nil
}

// resolve makes path absolute against Base.
func (c *Client) resolve(path string) string {
	if strings.HasPrefix(path, "https://") || strings.HasPrefix(path, "http://") {
		return path
	}
	return c.Base + path
}

// needsRefresh reports whether a registered session lacks a live bound
// cookie.
func (c *Client) needsRefresh() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session == nil {
		return false
	}
	now := c.Now()
	for _, name := range c.session.Cookies {
		ck, ok := c.cookies[name]
		if !ok || (!ck.expires.IsZero() && !now.Before(ck.expires)) {
			return true
		}
	}
	return false
}

// send sends one request with the client's cookies and headers and keeps
// what the response sets.
func (c *Client) send(ctx context.Context, method, target string, body []byte, extra http.Header) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = c.Header.Clone()
	for k, vs := range extra {
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for name, value := range c.Jar() {
		req.AddCookie(&http.Cookie{Name: name, Value: value, Quoted: false})
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, err
	}
	c.keep(resp.Header)
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// keep stores the cookies a response sets and caches its challenges.
func (c *Client) keep(h http.Header) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.Now()
	for _, line := range h.Values("Set-Cookie") {
		ck, err := http.ParseSetCookie(line)
		if err != nil {
			continue
		}
		switch {
		case ck.MaxAge < 0 || (ck.MaxAge == 0 && !ck.Expires.IsZero() && !now.Before(ck.Expires)):
			delete(c.cookies, ck.Name)
		case ck.MaxAge > 0:
			c.cookies[ck.Name] = cookie{ck.Value, now.Add(time.Duration(ck.MaxAge) * time.Second)}
		default:
			c.cookies[ck.Name] = cookie{ck.Value, ck.Expires}
		}
	}
	for _, v := range h.Values(dbsc.HeaderChallenge) {
		challenges, err := dbsc.ParseChallenges(v)
		if err != nil {
			continue
		}
		for _, ch := range challenges {
			if c.session != nil && ch.SessionID == c.session.ID {
				c.session.Challenge = ch.Challenge
			}
		}
	}
}

// register answers a registration offer made by the response to target.
func (c *Client) register(ctx context.Context, target, offer string) error {
	regs, err := dbsc.ParseRegistration(offer)
	if err != nil {
		return err
	}
	c.mu.Lock()
	key, inPayload := c.key, c.JWKInPayload
	c.mu.Unlock()
	var reg *dbsc.Registration
	for i := range regs {
		for _, a := range regs[i].Algorithms {
			if a == key.Algorithm() {
				reg = &regs[i]
				break
			}
		}
	}
	if reg == nil {
		return fmt.Errorf("no offered algorithm matches the key's %s", key.Algorithm())
	}
	endpoint, err := resolveRef(target, reg.Path)
	if err != nil {
		return err
	}
	proof, err := key.Proof(reg.Challenge, ProofOptions{WithJWK: !inPayload, JWKInPayload: inPayload, Authorization: reg.Authorization, IssuedAt: c.Now()})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.registrations++
	c.mu.Unlock()
	resp, err := c.send(ctx, http.MethodPost, endpoint, nil, http.Header{dbsc.HeaderResponse: {c.quote(proof)}})
	if err != nil {
		return err
	}
	if resp.Status != http.StatusOK {
		return fmt.Errorf("registration answered %d: %s", resp.Status, resp.Body)
	}
	return c.adopt(endpoint, "", resp.Body)
}

// adopt reads session instructions answering a request to endpoint;
// wantID is the session refreshed, "" at registration.
func (c *Client) adopt(endpoint, wantID string, body []byte) error {
	var in struct {
		SessionIdentifier string `json:"session_identifier"`
		RefreshURL        string `json:"refresh_url"`
		Continue          *bool  `json:"continue"`
		Credentials       []struct {
			Type, Name string
		} `json:"credentials"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return fmt.Errorf("session instructions: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if in.Continue != nil && !*in.Continue {
		c.session = nil
		return nil
	}
	if in.SessionIdentifier == "" || (wantID != "" && in.SessionIdentifier != wantID) {
		c.session = nil
		return fmt.Errorf("session instructions name session %q", in.SessionIdentifier)
	}
	refresh := endpoint
	if in.RefreshURL != "" {
		var err error
		if refresh, err = resolveRef(endpoint, in.RefreshURL); err != nil {
			return err
		}
	}
	s := &Session{ID: in.SessionIdentifier, RefreshURL: refresh}
	if c.session != nil && c.session.ID == s.ID {
		s.Challenge = c.session.Challenge
	}
	for _, cr := range in.Credentials {
		if cr.Type == "cookie" {
			s.Cookies = append(s.Cookies, cr.Name)
		}
	}
	c.session = s
	return nil
}

// Refresh refreshes the registered session's bound cookies as the
// specification's "send a request" does: a POST to the refresh URL with
// Sec-Secure-Session-Id and a proof over the cached challenge, if any; a
// 403 with a Secure-Session-Challenge is answered once more with a proof
// over the new challenge. Continue false, or another 4xx, ends the
// session in the client.
func (c *Client) Refresh(ctx context.Context) error {
	for attempt := 0; attempt < 2; attempt++ {
		c.mu.Lock()
		if c.session == nil {
			c.mu.Unlock()
			return ErrNoSession
		}
		s := *c.session
		c.session.Challenge = "" // a challenge signs one proof
		key := c.key
		c.refreshes++
		c.mu.Unlock()
		h := http.Header{dbsc.HeaderSessionID: {c.quote(s.ID)}}
		if s.Challenge != "" {
			proof, err := key.Proof(s.Challenge, ProofOptions{IssuedAt: c.Now()})
			if err != nil {
				return err
			}
			h.Set(dbsc.HeaderResponse, c.quote(proof))
		}
		resp, err := c.send(ctx, http.MethodPost, s.RefreshURL, nil, h)
		if err != nil {
			return err
		}
		switch {
		case resp.Status == http.StatusForbidden:
			continue // keep has cached the new challenge
		case resp.Status >= 500:
			return fmt.Errorf("refresh answered %d", resp.Status)
		case resp.Status >= 300 && resp.Status < 400:
			return fmt.Errorf("refresh answered %d", resp.Status)
		case resp.Status >= 400:
			c.end(s.ID)
			return fmt.Errorf("refresh answered %d: %s", resp.Status, resp.Body)
		}
		if len(resp.Body) == 0 {
			return nil
		}
		return c.adopt(s.RefreshURL, s.ID, resp.Body)
	}
	return errors.New("refresh: the server asked for a new challenge twice")
}

// RefreshWith posts one refresh request carrying proof as it is, for
// tests that replay or forge proofs. It changes nothing but cookies.
func (c *Client) RefreshWith(ctx context.Context, proof string) (*Response, error) {
	s := c.Session()
	if s == nil {
		return nil, ErrNoSession
	}
	h := http.Header{dbsc.HeaderSessionID: {c.quote(s.ID)}}
	if proof != "" {
		h.Set(dbsc.HeaderResponse, c.quote(proof))
	}
	return c.send(ctx, http.MethodPost, s.RefreshURL, nil, h)
}

func (c *Client) end(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session != nil && c.session.ID == id {
		c.session = nil
	}
}

// resolveRef resolves ref against base.
func resolveRef(base, ref string) (string, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	r, err := url.Parse(ref)
	if err != nil {
		return "", err
	}
	return b.ResolveReference(r).String(), nil
}

// quote writes a header value as the client sends it: an sf-string
// with Quoted, else raw.
func (c *Client) quote(s string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Quoted {
		return strconv.Quote(s)
	}
	return s
}
