package tftpserve

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/image/testkey"
	"github.com/aduflash/aduflash/internal/testpayload"
)

// fixture is a folder to serve: an aduimg image, an MCUboot image, a raw file and one in a
// subfolder, all signed by key.
type fixture struct {
	dir      string
	key      crypto.Signer
	keyring  *image.Keyring
	payload  []byte // rootfs.aduimg's payload
	mcu, raw []byte
}

const chunkSize = 64 << 10

func newFixture(t testing.TB, payloadSize int64) *fixture {
	t.Helper()
	key, kr := testkey.New(t)
	fx := &fixture{dir: t.TempDir(), key: key, keyring: kr}
	fx.payload = testpayload.Bytes(1, payloadSize)
	fx.signAduimg(t, "rootfs.aduimg", fx.payload, key)
	var err error
	if fx.mcu, err = mcuboot.Sign(fx.payload[:min(len(fx.payload), 50<<10)], key, mcuboot.SignOptions{
		Version: mcuboot.Version{Major: 1, Minor: 2}, HeaderSize: 0x200, PadHeader: true}); err != nil {
		t.Fatal(err)
	}
	fx.write(t, "app.signed.bin", fx.mcu)
	fx.raw = []byte("setenv bootcmd 'echo hello'\n")
	fx.write(t, "sub/boot.cmd", fx.raw)
	return fx
}

func (fx *fixture) write(t testing.TB, name string, b []byte) {
	t.Helper()
	p := filepath.Join(fx.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (fx *fixture) signAduimg(t testing.TB, name string, payload []byte, key crypto.Signer) {
	t.Helper()
	f, err := os.Create(filepath.Join(fx.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, err := image.Sign(f, bytes.NewReader(payload), int64(len(payload)), key, image.SignOptions{
		Version: "1.2.0", SlotClass: "rootfs", ChunkSize: chunkSize, Compression: image.CompressZstd, Created: time.Unix(1e9, 0)}); err != nil {
		t.Fatal(err)
	}
}

func (fx *fixture) open(t testing.TB) *Catalog {
	t.Helper()
	c, err := Open(context.Background(), fx.dir, Options{Keyring: fx.keyring})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// log records what a server reports: requests, and the end of each transfer.
type log struct {
	mu       sync.Mutex
	requests []Request
	ends     []error
	bytes    map[string]int64
}

func (l *log) request(r Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests = append(l.requests, r)
}

func (l *log) lastRequest(t testing.TB) Request {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.requests) == 0 {
		t.Fatal("no request logged")
	}
	return l.requests[len(l.requests)-1]
}

type logMeter struct {
	l    *log
	name string
}

func (m logMeter) Add(n int64) {
	m.l.mu.Lock()
	defer m.l.mu.Unlock()
	m.l.bytes[m.name] += n
}

func (m logMeter) End(err error) {
	m.l.mu.Lock()
	defer m.l.mu.Unlock()
	m.l.ends = append(m.l.ends, err)
}

// endErrors waits for n transfers to have ended and returns how.
func (l *log) endErrors(t testing.TB, n int) []error {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		l.mu.Lock()
		ends := append([]error(nil), l.ends...)
		l.mu.Unlock()
		if len(ends) >= n {
			return ends
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d transfers ended, want %d", len(ends), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serve starts srv (its Catalog set) on a loopback port, with its log, and stops it when the
// test ends. It returns the address and the log.
func serve(t testing.TB, srv *Server) (string, *log) {
	t.Helper()
	l := &log{bytes: map[string]int64{}}
	srv.OnRequest = l.request
	srv.Progress = func(tr Transfer) Meter { return logMeter{l: l, name: tr.File.Name} }
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return conn.LocalAddr().String(), l
}

// get fetches name with pin/tftp's client (blksize 0: none asked) and returns the bytes, the
// tsize the server announced (-1: none) and the transfer's error.
func get(t testing.TB, addr, name string, blksize int) ([]byte, int64, error) {
	t.Helper()
	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	c.SetRetries(2)
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(true)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, -1, err
	}
	tsize := int64(-1)
	if n, ok := wt.(tftp.IncomingTransfer).Size(); ok {
		tsize = n
	}
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	return buf.Bytes(), tsize, err
}

// exchange sends one raw datagram to addr and returns the first answer, from any port.
func exchange(t testing.TB, addr string, p []byte) []byte {
	t.Helper()
	c, to := loopbackUDP(t, addr)
	if _, err := c.WriteTo(p, to); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 70000)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer to %q: %v", p, err)
	}
	return buf[:n]
}

// loopbackUDP opens a UDP socket on 127.0.0.1, closed when the test ends, and resolves addr
// (the server's).
func loopbackUDP(t testing.TB, addr string) (*net.UDPConn, *net.UDPAddr) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c, to
}

// rrq builds a request packet.
func rrq(op byte, fields ...string) []byte {
	p := []byte{0, op}
	for _, f := range fields {
		p = append(append(p, f...), 0)
	}
	return p
}

// tftpError decodes an ERROR packet.
func tftpError(p []byte) (code int, msg string, err error) {
	if len(p) < 5 || p[0] != 0 || p[1] != opERROR || p[len(p)-1] != 0 {
		return 0, "", fmt.Errorf("not an ERROR packet: %q", p)
	}
	return int(p[2])<<8 | int(p[3]), string(p[4 : len(p)-1]), nil
}
