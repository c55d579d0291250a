// Package azuritetest runs Azurite, Microsoft's Azure Storage emulator (npm package
// azurite), as a real Blob Storage peer for tests: its blob service alone, on 127.0.0.1 and
// a port of its choosing, keeping its data in a test folder, with telemetry off (it would
// otherwise try to reach the internet). A test without azurite-blob on PATH skips (or fails
// under ADUFLASH_REQUIRE_PEERS=1, see internal/peers); scripts/test installs it with npm.
package azuritetest

import (
	"bufio"
	"io"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/peers"
)

// The well-known development account every Azurite has (public, documented by Microsoft).
const (
	Account = "devstoreaccount1"
	Key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Blob is a running Azurite blob service.
type Blob struct {
	// Host is its host:port; AccountURL the development account's endpoint on it.
	Host       string
	AccountURL string
}

// ConnectionString is the development account's connection string for the blob endpoint
// accountURL (Blob.AccountURL, or a proxy in front of it).
func ConnectionString(accountURL string) string {
	return "DefaultEndpointsProtocol=http;AccountName=" + Account + ";AccountKey=" + Key + ";BlobEndpoint=" + accountURL + ";"
}

var listening = regexp.MustCompile(`successfully listens on (http://(127\.0\.0\.1:\d+))`)

// Start runs azurite-blob for t, stopped when t ends.
func Start(t testing.TB) *Blob {
	t.Helper()
	bin, err := exec.LookPath("azurite-blob")
	if err != nil {
		peers.Missing(t, "azurite-blob (npm install -g azurite): %v", err)
		return nil
	}
	cmd := exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", "0", "--location", t.TempDir(),
		"--disableTelemetry", "--skipApiVersionCheck")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("azurite-blob: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var last string
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
				_, _ = io.Copy(io.Discard, out)
				return
			}
			last = sc.Text()
		}
		found <- []string{last}
	}()
	select {
	case m := <-found:
		if len(m) == 1 {
			t.Fatalf("azurite-blob ended before it listened: %s", m[0])
		}
		return &Blob{Host: m[2], AccountURL: m[1] + "/" + Account}
	case <-time.After(60 * time.Second):
		t.Fatal("azurite-blob did not say where it listens within 60 s")
	}
	return nil
}
