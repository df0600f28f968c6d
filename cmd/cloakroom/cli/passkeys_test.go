package cli

import (
	"strings"
	"testing"
)

// The passkey flags: both or neither, checked as the relying party
// checks them, with the flags named in the problem.
func TestValidatePasskeys(t *testing.T) {
	if pc, problems := validatePasskeys(defaultConfig()); pc.RPID != "" || len(problems) != 0 {
		t.Errorf("no passkey settings: %+v, %v", pc, problems)
	}
	cfg := defaultConfig()
	cfg.WebAuthnRPID, cfg.WebAuthnOrigins = "example.com", []string{"https://login.example.com"}
	if pc, problems := validatePasskeys(cfg); pc.RPID != "example.com" || len(pc.Origins) != 1 || len(problems) != 0 {
		t.Errorf("valid settings: %+v, %v", pc, problems)
	}
	for _, bad := range []struct {
		rpID    string
		origins []string
		want    string
	}{
		{"example.com", nil, "without an allowed origin"},
		{"", []string{"https://example.com"}, "without a relying-party ID"},
		{"example.com", []string{"https://example.net"}, "not within the relying-party ID"},
		{"example.com", []string{"http://example.com"}, "must be https"},
	} {
		cfg := defaultConfig()
		cfg.WebAuthnRPID, cfg.WebAuthnOrigins = bad.rpID, bad.origins
		_, problems := validatePasskeys(cfg)
		if len(problems) != 1 || !strings.HasPrefix(problems[0].Error(), "--webauthn-rp-id/--webauthn-origin: ") || !strings.Contains(problems[0].Error(), bad.want) {
			t.Errorf("%q %q: %v, want %q", bad.rpID, bad.origins, problems, bad.want)
		}
	}
}
