package tftpserve

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/internal/peers"
)

// tftpHPA runs Debian's tftp-hpa client with commands for the server at addr, and returns
// what it printed. tftp-hpa asks for no options: plain RFC 1350, 512-byte blocks.
func tftpHPA(t *testing.T, addr string, mode string, commands ...string) string {
	t.Helper()
	bin, err := exec.LookPath("tftp")
	if err != nil {
		peers.Missing(t, "tftp not found (apt-get install tftp-hpa)")
	}
	args := []string{"-m", mode, "127.0.0.1", fmt.Sprint(portOf(t, addr)), "-c"}
	cmd := exec.Command(bin, append(args, commands...)...)
	cmd.Dir = t.TempDir()
	out, _ := cmd.CombinedOutput() // tftp-hpa exits 0 after an error packet too: the output tells
	return string(out)
}

// Debian's tftp-hpa client gets the verified payload, and the server's refusals with their
// codes: a missing file, a traversal, netascii (its default mode), a write.
func TestTFTPHPAClient(t *testing.T) {
	fx := newFixture(t, 1<<20+1)
	addr, l := serve(t, &Server{Catalog: fx.open(t)})
	fx.getWithTFTPHPA(t, addr)
	if r := l.lastRequest(t); len(r.Options) != 0 {
		t.Errorf("tftp-hpa asked for options %v", r.Options)
	}
	out := filepath.Join(t.TempDir(), "got")
	local := filepath.Join(t.TempDir(), "local")
	if err := os.WriteFile(local, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode     string
		commands []string
		want     string
	}{
		{"binary", []string{"get", "missing.bin", out}, `Error code 1: file not found: "missing.bin"`},
		{"binary", []string{"get", "../../../../../etc/passwd", out}, "Error code 2: access violation"},
		{"binary", []string{"get", "sub/../../x", out}, "Error code 2: access violation"},
		{"ascii", []string{"get", "rootfs.aduimg", out}, `Error code 4: illegal TFTP operation: only octet (binary) mode is served: mode "netascii"`},
		{"binary", []string{"put", local, "rootfs.aduimg"}, "Error code 2: access violation: this server is read-only"},
	} {
		if msg := tftpHPA(t, addr, tc.mode, tc.commands...); !strings.Contains(msg, tc.want) {
			t.Errorf("tftp -m %s -c %q: %q, want %q", tc.mode, tc.commands, msg, tc.want)
		}
	}
	if got, err := os.ReadFile(filepath.Join(fx.dir, "rootfs.aduimg")); err != nil || bytes.Equal(got, []byte("x")) {
		t.Errorf("the served file was written to (%v)", err)
	}
}

// A file of more than 65535 blocks of 512 bytes: the block number rolls over to 0, as
// tftp-hpa (and U-Boot) expect.
func TestTFTPHPABlockRollOver(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 33 MiB in 512-byte blocks")
	}
	fx := newFixture(t, 33<<20+77)
	addr, _ := serve(t, &Server{Catalog: fx.open(t)})
	fx.getWithTFTPHPA(t, addr)
}

// getWithTFTPHPA gets rootfs.aduimg from the server at addr with tftp-hpa, in binary mode,
// and checks that it is the payload.
func (fx *fixture) getWithTFTPHPA(t *testing.T, addr string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "got")
	if msg := tftpHPA(t, addr, "binary", "get", "rootfs.aduimg", out); msg != "" {
		t.Fatalf("tftp: %s", msg)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, fx.payload) {
		t.Fatalf("tftp got %d bytes (%v), not the %d of the payload", len(got), err, len(fx.payload))
	}
}

// curl's TFTP client asks for blksize and tsize: it gets the size up front and the blocks
// it asked for.
func TestCurlClient(t *testing.T) {
	bin, err := exec.LookPath("curl")
	if err != nil {
		peers.Missing(t, "curl not found (apt-get install curl)")
	}
	fx := newFixture(t, 1<<20+1)
	addr, l := serve(t, &Server{Catalog: fx.open(t)})
	for _, blksize := range []string{"1468", "65464"} {
		out := filepath.Join(t.TempDir(), "got")
		cmd := exec.Command(bin, "-sS", "--tftp-blksize", blksize, "-o", out, "tftp://"+addr+"/rootfs.aduimg")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("curl: %v: %s", err, msg)
		}
		if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, fx.payload) {
			t.Fatalf("curl got %d bytes (%v), not the payload", len(got), err)
		}
		if r := l.lastRequest(t); r.Options["blksize"] != blksize || r.Options["tsize"] != "0" {
			t.Errorf("curl asked for %v", r.Options)
		}
	}
	// curl exits 68 for TFTP's "file not found" (its CURLE_TFTP_NOTFOUND).
	cmd := exec.Command(bin, "-sS", "-o", filepath.Join(t.TempDir(), "x"), "tftp://"+addr+"/missing.bin")
	if msg, err := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 68 {
		t.Errorf("curl of a missing file: %v: %s", err, msg)
	}
}
