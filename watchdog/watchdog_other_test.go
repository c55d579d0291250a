//go:build !linux

package watchdog

import (
	"errors"
	"strings"
	"testing"
)

func TestOpenLinuxUnsupported(t *testing.T) {
	_, err := OpenLinux("/dev/watchdog")
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "/dev/watchdog") {
		t.Fatalf("OpenLinux = %v", err)
	}
}
