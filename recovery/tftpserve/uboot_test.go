package tftpserve

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/internal/ubootqemu"
)

// uboot is the peer U-Boot with a network under QEMU, on an SD card whose environment runs
// commands at boot.
type uboot struct {
	bin, disk string
}

func newUBoot(t testing.TB) *uboot {
	t.Helper()
	if testing.Short() {
		t.Skip("boots U-Boot under QEMU")
	}
	u := &uboot{bin: ubootqemu.RequireNet(t), disk: filepath.Join(t.TempDir(), "sd.img")}
	if err := ubootqemu.CreateDisk(u.disk, ubootqemu.DefaultDiskSize); err != nil {
		t.Fatal(err)
	}
	return u
}

// UBootLoadAddr is where the tests load files: RAM starts at 0x40000000 on QEMU's virt
// machine, and U-Boot relocates itself to its top.
const uBootLoadAddr = "0x40400000"

// run boots U-Boot with bootcmd set to cmds (joined with "; ", then poweroff), reaching the
// host's TFTP port on 10.0.2.2, and returns its console.
func (u *uboot) run(t testing.TB, port int, timeout time.Duration, cmds ...string) string {
	t.Helper()
	l := ubootqemu.Layout()
	env, err := ubootenv.New(ubootenv.Options{Format: ubootenv.Format{Size: int(l.Size)}, HasDefaults: true},
		&ubootenv.FileStorage{Path: u.disk, Offset: l.Offset}, &ubootenv.FileStorage{Path: u.disk, Offset: l.OffsetRedund})
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"bootdelay": "0", "ipaddr": "10.0.2.15", "netmask": "255.255.255.0", "serverip": "10.0.2.2",
		"tftpdstp": fmt.Sprint(port), "loadaddr": uBootLoadAddr,
		"bootcmd": strings.Join(append(cmds, "poweroff"), "; "),
	}
	if err := env.Update(vars, nil); err != nil {
		t.Fatal(err)
	}
	w, flush := ubootqemu.LogWriter(t, "uboot| ")
	defer flush()
	out, err := ubootqemu.Boot(context.Background(), ubootqemu.Config{UBoot: u.bin, Disk: u.disk, Network: true, Timeout: timeout, Log: w})
	if err != nil {
		t.Fatalf("U-Boot: %v", err)
	}
	return out
}

// crcLine is what U-Boot's crc32 prints: "crc32 for 40400000 ... 404fffff ==> 1a2b3c4d".
var crcLine = regexp.MustCompile(`crc32 for [0-9a-f]+ \.\.\. [0-9a-f]+ ==> ([0-9a-f]{8})`)

// U-Boot loads the verified payload of an aduimg and an MCUboot image with tftpboot, and its
// crc32 of what it loaded is the catalog's; a chunk gone bad since the catalog was made, a
// missing file and a name out of the folder are TFTP errors U-Boot does not retry.
func TestUBoot(t *testing.T) {
	u := newUBoot(t)
	fx := newFixture(t, 3<<20+123)
	fx.signAduimg(t, "bad.aduimg", fx.payload[:1<<20], fx.key)
	c := fx.open(t)
	flipByte(t, filepath.Join(fx.dir, "bad.aduimg"), -5000)
	addr, l := serve(t, &Server{Catalog: c})

	out := u.run(t, portOf(t, addr), 90*time.Second,
		"tftpboot ${loadaddr} rootfs.aduimg", "crc32 ${loadaddr} ${filesize}",
		"tftpboot ${loadaddr} app.signed.bin", "crc32 ${loadaddr} ${filesize}",
		"tftpboot ${loadaddr} bad.aduimg", "echo bad: $?",
		"tftpboot ${loadaddr} missing.bin", "echo missing: $?",
		"tftpboot ${loadaddr} ../../etc/passwd", "echo outside: $?")
	checkLoaded(t, out, c, "rootfs.aduimg", "app.signed.bin")
	for _, want := range []string{"TFTP error: 'bad.aduimg: aduimg: chunk ", "bad: 1", "TFTP error: 'file not found: \"missing.bin\"' (1)", "missing: 1",
		"TFTP error: 'access violation", "(2)", "outside: 1", "Not retrying..."} {
		if !strings.Contains(out, want) {
			t.Errorf("U-Boot did not print %q", want)
		}
	}
	// U-Boot asked for the options this build sends (no tsize: CONFIG_TFTP_TSIZE is off).
	for _, r := range l.requests {
		if r.Name == "rootfs.aduimg" && (r.Options["blksize"] != "1468" || r.Options["timeout"] != "5") {
			t.Errorf("U-Boot's request: %+v", r)
		}
	}
}

// checkLoaded checks that U-Boot loaded each of names, in order, and that the crc32 it printed
// of each is the catalog's.
func checkLoaded(t *testing.T, out string, c *Catalog, names ...string) {
	t.Helper()
	crcs := crcLine.FindAllStringSubmatch(out, -1)
	if len(crcs) != len(names) {
		t.Fatalf("U-Boot printed %d crc32 lines, want %d", len(crcs), len(names))
	}
	for i, name := range names {
		f, err := c.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if crcs[i][1] != f.CRC32.String() {
			t.Errorf("%s: U-Boot's crc32 %s, the catalog's %s", name, crcs[i][1], f.CRC32)
		}
		if want := fmt.Sprintf("Bytes transferred = %d ", f.Size); !strings.Contains(out, want) {
			t.Errorf("%s: U-Boot did not say %q", name, want)
		}
	}
}

// U-Boot with tftpwindowsize 16 asks for a window, and loads the payload in windows of 16
// blocks (acknowledging every 16th) to the catalog's crc32.
func TestUBootWindow(t *testing.T) {
	u := newUBoot(t)
	fx := newFixture(t, 3<<20+123)
	c := fx.open(t)
	addr, l := serve(t, &Server{Catalog: c, Window: 16})
	out := u.run(t, portOf(t, addr), 90*time.Second,
		"setenv tftpwindowsize 16", "tftpboot ${loadaddr} rootfs.aduimg", "crc32 ${loadaddr} ${filesize}")
	checkLoaded(t, out, c, "rootfs.aduimg")
	if r := l.lastRequest(t); r.Options["windowsize"] != "16" {
		t.Errorf("U-Boot's request: %+v", r)
	}
}

func portOf(t testing.TB, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
