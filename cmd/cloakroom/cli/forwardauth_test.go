package cli

import (
	"fmt"
	"strings"
	"testing"
)

// The forward-auth flags become one rule per host and prefix (roles named
// for a prefix add up), and every problem is reported in the order of the
// values.
func TestValidateForwardAuth(t *testing.T) {
	cfg := defaultConfig()
	cfg.ForwardAuthProxies = []string{"127.0.0.1", "10.0.0.0/8", "nonsense"}
	cfg.ForwardAuthHosts = []string{"app.example.com", "other.example/x"}
	cfg.ForwardAuthPublic = []string{"app.example.com/assets/", "/nohost"}
	cfg.ForwardAuthRoles = []string{"app.example.com/admin/=admin", "app.example.com/admin/=ops", "app.example.com/admin/=admin", "app.example.com/x=a,b"}
	fa, problems := validateForwardAuth(cfg)
	var got []string
	for _, p := range problems {
		got = append(got, p.Error())
	}
	for _, r := range fa.Rules {
		got = append(got, fmt.Sprintf("%s%s public=%v roles=%v", r.Host, r.Prefix, r.Public, r.Roles))
	}
	got = append(got, fmt.Sprint(fa.Proxies), fa.Audience)
	want := []string{
		`--forward-auth-proxy "nonsense": want an address or a CIDR prefix such as 10.0.0.0/8`,
		`--forward-auth-host "other.example/x": want a host alone; use --forward-auth-public or --forward-auth-role for paths`,
		`--forward-auth-public "/nohost": invalid forward-auth rule: the host is empty (want HOST or HOST/PREFIX, such as app.example.com/admin/)`,
		`--forward-auth-role "app.example.com/x=a,b": want HOST/PREFIX=ROLE, one role without commas or spaces`,
		"app.example.com/ public=false roles=[]",
		"app.example.com/assets/ public=true roles=[]",
		"app.example.com/admin/ public=false roles=[admin ops]",
		"[127.0.0.1/32 10.0.0.0/8]",
		forwardAuthAudience,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Rules need proxies; proxies alone are a mistake; no setting, no
	// forward auth.
	only := defaultConfig()
	only.ForwardAuthHosts = []string{"app.example.com"}
	if _, problems := validateForwardAuth(only); len(problems) != 1 || !strings.Contains(problems[0].Error(), "needs --forward-auth-proxy") {
		t.Errorf("rules without proxies: %v", problems)
	}
	only = defaultConfig()
	only.ForwardAuthProxies = []string{"127.0.0.1"}
	if _, problems := validateForwardAuth(only); len(problems) != 1 {
		t.Errorf("proxies without rules: %v", problems)
	}
	if fa, problems := validateForwardAuth(defaultConfig()); fa != nil || len(problems) != 0 {
		t.Errorf("no forward-auth settings: %v, %v", fa, problems)
	}
}
