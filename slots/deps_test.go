package slots

import (
	"testing"

	"github.com/aduflash/aduflash/internal/deptest"
)

// TestImportGraph keeps slots below the image formats and the bootloaders (DESIGN.md §3):
// besides the standard library it may import only mtd and the module's internal helpers.
// What a slot needs of a bootloader it asks through BootState; what a format checks of a
// written slot it reads over Writer.ReadAt.
func TestImportGraph(t *testing.T) {
	deptest.OnlyInternal(t, "slots", "mtd")
}
