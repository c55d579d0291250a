package ubootscript

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/internal/gptdisk"
	"github.com/aduflash/aduflash/internal/peers"
	"github.com/aduflash/aduflash/internal/ubootqemu"
	"github.com/aduflash/aduflash/recovery/console"
	"github.com/aduflash/aduflash/slots/slotstest"
)

// The SD card of the real-U-Boot tests: the peer's redundant env at 1 MiB and 1.125 MiB
// (ubootqemu.Layout), then the banks' root file systems as GPT partitions made by sgdisk.
const (
	sdSize      = 16 << 20
	rootfsAByte = 2 << 20 // rootfs_a: blocks 4096..8191
	rootfsBByte = 6 << 20 // rootfs_b: blocks 12288..16383
)

const realTOML = `
[slots]
banks = ["A", "B"]
` + slotstest.RootfsA + slotstest.RootfsB + `
` + ubootqemu.UBootTOML + `
[bootloader]
type = "u-boot"
preset = "aduflash"
`

// TestRealUBootRecovers: a bricked board (bank A garbage, both env copies erased) sources the
// generated script image over TFTP (Debian's tftpd-hpa) in real U-Boot. Afterwards bank A
// holds the payload (the last block's tail zeros) and both env copies hold a fresh
// environment with bank A primary. With one byte of the served image flipped, U-Boot's check
// fails and nothing is written: bank A and the env are as they were.
func TestRealUBootRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("boots real U-Boot under QEMU")
	}
	uboot := ubootqemu.RequireNet(t)
	for _, tool := range []struct{ bin, pkg string }{{"sgdisk", "gdisk"}, {"in.tftpd", "tftpd-hpa"}} {
		if _, err := exec.LookPath(tool.bin); err != nil {
			peers.Missing(t, "%s not found (apt-get install %s)", tool.bin, tool.pkg)
		}
	}
	if uboot == "" || t.Skipped() {
		return
	}
	rng := rand.New(rand.NewPCG(1, 2))
	payload := make([]byte, 1<<20+300) // not whole blocks: the script pads the last one
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	t.Run("recovers", func(t *testing.T) {
		b := newBricked(t, uboot, payload)
		transcript := b.recover(t, nil)
		for _, want := range []string{console.DonePrefix + "locate rootfs-a", console.DonePrefix + "check rootfs-a", console.DonePrefix + "verify rootfs-a", console.DonePrefix + "env"} {
			if !strings.Contains(transcript, want) {
				t.Fatalf("the transcript lacks %q", want)
			}
		}
		got := b.read(t, rootfsAByte, int64(len(payload)+212))
		if !bytes.Equal(got[:len(payload)], payload) || !bytes.Equal(got[len(payload):], make([]byte, 212)) {
			t.Fatal("bank A's partition does not hold the payload followed by zeros up to the block's end")
		}
		b.checkFreshEnv(t, "A")
	})
	t.Run("corrupted transfer", func(t *testing.T) {
		b := newBricked(t, uboot, payload)
		before := b.read(t, 0, sdSize)
		transcript := b.recover(t, func(served []byte) { served[len(served)/2] ^= 0x20 })
		if !strings.Contains(transcript, console.FailPrefix+"check rootfs-a") {
			t.Fatalf("U-Boot's check did not fail")
		}
		for _, never := range []string{"blocks written", "Saving Environment", "resetting", console.DonePrefix + "write", console.DonePrefix + "env"} {
			if strings.Contains(transcript, never) {
				t.Fatalf("after the failed check the script went on: %q", never)
			}
		}
		if after := b.read(t, 0, sdSize); !bytes.Equal(after, before) {
			t.Fatal("the SD card changed although the image failed its check")
		}
	})
}

// bricked is the SD card of a board that no longer boots, and the script that recovers it.
type bricked struct {
	uboot, disk, dir string
	payload          []byte
	script           *Script
}

// newBricked makes the SD card (GPT by sgdisk; bank A garbage; env copies erased to 0xff)
// and generates the script for it from the card's GPT.
func newBricked(t *testing.T, uboot string, payload []byte) *bricked {
	dir := t.TempDir()
	b := &bricked{uboot: uboot, disk: filepath.Join(dir, "sd.img"), dir: filepath.Join(dir, "tftp"), payload: payload}
	if err := ubootqemu.CreateDisk(b.disk, sdSize); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sgdisk", "-o", "-n", "1:4096:8191", "-c", "1:rootfs_a", "-n", "2:12288:16383", "-c", "2:rootfs_b", b.disk).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	l := ubootqemu.Layout()
	b.writeAt(t, bytes.Repeat([]byte{0xff}, int(l.OffsetRedund+l.Size-l.Offset)), l.Offset)
	b.writeAt(t, bytes.Repeat([]byte("garbage!"), 4<<20/8), rootfsAByte)

	f, err := os.Open(b.disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := gptdisk.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	board := testBoard(t, realTOML)
	board.GPT, board.GPTName = tab, "sd.img"
	im, err := ImageOf("rootfs.img", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	if b.script, err = Generate(board, []Write{{"rootfs-a", im}}, Options{}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *bricked) writeAt(t *testing.T, p []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(b.disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
}

func (b *bricked) read(t *testing.T, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(b.disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := make([]byte, n)
	if _, err := f.ReadAt(p, off); err != nil {
		t.Fatal(err)
	}
	return p
}

// recover serves the script image and the payload (changed by spoil, if given) with
// in.tftpd, boots U-Boot, stops autoboot, points it at the server and sources the script;
// it returns the transcript once U-Boot reset (the script's end) or exited the script.
func (b *bricked) recover(t *testing.T, spoil func([]byte)) string {
	scr, err := b.script.Image(ImageOptions{Name: "aduflash recovery", Arch: "arm64", Time: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	served := bytes.Clone(b.payload)
	if spoil != nil {
		spoil(served)
	}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"recover.scr": scr, "rootfs.img": served} {
		if err := os.WriteFile(filepath.Join(b.dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	port := startTFTPD(t, b.dir)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logw, flush := ubootqemu.LogWriter(t, "u-boot: ")
	defer flush()
	s, err := ubootqemu.Start(ctx, ubootqemu.Config{UBoot: b.uboot, Disk: b.disk, Network: true, Log: logw})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Interrupt(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"setenv ipaddr 10.0.2.15", "setenv netmask 255.255.255.0", "setenv serverip 10.0.2.2",
		"setenv tftpdstp " + strconv.Itoa(port), "tftpboot ${scriptaddr} recover.scr"} {
		if _, err := s.Run(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	from := s.Len()
	if err := s.Send("source ${scriptaddr}"); err != nil {
		t.Fatal(err)
	}
	if spoil != nil {
		// The script exits at the failed check and U-Boot shows its prompt again.
		if _, err := s.WaitFor(ctx, console.FailPrefix, from); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WaitFor(ctx, "\n"+ubootqemu.Prompt, from); err != nil {
			t.Fatal(err)
		}
		return s.Console()[from:]
	}
	if err := s.Wait(ctx); err != nil {
		t.Fatalf("QEMU: %v", err)
	}
	transcript := s.Console()[from:]
	if strings.Contains(transcript, console.FailPrefix) || !strings.Contains(transcript, "resetting ...") {
		t.Fatalf("the script did not run to its reset")
	}
	return transcript
}

// startTFTPD runs Debian's in.tftpd serving dir on a UDP socket of 127.0.0.1 that the test
// binds first and hands over as its standard input (as inetd does), so no other program can
// take the port in between; it returns the port.
func startTFTPD(t *testing.T, dir string) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	sock, err := pc.(*net.UDPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	args := []string{"--timeout", "600"}
	if os.Geteuid() == 0 {
		args = append(args, "--secure", "--user", "root") // chroot into dir
	} else {
		args = append(args, "--secure")
	}
	cmd := exec.Command("in.tftpd", append(args, dir)...)
	cmd.Stdin = sock
	peers.Start(t, "in.tftpd", cmd)
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// checkFreshEnv reads both env copies with ubootenv: each has a good CRC and the preset's
// fresh variables for bank (U-Boot's default env around them), and the state model reads bank
// primary with nothing pending.
func (b *bricked) checkFreshEnv(t *testing.T, bank string) {
	l := ubootqemu.Layout()
	f := ubootenv.Format{Size: int(l.Size), Redundant: true}
	var copies [2][]ubootenv.Var
	for i, off := range []int64{l.Offset, l.OffsetRedund} {
		blk, err := ubootenv.Decode(b.read(t, off, l.Size), f)
		if err != nil {
			t.Fatalf("env copy %d: %v", i+1, err)
		}
		copies[i] = blk.Vars
	}
	want, err := bootloader.FreshVars(bootloader.UBootConfig{}, bootloader.Bank(bank))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, v := range copies[0] {
		vars[v.Name] = v.Value
	}
	for k, v := range want {
		if vars[k] != v {
			t.Errorf("env %s=%q, want %q", k, vars[k], v)
		}
	}
	if vars["bootcmd"] == "" || vars["adu_ok"] != "" || vars["adu_want"] != "" {
		t.Errorf("the env is not U-Boot's default one with the preset's variables: bootcmd=%q adu_ok=%q", vars["bootcmd"], vars["adu_ok"])
	}
	if len(copies[0]) != len(copies[1]) {
		t.Errorf("the env copies differ: %d and %d variables", len(copies[0]), len(copies[1]))
	}
	cfg := filepath.Join(t.TempDir(), "fw_env.config")
	if err := os.WriteFile(cfg, []byte(ubootqemu.FwEnvConfig(b.disk)), 0o644); err != nil {
		t.Fatal(err)
	}
	noLock := ""
	bl, closeFn, err := bootloader.Open(bootloader.Config{Type: bootloader.TypeUBoot, EnvConfig: cfg, LockFile: &noLock})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	st, err := bl.State()
	if err != nil || string(st.Primary) != bank || st.Pending != "" || len(st.Bad) > 0 {
		t.Fatalf("state after the recovery: %+v, %v; want bank %s primary", st, err, bank)
	}
}
