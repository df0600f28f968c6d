package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/internal/seal"
)

// oidcFiles writes a client secret and a seal key file, both private.
func oidcFiles(t *testing.T) (secret, keys string) {
	t.Helper()
	dir := t.TempDir()
	line, err := seal.NewKeyLine("k1")
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "secret", "s3cret\n", 0o600), writeFile(t, dir, "keys", line+"\n", 0o600)
}

func TestOIDCCheckConfigAcceptsAValidSetup(t *testing.T) {
	clearEnv(t)
	secret, keys := oidcFiles(t)
	up := echoUpstream(t).URL
	spec := "name=corp;display-name=Corp SSO;issuer=https://login.example.com/realms/corp;client-id=gw;client-secret-file=" + secret +
		";scopes=openid email profile offline_access;allowed-domains=example.com;allowed-groups=staff admins;require-claim=tenant=acme;token-auth=post;auth-param=audience=https://api.example.com;auth-param=access_type=offline"
	mustRun(t, "", "serve", "--check-config", "--upstream", "/api/="+up,
		"--oidc-provider", spec, "--public-url", "https://app.example.com", "--oidc-keys-file", keys,
		"--oidc-relay-token", "/api/", "--oidc-step-up", "/api/admin/=10m", "--oidc-step-up", "/auth/sessions/=5m")

	// The same from a JSON config file.
	dir := t.TempDir()
	cfg := writeFile(t, dir, "cloakroom.json", `{"upstream": ["/api/=`+up+`"], "oidc-provider": ["`+spec+`"],
		"public-url": "https://app.example.com", "oidc-keys-file": "`+keys+`", "oidc-relay-token": ["/api/"]}`, 0o600)
	mustRun(t, "", "serve", "--check-config", "--config", cfg)
}

// TestOIDCCheckConfigReportsEveryProblem: each mistake is named, all at
// once, without contacting any provider.
func TestOIDCCheckConfigReportsEveryProblem(t *testing.T) {
	clearEnv(t)
	secret, _ := oidcFiles(t)
	dir := t.TempDir()
	open := writeFile(t, dir, "open-secret", "s3cret", 0o644)
	up := echoUpstream(t).URL
	r := run(t, "", "serve", "--check-config", "--upstream", "/api/="+up,
		"--oidc-provider", "name=corp;issuer=http://login.example.com;client-id=gw;client-secret-file="+secret,
		"--oidc-provider", "name=Bad Name;issuer=https://x.example;client-id=gw;client-secret-file="+open,
		"--oidc-provider", "name=inline;issuer=https://x.example;client-id=gw;client-secret=hunter2",
		"--oidc-provider", "name=partial;issuer=https://x.example",
		"--oidc-provider", "name=sneaky;issuer=https://x.example;client-id=gw;client-secret-file="+secret+";auth-param=redirect_uri=https://evil.example",
		"--oidc-provider", "name=odd;issuer=https://x.example;client-id=gw;client-secret-file="+secret+";colour=blue",
		"--oidc-relay-token", "/other/",
		"--oidc-step-up", "/api/admin/=30s",
		"--oidc-step-up", "/auth/=10m",
		"--oidc-keys-file", filepath.Join(dir, "missing-keys"))
	if r.code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"--oidc-provider corp: issuer \"http://login.example.com\": http is allowed on a loopback host only",
		"name must be 1 to 32 of a-z, 0-9 and '-'",
		"open-secret is readable by every user",
		"client-secret does not belong on the command line",
		"missing client-id, client-secret-file",
		`unknown field "colour"`,
		`--oidc-provider sneaky: auth param "redirect_uri" is set by the login flow itself`,
		"--public-url \"\": is required",
		"--oidc-keys-file:",
		`--oidc-relay-token "/other/" is not an --upstream prefix`,
		"--oidc-step-up \"/api/admin/=30s\": the duration must be at least 1m",
		`--oidc-step-up "/auth/=10m": step-up prefix "/auth/" covers /auth/login, which logging in again needs`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "hunter2") {
		t.Error("the refused inline secret was echoed")
	}

	r = run(t, "", "serve", "--check-config", "--public-url", "https://app.example.com", "--oidc-relay-token", "/api/")
	if r.code != 1 || !strings.Contains(r.stderr, "--public-url is set but no --oidc-provider is") {
		t.Errorf("OIDC settings without a provider: exit %d:\n%s", r.code, r.stderr)
	}
}

// TestServeFailsFastWhenDiscoveryFails: a provider that cannot be reached
// stops serve at startup with a message naming it.
func TestServeFailsFastWhenDiscoveryFails(t *testing.T) {
	clearEnv(t)
	secret, keys := oidcFiles(t)
	r := run(t, "", "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--store", tempStore(t),
		"--oidc-provider", "name=corp;issuer=http://127.0.0.1:1/realms/corp;client-id=gw;client-secret-file="+secret,
		"--public-url", "http://localhost:8080", "--oidc-keys-file", keys)
	if r.code != 1 || !strings.Contains(r.stderr, `provider \"corp\": discovery at http://127.0.0.1:1/realms/corp failed`) {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
}

// FuzzParseProviderSpec: the parser never panics, and what it accepts has
// every required field, taken verbatim from one key=value field.
func FuzzParseProviderSpec(f *testing.F) {
	f.Add("name=corp;issuer=https://login.example.com;client-id=gw;client-secret-file=/run/secret")
	f.Add("name=a;issuer=b;client-id=c;client-secret-file=d;scopes=openid  email;require-claim=tid=1;require-claim=x=y")
	f.Add(";;name==;issuer=;")
	f.Add("client-secret=x")
	f.Fuzz(func(t *testing.T, spec string) {
		pc, secretFile, err := parseProviderSpec(spec)
		if err != nil {
			return
		}
		for name, v := range map[string]string{"name": pc.Name, "issuer": pc.Issuer, "client-id": pc.ClientID, "client-secret-file": secretFile} {
			if v == "" || strings.Contains(v, ";") || !strings.Contains(spec, name+"=") {
				t.Fatalf("accepted %q with %s = %q", spec, name, v)
			}
		}
		if pc.ClientSecret != "" {
			t.Fatal("a secret was taken from the spec itself")
		}
	})
}

// TestOIDCRelayOnAVaultRouteIsRefused: a vault route attaches the app's
// own token and never relays the provider's; naming it in
// --oidc-relay-token would be silently ignored.
func TestOIDCRelayOnAVaultRouteIsRefused(t *testing.T) {
	clearEnv(t)
	secret, keys := oidcFiles(t)
	up := echoUpstream(t).URL
	r := run(t, "", "serve", "--check-config", "--upstream", "/api/="+up,
		"--oidc-provider", "name=corp;issuer=https://login.example.com;client-id=gw;client-secret-file="+secret,
		"--public-url", "https://app.example.com", "--oidc-keys-file", keys, "--oidc-relay-token", "/api",
		"--vault", "/api/", "--vault-keys-file", keys, "--vault-capture", "POST /api/users/login user.token")
	if r.code != 1 || !strings.Contains(r.stderr, `--oidc-relay-token "/api" is a --vault route`) {
		t.Fatalf("relay on a vault route: exit %d:\n%s", r.code, r.stderr)
	}
}
