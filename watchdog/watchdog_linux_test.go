package watchdog

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenLinuxMissingDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watchdog0")
	dev, err := OpenLinux(path)
	if err == nil {
		dev.Close(CloseArmed)
		t.Fatal("OpenLinux of a missing device succeeded")
	}
	if !strings.Contains(err.Error(), path) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %q does not name %s or is not ErrNotExist", err, path)
	}
}

func TestLinuxDeviceOnRegularFile(t *testing.T) {
	// A regular file stands in for the device: the ioctls fail (ENOTTY) with the
	// path named, and the magic close writes exactly "V".
	path := filepath.Join(t.TempDir(), "fake-watchdog")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dev, err := OpenLinux(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Keepalive(); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "WDIOC_KEEPALIVE") {
		t.Errorf("Keepalive = %v", err)
	}
	if _, err := dev.SetTimeout(0); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetTimeout(0) = %v", err)
	}
	if _, err := dev.SetTimeout(3e9); err == nil {
		t.Error("SetTimeout on a regular file succeeded")
	}
	if _, err := dev.Timeout(); err == nil {
		t.Error("Timeout on a regular file succeeded")
	}
	if err := dev.Close(CloseDisarm); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "V" {
		t.Errorf("magic close wrote %q", b)
	}
	if err := dev.Close(CloseArmed); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	if err := dev.Keepalive(); !errors.Is(err, ErrClosed) {
		t.Errorf("Keepalive after Close = %v", err)
	}

	// CloseArmed writes nothing.
	path2 := filepath.Join(t.TempDir(), "fake-watchdog2")
	if err := os.WriteFile(path2, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dev, err = OpenLinux(path2)
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Close(CloseArmed); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path2); len(b) != 0 {
		t.Errorf("armed close wrote %q", b)
	}
}
