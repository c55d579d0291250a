package app

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/recovery/console"
)

// recoveryScript is the recovery the generator (recovery/ubootscript) will write for the
// QEMU board: load the rootfs of bank A, check its CRC-32 in U-Boot before anything is
// written, write it at its raw offset of mmc 0, write a fresh environment whose boot command
// says which bank it boots.
func recoveryScript(payload []byte, blockA int) string {
	blocks := (len(payload) + 511) / 512
	return strings.Join([]string{
		"# step: load rootfs A",
		fmt.Sprintf("# image: rootfs.img %d", len(payload)),
		"tftpboot ${loadaddr} rootfs.img",
		"hash crc32 ${loadaddr} ${filesize}",
		fmt.Sprintf("# expect: ==> %08x", crc32.ChecksumIEEE(payload)),
		"# step: write rootfs A",
		"mmc dev 0",
		fmt.Sprintf("mmc write ${loadaddr} %#x %#x", blockA, blocks),
		fmt.Sprintf("# expect: %d blocks written: OK", blocks),
		"# step: environment",
		"env default -a -f",
		"setenv boot_bank A",
		"setenv bootcmd 'echo booting bank ${boot_bank}; poweroff'",
		"saveenv",
		"",
	}, "\n")
}

// examples/recover-qemu.txt, the script of docs/recovery.md's walkthrough, is this
// recovery for a 3 MiB image.
func TestRecoverExampleScript(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "..", "..", "examples", "recover-qemu.txt"))
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 3<<20)
	got := strings.ReplaceAll(string(example), "@CRC@", fmt.Sprintf("%08x", crc32.ChecksumIEEE(payload)))
	if want := recoveryScript(payload, 0x1000); got != want {
		t.Fatalf("examples/recover-qemu.txt:\n%s\nwant:\n%s", got, want)
	}
}

func writeScript(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "recover.txt")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// --dry-run prints the whole session in the script format (which reads back as the same
// steps) and opens nothing: no --console is needed.
func TestRecoverDryRun(t *testing.T) {
	payload := bytes.Repeat([]byte("rootfs"), 1000)
	script := writeScript(t, recoveryScript(payload, 0x1000))
	code, out, errOut := run(t, "recover", "--dry-run", "--ipaddr", "10.0.2.15", "--serverip", "10.0.2.2", "--tftp-port", "6969",
		"--script", script, "--up", "booting bank A", "--log", filepath.Join(t.TempDir(), "no.log"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"# step: network\nsetenv ipaddr 10.0.2.15\nsetenv serverip 10.0.2.2\nsetenv tftpdstp 6969\nsetenv netretry no\n",
		fmt.Sprintf("# step: load rootfs A\n# image: rootfs.img 6000\ntftpboot ${loadaddr} rootfs.img\nhash crc32 ${loadaddr} ${filesize}\n# expect: ==> %08x", crc32.ChecksumIEEE(payload)),
		"setenv bootcmd 'echo booting bank ${boot_bank}; poweroff'\nsaveenv\n",
		"# step: boot\nreset\n# then up to 5m0s for a line with \"booting bank A\"\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	steps, err := console.ParseScript(strings.NewReader(out))
	if err != nil || len(steps) != 5 || steps[1].Name != "load rootfs A" || steps[1].Size != 6000 {
		t.Fatalf("the dry run does not read back as the steps: %v, %+v", err, steps)
	}
}

func TestRecoverUsage(t *testing.T) {
	// (The baud rates termios has constants for: recover_linux_test.go.)
	script := writeScript(t, "# step: a\ntrue\n")
	bad := writeScript(t, "# step: a\n# image: x -3\ntrue\n")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"recover", "--ipaddr", "dhcp", "--serverip", "10.0.2.2", "--script", script}, exitcode.Usage, "missing --console"},
		{[]string{"recover", "--dry-run", "--serverip", "10.0.2.2", "--script", script}, exitcode.Usage, "missing --ipaddr"},
		{[]string{"recover", "--dry-run", "--ipaddr", "10.0.2", "--serverip", "10.0.2.2", "--script", script}, exitcode.Usage, `"10.0.2" is not an IPv4 address`},
		{[]string{"recover", "--dry-run", "--ipaddr", "dhcp", "--serverip", "10.0.2.2", "--script", script, "--up", ""}, exitcode.Usage, "--up is empty"},
		{[]string{"recover", "--dry-run", "--ipaddr", "dhcp", "--serverip", "10.0.2.2", "--script", bad}, exitcode.Invalid, "line 2"},
		{[]string{"recover", "--dry-run", "--ipaddr", "dhcp", "--serverip", "10.0.2.2", "--script", script + ".missing"}, exitcode.IO, "no such file"},
	} {
		code, _, errOut := run(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%q: exit %d, %q; want %d with %q", c.args, code, errOut, c.code, c.want)
		}
	}
}
