package install

import (
	"testing"

	"github.com/aduflash/aduflash/internal/deptest"
)

// TestImportGraph keeps install between the agent and the slots (DESIGN.md §3): it may
// import the image formats, the slots (and what they sit on, mtd) and the download, but
// not the agent, the bootloaders or the service protocol.
func TestImportGraph(t *testing.T) {
	deptest.OnlyInternal(t, "install", "image/...", "slots", "mtd", "download")
}
