package app

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestImportGraph keeps aduagent, the binary that ships to devices, free of the host tools'
// packages (DESIGN.md §3): the import manifest generator, the local hub, the recovery
// server, the CLI progress bars and the libraries behind them.
func TestImportGraph(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		if goTool, err = exec.LookPath("go"); err != nil {
			t.Skip("no go tool found")
		}
	}
	forbidden := []string{
		"github.com/aduflash/aduflash/manifestgen",
		"github.com/aduflash/aduflash/hub",
		"github.com/aduflash/aduflash/recovery",
		"github.com/aduflash/aduflash/cmd/internal/progress",
		"github.com/cheggaaa/pb/v3",
		"github.com/mochi-mqtt/server/v2",
	}
	for _, target := range [][2]string{{runtime.GOOS, runtime.GOARCH}, {"linux", "arm"}, {"linux", "arm64"}, {"windows", "amd64"}, {"darwin", "arm64"}} {
		t.Run(target[0]+"_"+target[1], func(t *testing.T) {
			cmd := exec.Command(goTool, "list", "-deps", "github.com/aduflash/aduflash/cmd/aduagent")
			cmd.Env = append(os.Environ(), "GOOS="+target[0], "GOARCH="+target[1], "CGO_ENABLED=0")
			out, err := cmd.Output()
			if err != nil {
				msg := ""
				if ee, ok := err.(*exec.ExitError); ok {
					msg = string(ee.Stderr)
				}
				t.Fatalf("go list: %v\n%s", err, msg)
			}
			deps := map[string]bool{}
			for _, l := range strings.Fields(string(out)) {
				deps[l] = true
			}
			if !deps["github.com/aduflash/aduflash/cmd/aduagent/app"] || !deps["github.com/aduflash/aduflash/bootloader"] {
				t.Fatalf("go list output looks wrong:\n%s", out)
			}
			for _, f := range forbidden {
				for d := range deps {
					if d == f || strings.HasPrefix(d, f+"/") {
						t.Errorf("aduagent imports %s (forbidden on the device binary)", d)
					}
				}
			}
		})
	}
}
