// Package layers holds the test that keeps the module's packages in
// layers: a package imports packages of its own layer or of lower ones,
// never of a higher one, so the core and the stores know nothing of the
// gateway, and the gateway nothing of the programs built on it.
package layers

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cloakroom/cloakroom"

// layers are the module's layers, from the ground up. A package belongs to
// the layer of the longest pattern that matches it; "x/..." matches x and
// every package below it, "" the core package at the module's root.
var layers = []struct {
	name     string
	patterns []string
}{
	{"core and leaf helpers", []string{"", "internal/...", "storetest"}},
	{"stores, accounts and upstream calls", []string{"memstore", "sqlitestore", "pgstore", "redisstore", "accounts/...", "upstreamjwt", "proxy", "dbsc/..."}},
	{"sign-in", []string{"signin"}},
	{"route modes", []string{"oidcbff", "vault", "forwardauth"}},
	{"gateway", []string{"gateway"}},
	{"programs", []string{"cmd/...", "lab/...", "demoapp", "bench/...", "test/..."}},
}

// layerOf returns the index in layers of the module package rel (its path
// below the module, "" for the root), or -1 when no pattern matches it.
func layerOf(rel string) int {
	layer, longest := -1, -1
	for i, l := range layers {
		for _, p := range l.patterns {
			base, tree := strings.CutSuffix(p, "/...")
			matches := rel == base || (tree && strings.HasPrefix(rel, base+"/"))
			if matches && len(base) > longest {
				layer, longest = i, len(base)
			}
		}
	}
	return layer
}

// relative returns pkg's path below the module, and false for a package
// outside it.
func relative(pkg string) (string, bool) {
	if pkg == module {
		return "", true
	}
	return strings.CutPrefix(pkg, module+"/")
}

// TestImportsStayInLayers reads every package's imports (its tests' own
// imports excluded: a test may reach up to drive its package) and fails
// for a package no layer names, and for an import of a higher layer.
func TestImportsStayInLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		rel, _ := relative(fields[0])
		layer := layerOf(rel)
		if layer < 0 {
			t.Errorf("package %s is in no layer: add it to layers", fields[0])
			continue
		}
		for _, imp := range fields[1:] {
			irel, ours := relative(imp)
			if !ours {
				continue
			}
			if il := layerOf(irel); il > layer {
				t.Errorf("%s (layer %d, %s) imports %s (layer %d, %s): a package may import its own layer or lower ones",
					fields[0], layer+1, layers[layer].name, imp, il+1, layers[il].name)
			}
		}
	}
}
