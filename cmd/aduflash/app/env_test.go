package app

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/internal/peers"
	"github.com/aduflash/aduflash/mtd/mtdsim"
)

// envFixture is an env area in a file (erased, 0xff) and its fw_env.config.
type envFixture struct {
	dir, img, cfg string
}

func newEnvFixture(t *testing.T, cfgLines ...string) *envFixture {
	t.Helper()
	d := t.TempDir()
	fx := &envFixture{dir: d, img: filepath.Join(d, "env.img"), cfg: filepath.Join(d, "fw_env.config")}
	mustWrite(t, fx.img, bytes.Repeat([]byte{0xff}, 0x20000))
	var b strings.Builder
	for _, l := range cfgLines {
		b.WriteString(strings.ReplaceAll(l, "IMG", fx.img) + "\n")
	}
	mustWrite(t, fx.cfg, []byte(b.String()))
	return fx
}

const (
	redundantCfg = "IMG 0x0 0x4000\nIMG 0x8000 0x4000"
	singleCfg    = "IMG 0x0 0x4000"
)

// env runs "aduflash env SUB -c cfg --lock ” ARGS...".
func (fx *envFixture) env(t *testing.T, sub string, args ...string) (int, string, string) {
	t.Helper()
	return run(t, append([]string{"env", sub, "-c", fx.cfg, "--lock", ""}, args...)...)
}

// copyAt decodes the copy at off of the fixture's image.
func (fx *envFixture) copyAt(t *testing.T, off int64, redundant bool) (ubootenv.Block, error) {
	t.Helper()
	data, err := os.ReadFile(fx.img)
	if err != nil {
		t.Fatal(err)
	}
	return ubootenv.Decode(data[off:off+0x4000], ubootenv.Format{Size: 0x4000, Redundant: redundant})
}

func TestEnvSetPrintRoundTrip(t *testing.T) {
	fx := newEnvFixture(t, redundantCfg)
	// Blank area: print fails, set writes a first valid copy.
	if code, _, stderr := fx.env(t, "print"); code != 1 || !strings.Contains(stderr, "no valid environment copy") {
		t.Fatalf("print on blank: exit %d %q", code, stderr)
	}
	code, _, stderr := fx.env(t, "set", "bootcount=0", "upgrade_available=1", "bootcmd=run distro_bootcmd")
	if code != 0 || !strings.Contains(stderr, "starting from an empty environment") {
		t.Fatalf("set on blank: exit %d %q", code, stderr)
	}
	b, err := fx.copyAt(t, 0, true)
	if err != nil || b.Flags != 1 || len(b.Vars) != 3 {
		t.Fatalf("copy 1 after first write: %+v %v", b, err)
	}
	code, stdout, _ := fx.env(t, "print")
	if code != 0 || stdout != "bootcmd=run distro_bootcmd\nbootcount=0\nupgrade_available=1\n" {
		t.Fatalf("print: exit %d %q", code, stdout)
	}
	// Redundant alternation: copy 2 with flags 2, then copy 1 with flags 3.
	if code, _, stderr := fx.env(t, "set", "bootcount=1"); code != 0 {
		t.Fatalf("set: %d %s", code, stderr)
	}
	if b, err := fx.copyAt(t, 0x8000, true); err != nil || b.Flags != 2 {
		t.Fatalf("copy 2: %+v %v", b, err)
	}
	// fw_setenv-style arguments: NAME VALUE... joined with spaces; NAME alone deletes.
	if code, _, stderr := fx.env(t, "set", "bootargs", "console=ttyS0,115200", "root=/dev/mmcblk0p2"); code != 0 {
		t.Fatalf("set fw_setenv style: %d %s", code, stderr)
	}
	if b, err := fx.copyAt(t, 0, true); err != nil || b.Flags != 3 {
		t.Fatalf("copy 1 again: %+v %v", b, err)
	}
	if code, stdout, _ := fx.env(t, "print", "-n", "bootargs"); code != 0 || stdout != "console=ttyS0,115200 root=/dev/mmcblk0p2\n" {
		t.Fatalf("print -n: %d %q", code, stdout)
	}
	if code, _, _ := fx.env(t, "set", "upgrade_available"); code != 0 {
		t.Fatal("delete")
	}
	code, stdout, stderr = fx.env(t, "print", "bootcount", "upgrade_available", "bootcmd")
	if code != 1 || stdout != "bootcount=1\nbootcmd=run distro_bootcmd\n" || stderr != "## Error: \"upgrade_available\" not defined\n" {
		t.Fatalf("print with a missing name: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	// --script from a file and from stdin: one transaction, one copy written.
	script := filepath.Join(fx.dir, "script")
	mustWrite(t, script, []byte("# changes\n\nbootcount=7\r\nbootcmd=\nnoequals\nnew=a=b\n"))
	before, _ := os.ReadFile(fx.img)
	if code, _, stderr := fx.env(t, "set", "--script", script); code != 0 {
		t.Fatalf("script: %d %s", code, stderr)
	}
	after, _ := os.ReadFile(fx.img)
	if bytes.Equal(before[:0x4000], after[:0x4000]) == bytes.Equal(before[0x8000:0xc000], after[0x8000:0xc000]) {
		t.Fatal("script did not write exactly one copy")
	}
	if code, stdout, _ := fx.env(t, "print"); code != 0 || stdout != "bootargs=console=ttyS0,115200 root=/dev/mmcblk0p2\nbootcount=7\nnew=a=b\n" {
		t.Fatalf("after script: %d %q", code, stdout)
	}
	// Invalid input and usage errors.
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"print", "-n"}, 2},
		{[]string{"print", "-n", "a", "b"}, 2},
		{[]string{"set"}, 2},
		{[]string{"set", "--script", script, "a=b"}, 2},
		{[]string{"set", "=x"}, 1},
	} {
		if code, _, stderr := fx.env(t, tc.args[0], tc.args[1:]...); code != tc.code {
			t.Errorf("%q: exit %d, want %d (%s)", tc.args, code, tc.code, stderr)
		}
	}
	if code, _, _ := run(t, "env", "print", "-c", filepath.Join(fx.dir, "nope")); code != 3 {
		t.Errorf("missing config: exit %d", code)
	}
}

func TestEnvSetCorruptAndDefaults(t *testing.T) {
	fx := newEnvFixture(t, singleCfg)
	if code, _, _ := fx.env(t, "set", "a=1", "b=2"); code != 0 {
		t.Fatal("set")
	}
	// Corrupt the only copy: set starts from the -f defaults and writes a valid copy.
	f, _ := os.OpenFile(fx.img, os.O_RDWR, 0)
	f.WriteAt([]byte("garbage"), 10)
	f.Close()
	defs := filepath.Join(fx.dir, "defaults")
	mustWrite(t, defs, []byte("# defaults\nbootdelay=3\nbaudrate=115200\n"))
	if code, _, stderr := fx.env(t, "print", "-f", defs); code != 0 || !strings.Contains(stderr, "default environment") {
		t.Fatalf("print -f: %d %s", code, stderr)
	}
	// The corrupt copy is not blank: -f alone does not overwrite it, --force does.
	corrupt, _ := os.ReadFile(fx.img)
	code, _, stderr := fx.env(t, "set", "-f", defs, "bootdelay=0")
	if now, _ := os.ReadFile(fx.img); code != 1 || !bytes.Equal(now, corrupt) || !strings.Contains(stderr, "copy 1 has a bad CRC") {
		t.Fatalf("set -f over a corrupt copy: exit %d %s", code, stderr)
	}
	code, _, stderr = fx.env(t, "set", "--force", "-f", defs, "bootdelay=0")
	if code != 0 || !strings.Contains(stderr, "--force overwrote it, starting from the default environment") {
		t.Fatalf("set --force -f: %d %s", code, stderr)
	}
	if code, stdout, _ := fx.env(t, "print"); code != 0 || stdout != "baudrate=115200\nbootdelay=0\n" {
		t.Fatalf("print: %d %q", code, stdout)
	}
	if b, err := fx.copyAt(t, 0, false); err != nil || len(b.Vars) != 2 {
		t.Fatalf("%+v %v", b, err)
	}
}

// TestEnvSetRefusesMisreadEnv: a good env of 0x20000 bytes, a config that says 0x4000. set
// must not replace it with an empty one (fw_setenv refuses too): it says what env doctor
// finds, and writes only with --force. A blank area (all 0x00 here; all 0xff in
// TestEnvSetPrintRoundTrip) is still initialised.
func TestEnvSetRefusesMisreadEnv(t *testing.T) {
	fx := newEnvFixture(t, "IMG 0x0 0x20000")
	if code, _, stderr := fx.env(t, "set", "bootcmd=run distro_bootcmd", "bootdelay=3"); code != 0 {
		t.Fatal(stderr)
	}
	good, _ := os.ReadFile(fx.img)
	mustWrite(t, fx.cfg, []byte(fx.img+" 0x0 0x4000\n"))
	finding := "copy 1: a valid env of size 0x20000 is at 0x0 on " + fx.img + ": the config says 0x4000"
	doctorHint := "'aduflash env doctor -c " + fx.cfg + "' shows every check"

	code, _, stderr := fx.env(t, "set", "bootdelay=9")
	if now, _ := os.ReadFile(fx.img); !bytes.Equal(now, good) {
		t.Fatalf("set wrote over the misread env (exit %d, %s)", code, stderr)
	}
	if code != 1 || !strings.Contains(stderr, "refusing to write") || !strings.Contains(stderr, finding) ||
		!strings.Contains(stderr, doctorHint) || !strings.Contains(stderr, "--force") {
		t.Fatalf("set: exit %d %s", code, stderr)
	}
	if code, _, stderr := fx.env(t, "print"); code != 1 || !strings.Contains(stderr, finding) || !strings.Contains(stderr, doctorHint) {
		t.Fatalf("print: exit %d %s", code, stderr)
	}
	if code, _, stderr := fx.env(t, "set", "--force", "bootdelay=9"); code != 0 || !strings.Contains(stderr, "--force overwrote it") {
		t.Fatalf("set --force: exit %d %s", code, stderr)
	}
	if code, stdout, _ := fx.env(t, "print"); code != 0 || stdout != "bootdelay=9\n" {
		t.Fatalf("print after --force: exit %d %q", code, stdout)
	}

	zeroed := newEnvFixture(t, singleCfg)
	mustWrite(t, zeroed.img, make([]byte, 0x4000))
	if code, _, stderr := zeroed.env(t, "set", "bootdelay=9"); code != 0 || !strings.Contains(stderr, "starting from an empty environment") {
		t.Fatalf("set on a zeroed area: exit %d %s", code, stderr)
	}

	// The peer: fw_setenv refuses the same config (it has no default env to start from).
	needEnvPeers(t)
	if _, err := os.Stat("/etc/u-boot-initial-env"); err == nil {
		t.Skip("/etc/u-boot-initial-env exists: fw_setenv would start from it")
	}
	mustWrite(t, fx.img, good)
	if out, err := exec.Command("/usr/bin/fw_setenv", "-c", fx.cfg, "bootdelay", "9").CombinedOutput(); err == nil {
		t.Fatalf("fw_setenv wrote: %s", out)
	}
	if now, _ := os.ReadFile(fx.img); !bytes.Equal(now, good) {
		t.Fatal("fw_setenv changed the env")
	}
}

func needEnvPeers(t *testing.T) {
	t.Helper()
	for _, p := range []string{"/usr/bin/fw_printenv", "/usr/bin/fw_setenv", "/usr/bin/mkenvimage"} {
		if _, err := os.Stat(p); err != nil {
			peers.Missing(t, "%s not found (apt-get install -y --no-install-recommends libubootenv-tool u-boot-tools)", p)
		}
	}
}

func runPeer(t *testing.T, stdin []byte, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, bytes.NewReader(stdin)
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, errb.String())
	}
	return out.String()
}

func TestEnvInteropLibubootenv(t *testing.T) {
	needEnvPeers(t)
	for _, cfg := range []string{singleCfg, redundantCfg} {
		fx := newEnvFixture(t, cfg)
		// aduflash writes, fw_printenv reads.
		if code, _, stderr := fx.env(t, "set", "bootcount=0", "bootargs=console=ttyS0 quiet"); code != 0 {
			t.Fatalf("set: %s", stderr)
		}
		if got := runPeer(t, nil, "/usr/bin/fw_printenv", "-c", fx.cfg); got != "bootargs=console=ttyS0 quiet\nbootcount=0\n" {
			t.Fatalf("fw_printenv after aduflash env set: %q", got)
		}
		// fw_setenv writes (arguments and script), both printers agree byte for byte.
		runPeer(t, nil, "/usr/bin/fw_setenv", "-c", fx.cfg, "upgrade_available", "1")
		runPeer(t, []byte("bootcount=3\nbootargs=\nmulti=a b  c\n"), "/usr/bin/fw_setenv", "-c", fx.cfg, "-s", "-")
		want := runPeer(t, nil, "/usr/bin/fw_printenv", "-c", fx.cfg)
		code, got, stderr := fx.env(t, "print")
		if code != 0 || got != want {
			t.Fatalf("aduflash env print %q (exit %d, %s), fw_printenv %q", got, code, stderr, want)
		}
		// And aduflash again on top of fw_setenv's copy.
		if code, _, _ := fx.env(t, "set", "bootcount", "4"); code != 0 {
			t.Fatal("set after fw_setenv")
		}
		if got := runPeer(t, nil, "/usr/bin/fw_printenv", "-c", fx.cfg, "-n", "bootcount"); got != "4\n" {
			t.Fatalf("fw_printenv -n: %q", got)
		}
	}
}

func TestEnvMkimageMatchesMkenvimage(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "env.txt")
	mustWrite(t, in, []byte("bootcmd=run distro_bootcmd\n# comment\n\nscript=echo a\\\necho b\nlast=no newline"))
	empty := filepath.Join(dir, "empty.txt")
	mustWrite(t, empty, nil)
	// The reference images are also checked without the peer: decode what we built.
	out := filepath.Join(dir, "a.bin")
	if code, _, stderr := run(t, "env", "mkimage", "-s", "0x2000", "-r", "-o", out, in); code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
	data, _ := os.ReadFile(out)
	b, err := ubootenv.Decode(data, ubootenv.Format{Size: 0x2000, Redundant: true})
	if err != nil || b.Flags != 1 || len(b.Vars) != 3 || b.Vars[1].Value != "echo a\necho b" || data[len(data)-1] != 0xff {
		t.Fatalf("%+v %v", b, err)
	}
	if code, _, _ := run(t, "env", "mkimage", "-s", "0x20", "-o", out, in); code != 1 {
		t.Errorf("too large: exit %d", code)
	}
	if code, _, _ := run(t, "env", "mkimage", "-o", out, in); code != 2 {
		t.Errorf("no size: exit %d", code)
	}
	for _, bad := range [][]string{{"-s", "-8192"}, {"-s", "0x"}, {"-s", "8k"}, {"-s", "1_0"}, {"-s", "0x2000", "-p", "256"}, {"-s", "0x2000", "-p", "-1"}} {
		if code, _, _ := run(t, append(append([]string{"env", "mkimage"}, bad...), "-o", out, in)...); code != 2 {
			t.Errorf("%q: exit %d, want 2", bad, code)
		}
	}
	if code, _, stderr := run(t, "env", "mkimage", "-s", "020000", "-p", "0377", "-o", out, in); code != 0 {
		t.Errorf("C octal size and pad: exit %d %s", code, stderr)
	} else if data, _ := os.ReadFile(out); len(data) != 0x2000 || data[len(data)-1] != 0xff {
		t.Errorf("C octal size and pad: %d bytes, last %#x", len(data), data[len(data)-1])
	}
	needEnvPeers(t)
	for _, tc := range []struct {
		input string
		args  []string
	}{
		{in, []string{"-s", "0x2000"}},
		{in, []string{"-s", "0x2000", "-r"}},
		{in, []string{"-s", "0x4000", "-b"}},
		{in, []string{"-s", "8192", "-p", "0"}},
		{in, []string{"-s", "0x2000", "-r", "-b", "-p", "0x5a"}},
		{empty, []string{"-s", "0x100"}},
	} {
		want := filepath.Join(dir, "want.bin")
		runPeer(t, nil, "/usr/bin/mkenvimage", append(append([]string{}, tc.args...), "-o", want, tc.input)...)
		if code, _, stderr := run(t, append(append([]string{"env", "mkimage"}, tc.args...), "-o", out, tc.input)...); code != 0 {
			t.Fatalf("%q: %d %s", tc.args, code, stderr)
		}
		w, _ := os.ReadFile(want)
		g, _ := os.ReadFile(out)
		if !bytes.Equal(w, g) {
			t.Errorf("%q %s: differs from mkenvimage", tc.args, filepath.Base(tc.input))
		}
	}
}

func doctor(t *testing.T, fx *envFixture) (int, doctorReport, string) {
	t.Helper()
	code, stdout, stderr := fx.env(t, "doctor", "--json")
	var rep doctorReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v: %q %q", err, stdout, stderr)
	}
	if rep.ExitCode != code {
		t.Errorf("report exit code %d, process %d", rep.ExitCode, code)
	}
	var msgs []string
	for _, f := range rep.Findings {
		msgs = append(msgs, f.Severity+": "+f.Message)
	}
	return code, rep, strings.Join(msgs, "\n")
}

func TestEnvDoctor(t *testing.T) {
	fx := newEnvFixture(t, redundantCfg)
	fx.env(t, "set", "a=1")
	fx.env(t, "set", "b=2")
	code, rep, msgs := doctor(t, fx)
	if code != 0 || !rep.Healthy || rep.Current != 2 || len(rep.Copies) != 2 || !rep.Copies[0].CRCOK || rep.Copies[1].Variables != 2 || *rep.Copies[1].Flags != 2 || msgs != "" {
		t.Fatalf("healthy: exit %d %+v\n%s", code, rep, msgs)
	}
	if code, out, _ := fx.env(t, "doctor"); code != 0 || !strings.Contains(out, "healthy: copy 2 is current") {
		t.Errorf("text: %d %s", code, out)
	}
	// Copy 1 torn: a warning, still healthy.
	f, _ := os.OpenFile(fx.img, os.O_RDWR, 0)
	f.WriteAt([]byte("torn"), 20)
	f.Close()
	code, rep, msgs = doctor(t, fx)
	if code != 0 || !rep.Healthy || rep.Copies[0].CRCOK || !strings.Contains(msgs, "warning: copy 1 has a bad CRC") {
		t.Fatalf("torn copy 1: exit %d\n%s", code, msgs)
	}

	// Wrong size: a 0x4000 env, the config says 0x2000.
	fx = newEnvFixture(t, singleCfg)
	fx.env(t, "set", "a=1")
	mustWrite(t, fx.cfg, []byte(fx.img+" 0x0 0x2000\n"))
	if code, _, msgs := doctor(t, fx); code != 1 || !strings.Contains(msgs, "copy 1: a valid env of size 0x4000 is at 0x0 on "+fx.img+": the config says 0x2000") {
		t.Fatalf("wrong size: exit %d\n%s", code, msgs)
	}
	// Wrong offset: the env is at 0x0, the config says 0x10000.
	mustWrite(t, fx.cfg, []byte(fx.img+" 0x10000 0x4000\n"))
	if code, _, msgs := doctor(t, fx); code != 1 || !strings.Contains(msgs, "a valid env (1 variables) is at offset 0 on") && !strings.Contains(msgs, "is at offset 0x0 on") {
		t.Fatalf("wrong offset: exit %d\n%s", code, msgs)
	}
	// The other header, and a big-endian CRC, at the configured place.
	for _, tc := range []struct{ flags, want string }{
		{"-r", "is a redundant (flags byte after the CRC) env of size 0x4000, the config describes a single (one device) env"},
		{"-b", "the CRC is valid when read big-endian"},
	} {
		txt := filepath.Join(fx.dir, "env.txt")
		mustWrite(t, txt, []byte("a=1\n"))
		if code, _, stderr := run(t, "env", "mkimage", "-s", "0x4000", tc.flags, "-o", fx.img, txt); code != 0 {
			t.Fatal(stderr)
		}
		mustWrite(t, fx.cfg, []byte(fx.img+" 0x0 0x4000\n"))
		if code, _, msgs := doctor(t, fx); code != 1 || !strings.Contains(msgs, tc.want) {
			t.Fatalf("mkimage %s: exit %d\n%s", tc.flags, code, msgs)
		}
	}
	// mtdblock path: explained, not just refused.
	mustWrite(t, fx.cfg, []byte("/dev/mtdblock7 0x0 0x4000\n"))
	if code, _, msgs := doctor(t, fx); code != 1 || !strings.Contains(msgs, "use the character device /dev/mtd7") {
		t.Fatalf("mtdblock: exit %d\n%s", code, msgs)
	}
	// Both copies at the same place.
	mustWrite(t, fx.cfg, []byte(fx.img+" 0x0 0x4000\n"+fx.img+" 0 0x4000\n"))
	if code, _, msgs := doctor(t, fx); code != 1 || !strings.Contains(msgs, "both copies at the same place") {
		t.Fatalf("same place: exit %d\n%s", code, msgs)
	}
	// Unreadable device: exit 3.
	mustWrite(t, fx.cfg, []byte(filepath.Join(fx.dir, "missing.img")+" 0x0 0x4000\n"))
	if code, _, msgs := doctor(t, fx); code != 3 {
		t.Fatalf("unreadable: exit %d\n%s", code, msgs)
	}
}

// NAND layout checks run on the simulator.
func TestEnvDoctorNAND(t *testing.T) {
	const es = 0x20000
	sim, err := mtdsim.NewNAND(16*es, es, 0x800, mtdsim.WithFactoryBad(2))
	if err != nil {
		t.Fatal(err)
	}
	info := sim.Info()
	check := func(cfgText string, want string, wantCode int) {
		t.Helper()
		cfg, err := ubootenv.ParseConfig("fw_env.config", []byte(cfgText))
		if err != nil {
			t.Fatal(err)
		}
		var devs []*doctorDevice
		for _, d := range cfg.Devices {
			devs = append(devs, mtdDoctorDevice(d.Path, sim, info, d))
		}
		rep := &doctorReport{}
		diagnose(cfg, devs, rep)
		var msgs []string
		for _, f := range rep.Findings {
			msgs = append(msgs, f.Message)
		}
		if rep.ExitCode != wantCode || !strings.Contains(strings.Join(msgs, "\n"), want) {
			t.Errorf("%q: exit %d, findings:\n%s\nwant %q", cfgText, rep.ExitCode, strings.Join(msgs, "\n"), want)
		}
	}
	check("/dev/mtd1 0x40000 0x4000\n", "a bad block lies under the env", 1)
	check("/dev/mtd1 0x0 0x4000 0x20000 1\n/dev/mtd1 0x20000 0x4000 0x20000 1\n", "no spare block", 1)
	check("/dev/mtd1 0x0 0x4000 0x10000\n", "not a multiple of the erase size", 1)
	check("/dev/mtd1 0x0 0x4000\n/dev/mtd1 0x4000 0x4000\n", "share an erase block", 1)
}
