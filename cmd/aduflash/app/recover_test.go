package app

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
)

// --dry-run verifies the images and prints the session the generator's steps make: the
// network first (the server's port as tftpdstp), each step's commands and the line it must
// print, then the reset recover types itself; no --console is needed and nothing is opened.
func TestRecoverDryRun(t *testing.T) {
	fx, disk := scriptFixture(t)
	code, out, errOut := run(t, "recover", "--dry-run", "--config", fx.cfg, "--pub", fx.pub, "--gpt", disk, "--bank", "B",
		"--ipaddr", "10.0.2.15", "--serverip", "10.0.2.2", "--up", "booting bank B", fx.img)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	sum := sha256.Sum256(fx.payload)
	for _, want := range []string{
		"# step: network\nsetenv ipaddr 10.0.2.15\nsetenv serverip 10.0.2.2\nsetenv tftpdstp 6969\nsetenv tftpwindowsize 16\n# step: prepare\n",
		fmt.Sprintf("# step: load rootfs-b (image rootfs.aduimg, %d bytes)\n", len(fx.payload)),
		fmt.Sprintf("tftpboot 0x40400000 rootfs.aduimg && test \"${filesize}\" = \"%x\"", len(fx.payload)),
		"setenv adu_want " + hex.EncodeToString(sum[:]),
		"# expect: aduflash: ok: check rootfs-b\n",
		"setenv BOOT_ORDER 'B A'",
		"# step: boot\nreset\n# then up to 5m0s for a line with \"booting bank B\"\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "&& reset") {
		t.Errorf("the script's own reset is typed too:\n%s", out)
	}

	code, out, errOut = run(t, "recover", "--dry-run", "--json", "--config", fx.cfg, "--pub", fx.pub, "--gpt", disk,
		"--ipaddr", "dhcp", "--listen", "192.168.50.1:69", "--expose-to-network", fx.img)
	var res recoverResult
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || !res.OK || res.Bank != "A" || len(res.Images) != 1 || res.Images[0].SHA256 != sum {
		t.Fatalf("--json: exit %d, %+v (%v): %s", code, res, err, errOut)
	}
}

func TestRecoverUsage(t *testing.T) {
	// (The baud rates termios has constants for: recover_linux_test.go.)
	fx, disk := scriptFixture(t)
	base := []string{"recover", "--dry-run", "--config", fx.cfg, "--pub", fx.pub, "--gpt", disk}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--ipaddr", "dhcp", "--serverip", "10.0.2.2"}, exitcode.Usage, "IMAGE"},
		{[]string{"--ipaddr", "dhcp", "--serverip", "10.0.2.2", "--dry-run=false", fx.img}, exitcode.Usage, "missing --console"},
		{[]string{"--serverip", "10.0.2.2", fx.img}, exitcode.Usage, "missing --ipaddr"},
		{[]string{"--ipaddr", "10.0.2", "--serverip", "10.0.2.2", fx.img}, exitcode.Usage, `"10.0.2" is not an IPv4 address`},
		{[]string{"--ipaddr", "dhcp", "--serverip", "10.0.2.2", "--up", "", fx.img}, exitcode.Usage, "--up is empty"},
		{[]string{"--ipaddr", "dhcp", fx.img}, exitcode.Usage, "give --serverip"},
		{[]string{"--ipaddr", "dhcp", "--listen", "0.0.0.0:69", "--expose-to-network", fx.img}, exitcode.Usage, "give --serverip"},
		{[]string{"--ipaddr", "dhcp", "--serverip", "10.0.2.2", "--listen", "0.0.0.0:69", fx.img}, exitcode.Usage, "--expose-to-network"},
		{[]string{"--ipaddr", "dhcp", "--serverip", "10.0.2.2", filepath.Join(fx.dir, "missing.aduimg")}, exitcode.IO, "no such file"},
		{[]string{"--ipaddr", "dhcp", "--serverip", "10.0.2.2", fx.otherPub}, exitcode.Invalid, "neither an aduimg nor an MCUboot image"},
	} {
		code, _, errOut := run(t, append(base, c.args...)...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%q: exit %d, %q; want %d with %q", c.args, code, errOut, c.code, c.want)
		}
	}
}
