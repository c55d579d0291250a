package app

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/hub"
)

// A data folder whose signer has keys of another size than the service's (made by an older
// aduhub) is served, with a warning that says what to do.
func TestServeWarnsOfSmallSignerKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hub")
	if _, err := hub.LoadOrCreateSigner(filepath.Join(dir, signerDir), nil, rootKID, signingKID, 2048); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, dir)
	s.stop(t)
	if e := s.err.String(); !strings.Contains(e, "level=WARN") || !strings.Contains(e, "the update signer's keys are not what the service uses") ||
		!strings.Contains(e, "bits=2048 want=3072") {
		t.Fatalf("no warning:\n%s", e)
	}
}
