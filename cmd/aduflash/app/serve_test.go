package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/internal/syncbuf"
	"github.com/aduflash/aduflash/recovery/tftpserve"
)

// serveDir is a folder to serve with the fixture's aduimg, MCUboot image and raw file.
func serveDir(t *testing.T, fx *fixture) string {
	t.Helper()
	dir := filepath.Join(fx.dir, "serve")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{fx.img, fx.mcu, fx.raw} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, filepath.Join(dir, filepath.Base(f)), b)
	}
	return dir
}

// --list --json prints the catalog: an aduimg described by its payload.
func TestServeList(t *testing.T) {
	fx := newFixture(t)
	dir := serveDir(t, fx)
	code, stdout, stderr := run(t, "serve", "--list", "--json", "--pub", fx.pub, dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res serveResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if !res.OK || res.Dir != dir || res.Listen != "" || len(res.Files) != 3 {
		t.Fatalf("result %+v", res)
	}
	img := res.Files[2]
	if img.Name != "rootfs.aduimg" || img.Format != "aduimg" || img.Version != "1.2.0" || img.Size != int64(len(fx.payload)) ||
		img.CRC32 != tftpserve.CRC32(crc32.ChecksumIEEE(fx.payload)) || img.SHA256 != sha256.Sum256(fx.payload) {
		t.Errorf("rootfs.aduimg listed as %+v", img)
	}
	if !strings.Contains(stdout, `"crc32": "`+img.CRC32.String()+`"`) {
		t.Errorf("crc32 not printed as hex: %s", stdout)
	}
	// As a table: the CRC-32 as U-Boot prints it, the full SHA-256.
	code, stdout, _ = run(t, "serve", "--list", "--pub", fx.pub, dir)
	if code != 0 || !strings.Contains(stdout, img.CRC32.String()) || !strings.Contains(stdout, img.SHA256.String()) || !strings.HasPrefix(stdout, "NAME ") {
		t.Errorf("exit %d, table:\n%s", code, stdout)
	}
}

func TestServeRefuses(t *testing.T) {
	fx := newFixture(t)
	dir := serveDir(t, fx)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve"}, exitcode.Usage, "expected DIR"},
		{[]string{"serve", dir, dir}, exitcode.Usage, "expected DIR"},
		// --list: a check that failed to refuse would list, not serve forever.
		{[]string{"serve", "--list", "--pub", fx.pub, "--listen", "0.0.0.0:6969", dir}, exitcode.Usage, "--expose-to-network"},
		{[]string{"serve", "--list", "--pub", fx.pub, "--listen", "192.0.2.1:69", dir}, exitcode.Usage, "--expose-to-network"},
		{[]string{"serve", "--pub", fx.pub, "--listen", "6969", dir}, exitcode.Usage, "HOST:PORT"},
		{[]string{"serve", "--list", dir}, exitcode.Usage, "app.signed.bin: tftpserve: a signed image needs a trusted key"},
		{[]string{"serve", "--list", "--pub", fx.otherPub, dir}, exitcode.Invalid, "app.signed.bin: "},
		{[]string{"serve", "--list", "--pub", fx.pub, filepath.Join(dir, "missing")}, exitcode.IO, "missing"},
	} {
		code, _, stderr := run(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("aduflash %q: exit %d, %q; want exit %d, %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

// serve serves until its context ends: a TFTP client gets the payload, the request and the
// transfer are logged, and the exit code is 0.
func TestServeServes(t *testing.T) {
	fx := newFixture(t)
	dir := serveDir(t, fx)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"aduflash", "serve", "--json", "--listen", "127.0.0.1:0", "--pub", fx.pub, dir}, &stdout, &stderr)
	}()
	var res serveResult
	waitFor(t, &stdout, func(s string) bool { return json.Unmarshal([]byte(s), &res) == nil })
	if res.Listen == "" || !strings.HasPrefix(res.Listen, "127.0.0.1:") {
		t.Fatalf("listening on %q", res.Listen)
	}
	c, err := tftp.NewClient(res.Listen)
	if err != nil {
		t.Fatal(err)
	}
	c.SetBlockSize(1468)
	wt, err := c.Receive("rootfs.aduimg", "octet")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := wt.WriteTo(&got); err != nil || !bytes.Equal(got.Bytes(), fx.payload) {
		t.Fatalf("got %d bytes, %v", got.Len(), err)
	}
	if _, err := c.Receive("../etc/passwd", "octet"); err == nil || !strings.Contains(err.Error(), "code: 2") {
		t.Errorf("traversal: %v", err)
	}
	waitFor(t, &stderr, func(s string) bool {
		return strings.Contains(s, "msg=sent") && strings.Contains(s, "file=rootfs.aduimg bytes="+strconv.Itoa(len(fx.payload))) &&
			strings.Contains(s, `msg="request refused"`) && strings.Contains(s, "file=../etc/passwd")
	})
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}

// waitFor waits until ok holds for what a running command wrote to out.
func waitFor(t *testing.T, out *syncbuf.Buffer, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok(out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting; output so far:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
