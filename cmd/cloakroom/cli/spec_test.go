package cli

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/proxy"
)

// TestParseProviderSpecSetsEveryField: each key of --oidc-provider lands
// in its own field of the provider, lists split at spaces, pairs parsed.
func TestParseProviderSpecSetsEveryField(t *testing.T) {
	spec := "name=corp; display-name=Corp SSO;issuer=https://login.example.com;client-id=gw;client-secret-file=/run/secret;" +
		"scopes=openid  email;allowed-domains=a.example b.example;allowed-groups=staff;require-claim=tid=1;require-claim=acr=mfa;" +
		"auth-param=audience=api;user-claim=oid;email-claim=upn;name-claim=nick;groups-claim=roles;token-auth=post"
	pc, secretFile, err := parseProviderSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	want := oidcbff.ProviderConfig{
		Name: "corp", DisplayName: "Corp SSO", Issuer: "https://login.example.com", ClientID: "gw", TokenAuth: "post",
		Scopes: []string{"openid", "email"}, AllowedDomains: []string{"a.example", "b.example"}, AllowedGroups: []string{"staff"},
		RequiredClaims: map[string]string{"tid": "1", "acr": "mfa"}, AuthParams: map[string]string{"audience": "api"},
		UserClaim: "oid", EmailClaim: "upn", NameClaim: "nick", GroupsClaim: "roles",
	}
	if !reflect.DeepEqual(pc, want) || secretFile != "/run/secret" {
		t.Errorf("got %+v, %q\nwant %+v", pc, secretFile, want)
	}
}

func TestParseProviderSpecErrors(t *testing.T) {
	const required = "name=a;issuer=b;client-id=c;client-secret-file=d"
	for _, tc := range []struct{ spec, want string }{
		{strings.Repeat("x", maxProviderSpec+1), "longer than 4096 bytes"},
		{required + ";scopes", `field "scopes" is not key=value`},
		{required + ";token-auth=", `field "token-auth=" is not key=value`},
		{required + ";issuer=e", "issuer is given twice"},
		{required + ";scopes=a;scopes=b", "scopes is given twice"},
		{required + ";client-secret=x", "client-secret does not belong on the command line or in the config file; use client-secret-file"},
		{required + ";require-claim=tid", `require-claim "tid" is not CLAIM=VALUE`},
		{required + ";auth-param==x", `auth-param "=x" is not NAME=VALUE`},
		{required + ";colour=blue", `unknown field "colour"`},
		{"display-name=x;issuer=b", "missing name, client-id, client-secret-file"},
	} {
		_, _, err := parseProviderSpec(tc.spec)
		if fmt.Sprint(err) != tc.want {
			t.Errorf("parseProviderSpec(%.60q): %v, want %s", tc.spec, err, tc.want)
		}
	}
}

// TestValidateVaultPlacesCapturesAndLogouts: each --vault-capture and
// --vault-logout joins the vault route with the longest prefix its path
// starts with, and the problems come in the order of the values.
func TestValidateVaultPlacesCapturesAndLogouts(t *testing.T) {
	line, err := seal.NewKeyLine("k1")
	if err != nil {
		t.Fatal(err)
	}
	keys := writeFile(t, t.TempDir(), "vault.keys", line+"\n", 0o600)
	var routes []proxy.Route
	for _, s := range []string{"/api/=http://127.0.0.1:9000", "/api/admin/=http://127.0.0.1:9001"} {
		r, err := proxy.ParseRoute(s)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, r)
	}
	cfg := defaultConfig()
	cfg.Vault = []string{"/api/", "/api/admin"}
	cfg.VaultKeysFile = keys
	cfg.VaultCapture = []string{"GET", "POST /api/admin/login a.t", "POST /x/login t", "POST /api/login user.token"}
	cfg.VaultLogout = []string{"POST /api/out", "A B C", "/elsewhere", "POST /api/admin/out"}

	vp, problems := validateVault(cfg, routes)
	var got []string
	for _, p := range problems {
		got = append(got, p.Error())
	}
	for _, r := range vp.routes {
		got = append(got, fmt.Sprintf("%s captures %v logouts %v", r.Prefix, r.Capture, r.Logout))
	}
	want := []string{
		`--vault-capture: vault: invalid configuration: capture "GET" is not "METHOD PATH FIELD" (for example "POST /api/users/login user.token")`,
		`--vault-capture "POST /x/login t": not under a --vault prefix`,
		`--vault-logout: vault: invalid configuration: endpoint "A B C" is not "METHOD PATH"`,
		`--vault-logout "/elsewhere": not under a --vault prefix`,
		"/api/ captures [POST /api/login user.token] logouts [POST /api/out]",
		"/api/admin/ captures [POST /api/admin/login a.t] logouts [POST /api/admin/out]",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
