// Package deptest checks the import graph of a package for tests that keep a layering rule of
// DESIGN.md (tailscale's deptest idea): what a package may import, on every target it builds for.
package deptest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Module is the module path of this repository.
const Module = "github.com/aduflash/aduflash"

// Targets are the GOOS/GOARCH pairs the checks run for: this machine, the device
// architectures and the host tools' other systems.
var Targets = [][2]string{{runtime.GOOS, runtime.GOARCH}, {"linux", "arm"}, {"linux", "arm64"}, {"windows", "amd64"}, {"darwin", "arm64"}}

// Deps returns the packages pkg imports, directly or not, when built for goos/goarch without
// cgo, pkg included (go list -deps). It skips the test in -short mode or without a go tool.
func Deps(t *testing.T, pkg, goos, goarch string) map[string]bool {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		if goTool, err = exec.LookPath("go"); err != nil {
			t.Skip("no go tool found")
		}
	}
	cmd := exec.Command(goTool, "list", "-deps", pkg)
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, msg)
	}
	deps := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		deps[l] = true
	}
	if !deps[pkg] {
		t.Fatalf("go list -deps %s does not list the package itself:\n%s", pkg, out)
	}
	return deps
}

// OnlyInternal fails the test for every package of this module that pkg imports on any of
// Targets other than pkg itself, the packages allowed (and their sub-packages when an entry
// ends in "/...") and those under internal/. Paths are relative to the module ("mtd").
func OnlyInternal(t *testing.T, pkg string, allowed ...string) {
	t.Helper()
	for _, target := range Targets {
		t.Run(target[0]+"_"+target[1], func(t *testing.T) {
			for d := range Deps(t, Module+"/"+pkg, target[0], target[1]) {
				rel, ok := strings.CutPrefix(d, Module+"/")
				if !ok || rel == pkg || strings.HasPrefix(rel, "internal/") || allows(allowed, rel) {
					continue
				}
				t.Errorf("%s imports %s; DESIGN.md §3 allows only %s and internal/...", pkg, rel, strings.Join(allowed, ", "))
			}
		})
	}
}

func allows(allowed []string, rel string) bool {
	for _, a := range allowed {
		if base, ok := strings.CutSuffix(a, "/..."); ok {
			if rel == base || strings.HasPrefix(rel, base+"/") {
				return true
			}
		} else if rel == a {
			return true
		}
	}
	return false
}
