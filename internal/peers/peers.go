// Package peers finds the real tools that interop tests run against (imgtool, and later
// fw_printenv, QEMU, mosquitto, ...) and decides what a test does when one is missing: it
// skips with a message naming what to install, except in CI (CI=true, as GitHub Actions,
// GitLab and Azure Pipelines set it; or ADUFLASH_REQUIRE_PEERS=1, which scripts/test sets
// there), where a missing peer fails the test so that CI cannot pass by skipping.
package peers

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Missing skips t, or fails it when peers are required, with a message naming the peer.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("ADUFLASH_REQUIRE_PEERS") == "1" || os.Getenv("CI") == "true" {
		t.Fatalf("required peer missing (CI=true or ADUFLASH_REQUIRE_PEERS=1): "+format, args...)
	}
	t.Skipf("peer missing, skipping: "+format, args...)
}

// SharedDir returns ../shared beside the repository (the folder with spec/ and peers/), or
// "" when it cannot be found.
func SharedDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	// file is <repo>/internal/peers/peers.go
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared")
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return filepath.Clean(dir)
	}
	return ""
}

// Imgtool returns the command line that runs the unmodified imgtool 2.4.0 of
// ../shared/peers with Debian's python3 (which has the modules it needs), or calls Missing.
func Imgtool(t testing.TB) []string {
	t.Helper()
	imgtool.once.Do(func() { imgtool.cmd, imgtool.err = findImgtool() })
	if imgtool.err != nil {
		Missing(t, "%v", imgtool.err)
		return nil
	}
	return imgtool.cmd
}

// imgtool caches the look-up: checking Python's modules takes a tenth of a second.
var imgtool struct {
	once sync.Once
	cmd  []string
	err  error
}

func findImgtool() ([]string, error) {
	shared := SharedDir()
	if shared == "" {
		return nil, errors.New("../shared (with peers/imgtool-2.4.0) is not beside the repository")
	}
	script := filepath.Join(shared, "peers", "imgtool-2.4.0", "imgtool.py")
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("imgtool: %w", err)
	}
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		return nil, fmt.Errorf("imgtool needs Debian's %s (apt-get install python3)", py)
	}
	check := exec.Command(py, "-c", "import cryptography, click, intelhex, cbor2, yaml")
	if out, err := check.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("imgtool's Python modules are missing (apt-get install python3-cryptography python3-click python3-intelhex python3-cbor2 python3-yaml): %v: %s", err, bytes.TrimSpace(out))
	}
	return []string{py, script}, nil
}

// BootSerial returns the bs_host program of ../shared/peers/mcuboot-serial (MCUboot v2.4.0's
// serial recovery as a host program on a pty), built once per test binary by the peer's own
// script with its default key, and that key's PEM file (the private ECDSA P-256 key whose
// public half is compiled in); or calls Missing when gcc, the sources or imgtool's Python
// modules are absent.
func BootSerial(t testing.TB) (bin, key string) {
	t.Helper()
	bootSerial.once.Do(func() { bootSerial.bin, bootSerial.key, bootSerial.err = buildBootSerial() })
	if bootSerial.err != nil {
		Missing(t, "%v", bootSerial.err)
		return "", ""
	}
	return bootSerial.bin, bootSerial.key
}

var bootSerial struct {
	once     sync.Once
	bin, key string
	err      error
}

func buildBootSerial() (string, string, error) {
	shared := SharedDir()
	if shared == "" {
		return "", "", errors.New("../shared (with peers/mcuboot-serial) is not beside the repository")
	}
	dir := filepath.Join(shared, "peers", "mcuboot-serial")
	script, key := filepath.Join(dir, "build-bootserial.sh"), filepath.Join(dir, "mcuboot-v2.4.0", "root-ec-p256.pem")
	for _, p := range []string{script, key} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("mcuboot-serial: %w", err)
		}
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		return "", "", errors.New("bs_host needs gcc (apt-get install gcc)")
	}
	if _, err := findImgtool(); err != nil {
		return "", "", fmt.Errorf("bs_host's build runs imgtool: %w", err)
	}
	out, err := os.MkdirTemp("", "aduflash-bs_host-")
	if err != nil {
		return "", "", err
	}
	bin := filepath.Join(out, "bs_host")
	if b, err := exec.Command("sh", script, filepath.Join(dir, "mcuboot-v2.4.0"), key, bin).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("building bs_host: %v: %s", err, bytes.TrimSpace(b))
	}
	return bin, key, nil
}

// MCUmgr returns the path of Apache's mcumgr CLI in ../shared/peers/mcuboot-serial, or calls
// Missing.
func MCUmgr(t testing.TB) string {
	t.Helper()
	shared := SharedDir()
	if shared == "" {
		Missing(t, "../shared (with peers/mcuboot-serial/mcumgr) is not beside the repository")
		return ""
	}
	p := filepath.Join(shared, "peers", "mcuboot-serial", "mcumgr")
	if _, err := os.Stat(p); err != nil {
		Missing(t, "Apache's mcumgr CLI: %v", err)
		return ""
	}
	return p
}

// Start starts a peer's process for t, keeping its standard error, and kills it when t ends,
// logging what it wrote there under name.
func Start(t testing.TB, name string, cmd *exec.Cmd) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if stderr.Len() > 0 {
			t.Logf("%s: %s", name, stderr.String())
		}
	})
}
