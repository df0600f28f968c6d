package cli

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionText(t *testing.T) {
	platform := runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	withVCS := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/cloakroom/cloakroom", Version: "v1.4.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "6c8fa06e0f5d8a3b2c1d0e9f8a7b6c5d4e3f2a1b"},
			{Key: "vcs.time", Value: "2026-12-07T11:02:03Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	clean := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "6c8fa06e0f5d8a3b2c1d0e9f8a7b6c5d4e3f2a1b"},
		{Key: "vcs.modified", Value: "false"},
	}}
	for _, tc := range []struct {
		name     string
		override string
		info     *debug.BuildInfo
		want     string
	}{
		{"vcs, dirty", "", withVCS, "cloakroom v1.4.0\ncommit 6c8fa06e0f5d8a3b2c1d0e9f8a7b6c5d4e3f2a1b (modified: built with uncommitted changes)\ncommitted 2026-12-07T11:02:03Z\n" + platform + "\n"},
		{"vcs, clean, no time", "", clean, "cloakroom (devel)\ncommit 6c8fa06e0f5d8a3b2c1d0e9f8a7b6c5d4e3f2a1b\n" + platform + "\n"},
		{"ldflags version", "v9.9.9", withVCS, "cloakroom v9.9.9\ncommit 6c8fa06e0f5d8a3b2c1d0e9f8a7b6c5d4e3f2a1b (modified: built with uncommitted changes)\ncommitted 2026-12-07T11:02:03Z\n" + platform + "\n"},
		{"no vcs", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "cloakroom v1.4.0\ncommit unknown (built without VCS information)\n" + platform + "\n"},
		{"no build info", "", nil, "cloakroom (devel)\ncommit unknown (built without VCS information)\n" + platform + "\n"},
	} {
		if got := versionText(tc.override, tc.info); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// TestVersionCommand: the test binary is built without VCS information,
// and the command says so rather than printing nothing.
func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := mustRun(t, "", args...)
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if len(lines) < 3 || !strings.HasPrefix(lines[0], "cloakroom ") || !strings.HasPrefix(lines[1], "commit ") || lines[len(lines)-1] != runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH {
			t.Errorf("cloakroom %s printed %q", args[0], r.stdout)
		}
		if info, _ := debug.ReadBuildInfo(); vcsSetting(info, "vcs.revision") == "" && lines[1] != "commit unknown (built without VCS information)" {
			t.Errorf("cloakroom %s without VCS information printed %q", args[0], lines[1])
		}
	}
}
