package app

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/recovery/fastboot/fastbootsim"
)

// board is a simulated U-Boot in `fastboot udp`: rootfs_a (4 MiB), mcu (256 KiB), small (1
// MiB), an 8 MiB download buffer.
func board(t *testing.T) *fastbootsim.Device {
	t.Helper()
	d, err := fastbootsim.Start(fastbootsim.Config{MaxDownload: 8 << 20,
		Partitions: map[string]int{"rootfs_a": 4 << 20, "mcu": 256 << 10, "small": 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func fastbootArgs(d *fastbootsim.Device, args ...string) []string {
	return append([]string{"fastboot", "--udp", d.Addr(), "--timeout", "50ms"}, args...)
}

func TestFastbootFlash(t *testing.T) {
	fx := newFixture(t)
	mcu, _ := os.ReadFile(fx.mcu)
	raw, _ := os.ReadFile(fx.raw)
	for _, tc := range []struct {
		name, part, file, flag, line string
		want                         []byte
	}{
		{"aduimg", "rootfs_a", fx.img, "--pub=" + fx.pub, "(aduimg 1.2.0) -> rootfs_a on 127.0.0.1:", fx.payload},
		{"mcuboot", "mcu", fx.mcu, "--pub=" + fx.pub, "(mcuboot 1.0.0+0) -> mcu", mcu},
		{"raw", "small", fx.raw, "--raw", "(raw) -> small", raw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := board(t)
			code, out, errOut := run(t, fastbootArgs(d, tc.flag, "flash", tc.part, tc.file)...)
			if code != 0 || !strings.Contains(out, tc.line) || !strings.Contains(out, "flashed") {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
			if got := d.Partition(tc.part); !bytes.Equal(got[:len(tc.want)], tc.want) {
				t.Fatalf("%s does not hold the payload", tc.part)
			}
		})
	}
}

func TestFastbootFlashJSON(t *testing.T) {
	fx := newFixture(t)
	d := board(t)
	code, out, errOut := run(t, fastbootArgs(d, "--pub", fx.pub, "--json", "flash", "rootfs_a", fx.img)...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var res fastbootResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !res.OK || res.Format != "aduimg" || res.Version != "1.2.0" || res.Size != int64(len(fx.payload)) ||
		res.Partition != "rootfs_a" || res.Device != d.Addr() || res.Stats == nil || res.Stats.Packets < len(fx.payload)/1020 {
		t.Fatalf("result %+v", res)
	}
	if errOut != "" {
		t.Errorf("stderr %q: --json into a pipe shows no progress", errOut)
	}
}

// Nothing is flashed from an image that does not verify: a bad header or key is refused
// before the board is asked anything, a bad chunk ends the download before it.
func TestFastbootRefusesBadImages(t *testing.T) {
	fx := newFixture(t)
	img, _ := os.ReadFile(fx.img)
	h, err := image.ParseHeader(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	badChunk := bytes.Clone(img)
	badChunk[h.Chunks[5].Offset+100] ^= 1
	badSig := bytes.Clone(img)
	badSig[104] ^= 1 // the metadata: signed
	mcu, _ := os.ReadFile(fx.mcu)
	mcu[0x200+1000] ^= 1
	files := map[string][]byte{"chunk.aduimg": badChunk, "sig.aduimg": badSig, "bad.mcuboot": mcu}
	for name, b := range files {
		mustWrite(t, filepath.Join(fx.dir, name), b)
	}
	for _, tc := range []struct {
		name, part, file, flag, msg string
		commands                    []string // what the board was asked
	}{
		{"bad chunk", "rootfs_a", "chunk.aduimg", "--pub=" + fx.pub, "chunk 5", []string{"getvar:max-download-size", "getvar:partition-size:rootfs_a", "download:00300309"}},
		{"bad signature", "rootfs_a", "sig.aduimg", "--pub=" + fx.pub, "bad signature", nil},
		{"unknown key", "rootfs_a", fx.img, "--pub=" + fx.otherPub, "unknown signing key", nil},
		{"tampered MCUboot", "mcu", "bad.mcuboot", "--pub=" + fx.pub, "hash", []string{"getvar:max-download-size", "getvar:partition-size:mcu", "download:00019290"}},
		{"no image", "small", fx.raw, "--pub=" + fx.pub, "neither an aduimg nor an MCUboot image", nil},
		{"too large for the partition", "small", fx.img, "--pub=" + fx.pub, "partition small 1048576", []string{"getvar:max-download-size", "getvar:partition-size:small"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := board(t)
			file := tc.file
			if !filepath.IsAbs(file) {
				file = filepath.Join(fx.dir, file)
			}
			code, _, errOut := run(t, fastbootArgs(d, tc.flag, "flash", tc.part, file)...)
			if code != exitcode.Invalid || !strings.Contains(errOut, tc.msg) {
				t.Fatalf("exit %d, stderr %q; want %d naming %q", code, errOut, exitcode.Invalid, tc.msg)
			}
			if got := d.Commands(); !slices.Equal(got, tc.commands) {
				t.Fatalf("the board was asked %q, want %q (never flash)", got, tc.commands)
			}
			if p := d.Partition(tc.part); !bytes.Equal(p, make([]byte, len(p))) {
				t.Fatalf("%s was written", tc.part)
			}
		})
	}
}

func TestFastbootUsage(t *testing.T) {
	fx := newFixture(t)
	d := board(t)
	for _, args := range [][]string{
		{"fastboot"},
		{"fastboot", "flash", "rootfs_a", fx.img},
		{"fastboot", "--udp", d.Addr(), "flash", "rootfs_a"},
		{"fastboot", "--udp", d.Addr(), "--raw", "--pub", fx.pub, "flash", "rootfs_a", fx.img},
		{"fastboot", "--udp", d.Addr(), "flash", "rootfs_a", fx.img},
		{"fastboot", "--udp", d.Addr(), "--pub", fx.pub, "flash", strings.Repeat("p", 64), fx.img},
		{"fastboot", "--udp", d.Addr(), "getvar"},
		{"fastboot", "--udp", d.Addr(), "reboot", "now"},
	} {
		if code, _, errOut := run(t, args...); code != exitcode.Usage {
			t.Errorf("aduflash %q: exit %d (%s), want %d", args, code, errOut, exitcode.Usage)
		}
	}
	for _, cmd := range d.Commands() {
		if strings.HasPrefix(cmd, "download") {
			t.Fatalf("commands %q: a usage error downloaded", d.Commands())
		}
	}
}

func TestFastbootGetvarReboot(t *testing.T) {
	d := board(t)
	if code, out, errOut := run(t, fastbootArgs(d, "getvar", "version")...); code != 0 || out != "0.4\n" {
		t.Fatalf("getvar version: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ := run(t, fastbootArgs(d, "--json", "getvar", "max-download-size")...)
	var res fastbootResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || res.Value == nil || *res.Value != "0x00800000" {
		t.Fatalf("getvar --json: exit %d, %v, %s", code, err, out)
	}
	if code, _, errOut := run(t, fastbootArgs(d, "getvar", "nonsense")...); code != exitcode.IO || !strings.Contains(errOut, "Variable not implemented") {
		t.Fatalf("getvar nonsense: exit %d, stderr %q; want %d and the board's reason", code, errOut, exitcode.IO)
	}
	if code, out, errOut := run(t, fastbootArgs(d, "reboot")...); code != 0 || out != d.Addr()+": rebooting\n" || !d.Rebooted() {
		t.Fatalf("reboot: exit %d, stdout %q, stderr %q, rebooted %v", code, out, errOut, d.Rebooted())
	}
}

func TestFastbootNoBoard(t *testing.T) {
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	code, out, _ := run(t, "fastboot", "--udp", silent.LocalAddr().String(), "--timeout", "10ms", "--json", "getvar", "version")
	var res fastbootResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != exitcode.IO || res.OK || !strings.Contains(res.Error, "no answer") {
		t.Fatalf("exit %d, %v, %s", code, err, out)
	}
}
