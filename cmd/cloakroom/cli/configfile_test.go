package cli

import (
	"strings"
	"testing"
)

// TestConfigFileMustBeAnObject: a config file that is JSON but not an
// object says so; a syntax error names the file, line and column.
func TestConfigFileMustBeAnObject(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	for _, tc := range []struct{ name, content, want string }{
		{"array.json", "[1,2]", "config file DIR/array.json: must be a JSON object of settings"},
		{"null.json", "null", "config file DIR/null.json: must be a JSON object of settings"},
		{"string.json", `"listen"`, "config file DIR/string.json: must be a JSON object of settings"},
		{"syntax.json", "{\n  \"listen\": \"127.0.0.1:8080\",\n  \"log-level\": debug\n}\n", "DIR/syntax.json:3:16: invalid character 'd' looking for beginning of value"},
		{"comma.json", "{\n  \"listen\": \"127.0.0.1:8080\",\n}", "DIR/comma.json:3:1: invalid character '}' looking for beginning of object key string"},
		{"truncated.json", "{\"listen\": ", "DIR/truncated.json:1:12: unexpected end of JSON input"},
		{"trailing.json", "{}\n{}", "DIR/trailing.json:2:1: invalid character '{' after top-level value"},
		{"empty.json", "", "config file DIR/empty.json: empty; write {} for no settings"},
	} {
		path := writeFile(t, dir, tc.name, tc.content, 0o600)
		r := run(t, "", "serve", "--check-config", "--config", path)
		want := strings.ReplaceAll(tc.want, "DIR", dir)
		if r.code != exitFailure || !strings.Contains(r.stderr, "  - "+want+"\n") {
			t.Errorf("%s: exit %d, stderr:\n%s\nwant the line %q", tc.name, r.code, r.stderr, want)
		}
		if strings.Contains(r.stderr, "json: cannot") || strings.Contains(r.stderr, "Go value") {
			t.Errorf("%s: Go's decoder message leaks:\n%s", tc.name, r.stderr)
		}
	}
}
