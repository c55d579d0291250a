package app

import (
	"strings"
	"testing"

	"github.com/aduflash/aduflash/internal/deptest"
)

// TestImportGraph keeps aduagent, the binary that ships to devices, free of the host tools'
// packages (DESIGN.md §3): the import manifest generator, the local hub, the publisher (and
// Entra ID sign-in), the recovery server, the CLI progress bars and the libraries behind them.
func TestImportGraph(t *testing.T) {
	forbidden := []string{
		"github.com/aduflash/aduflash/manifestgen",
		"github.com/aduflash/aduflash/hub",
		"github.com/aduflash/aduflash/publish",
		"github.com/Azure/azure-sdk-for-go/sdk/azidentity",
		"github.com/aduflash/aduflash/recovery",
		"github.com/aduflash/aduflash/cmd/internal/progress",
		"github.com/cheggaaa/pb/v3",
		"github.com/mochi-mqtt/server/v2",
	}
	for _, target := range deptest.Targets {
		t.Run(target[0]+"_"+target[1], func(t *testing.T) {
			deps := deptest.Deps(t, "github.com/aduflash/aduflash/cmd/aduagent", target[0], target[1])
			if !deps["github.com/aduflash/aduflash/cmd/aduagent/app"] || !deps["github.com/aduflash/aduflash/bootloader"] {
				t.Fatalf("go list output looks wrong: %v", deps)
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
