// Package docscheck holds tests that keep the documentation true to the
// code: the ASVS matrix in docs/asvs.md may only name tests that exist.
package docscheck

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// requiredRows are the ASVS 5.0 requirements the matrix must cover: V7
// whole, V3.3, V3.4, V3.5, V4.4, the V6 password-login and TOTP items, 11.4.2, the
// V14 token-in-URL and browser-storage items, V16.1 to V16.4.
var requiredRows = func() []string {
	ids := []string{
		"7.1.1", "7.1.2", "7.1.3", "7.2.1", "7.2.2", "7.2.3", "7.2.4", "7.3.1", "7.3.2",
		"7.4.1", "7.4.2", "7.4.3", "7.4.4", "7.4.5", "7.5.1", "7.5.2", "7.5.3", "7.6.1", "7.6.2",
		"3.3.1", "3.3.2", "3.3.3", "3.3.4", "3.3.5",
		"3.4.1", "3.4.2", "3.4.3", "3.4.4", "3.4.5", "3.4.6", "3.4.7", "3.4.8",
		"3.5.1", "3.5.2", "3.5.3", "3.5.4", "3.5.5", "3.5.6", "3.5.7", "3.5.8",
		"4.4.1", "4.4.2", "4.4.3", "4.4.4",
		"6.1.1", "6.3.1", "6.3.8", "11.4.2",
		"6.3.3", "6.5.1", "6.5.2", "6.5.3", "6.5.4", "6.5.5", "6.5.6", "6.5.8", // the TOTP second factor
		"14.2.1", "14.3.1", "14.3.2", "14.3.3",
		"16.1.1", "16.2.1", "16.2.2", "16.2.3", "16.2.4", "16.2.5",
		"16.3.1", "16.3.2", "16.3.3", "16.3.4", "16.4.1", "16.4.2", "16.4.3",
	}
	for i := 1; i <= 12; i++ {
		ids = append(ids, "6.2."+itoa(i))
	}
	return ids
}()

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return "1" + string(rune('0'+i-10))
}

var (
	testRef  = regexp.MustCompile("`([a-z][a-z0-9/]*)\\.(Test[A-Za-z0-9_]+)`")
	statuses = []string{"Met", "Partly met", "Not met", "N/A", "Deployer"}
)

// TestASVSMatrixTestsExist fails when docs/asvs.md names a test that does
// not exist in the package it names, lacks a row for a required
// requirement, gives a row an unknown status, or calls a row met without
// naming a test.
func TestASVSMatrixTestsExist(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "asvs.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{} // ID -> cells
	for line := range strings.SplitSeq(string(doc), "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 6 || !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(cells[0]) {
			continue
		}
		if _, dup := rows[cells[0]]; dup {
			t.Errorf("requirement %s has two rows", cells[0])
		}
		rows[cells[0]] = cells
		if !slices.Contains(statuses, cells[3]) {
			t.Errorf("%s: status %q, want one of %q", cells[0], cells[3], statuses)
		}
		if cells[3] == "Met" && !testRef.MatchString(cells[5]) {
			t.Errorf("%s is marked Met without naming a test", cells[0])
		}
	}
	for _, id := range requiredRows {
		if rows[id] == nil {
			t.Errorf("docs/asvs.md has no row for ASVS %s", id)
		}
	}

	sources := map[string]string{} // package folder -> its test files' text
	refs := testRef.FindAllStringSubmatch(string(doc), -1)
	if len(refs) < 50 {
		t.Fatalf("only %d test references found: is the pattern still right?", len(refs))
	}
	for _, m := range refs {
		pkg, name := m[1], m[2]
		dir := pkg
		if pkg == "cloakroom" {
			dir = "."
		}
		text, ok := sources[dir]
		if !ok {
			files, _ := filepath.Glob(filepath.Join(root, dir, "*_test.go"))
			var b strings.Builder
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				b.Write(data)
			}
			text = b.String()
			sources[dir] = text
		}
		if !strings.Contains(text, "\nfunc "+name+"(t *testing.T)") {
			t.Errorf("docs/asvs.md names %s.%s, which does not exist", pkg, name)
		}
	}
}
