package tftpserve

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/testpayload"
)

// A read request gets the verified bytes the catalog describes, with tsize and the blksize
// asked for.
func TestServe(t *testing.T) {
	fx := newFixture(t, 1<<20+5)
	addr, l := serve(t, &Server{Catalog: fx.open(t)})
	for _, tc := range []struct {
		name    string
		want    []byte
		blksize int
	}{
		{"rootfs.aduimg", fx.payload, 1468},
		{"rootfs.aduimg", fx.payload, 0},
		{"app.signed.bin", fx.mcu, 8192},
		{"sub/boot.cmd", fx.raw, 0},
	} {
		got, tsize, err := get(t, addr, tc.name, tc.blksize)
		if err != nil {
			t.Fatalf("get %s: %v", tc.name, err)
		}
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%s: got %d bytes, not the %d served", tc.name, len(got), len(tc.want))
		}
		if tsize != int64(len(tc.want)) {
			t.Errorf("%s: tsize %d, want %d", tc.name, tsize, len(tc.want))
		}
		req := l.lastRequest(t)
		if req.Err != nil || req.File == nil || req.File.Name != tc.name || req.Options["tsize"] != "0" {
			t.Errorf("request logged as %+v", req)
		}
	}
	for i, err := range l.endErrors(t, 4) {
		if err != nil {
			t.Errorf("transfer %d ended with %v", i, err)
		}
	}
	if n := l.bytes["rootfs.aduimg"]; n != 2*int64(len(fx.payload)) {
		t.Errorf("progress counted %d bytes of rootfs.aduimg, want %d", n, 2*len(fx.payload))
	}
}

// Refused requests get their TFTP error code from the server's port, and a log entry that
// says why; none reaches a file.
func TestRefusals(t *testing.T) {
	fx := newFixture(t, 10<<10)
	addr, l := serve(t, &Server{Catalog: fx.open(t), Timeout: 100 * time.Millisecond})
	long := strings.Repeat("x", 600)
	for _, tc := range []struct {
		what   string
		packet []byte
		code   int
		want   error
	}{
		{"write", rrq(opWRQ, "rootfs.aduimg", "octet"), codeAccess, ErrReadOnly},
		{"write of a new file", rrq(opWRQ, "new", "octet", "tsize", "10"), codeAccess, ErrReadOnly},
		{"missing", rrq(opRRQ, "missing.aduimg", "octet"), codeNotFound, ErrNotFound},
		{"traversal", rrq(opRRQ, "../../../../etc/passwd", "octet"), codeAccess, ErrOutside},
		{"traversal in a folder", rrq(opRRQ, "sub/../../x", "octet"), codeAccess, ErrOutside},
		{"absolute", rrq(opRRQ, "/etc/passwd", "octet"), codeAccess, ErrOutside},
		{"backslash", rrq(opRRQ, `sub\boot.cmd`, "octet"), codeAccess, ErrOutside},
		{"netascii", rrq(opRRQ, "rootfs.aduimg", "netascii"), codeIllegal, ErrMode},
		{"mail", rrq(opRRQ, "rootfs.aduimg", "mail"), codeIllegal, ErrMode},
		{"no mode", rrq(opRRQ, "rootfs.aduimg"), codeIllegal, ErrMalformed},
		{"no final NUL", []byte("\x00\x01rootfs.aduimg\x00octet"), codeIllegal, ErrMalformed},
		{"option without value", rrq(opRRQ, "rootfs.aduimg", "octet", "blksize"), codeIllegal, ErrMalformed},
		{"longer than pin/tftp reads", rrq(opRRQ, "rootfs.aduimg", "octet", "x", long), codeIllegal, ErrMalformed},
	} {
		code, msg, err := tftpError(exchange(t, addr, tc.packet))
		if err != nil || code != tc.code {
			t.Errorf("%s: answer code %d %q (%v), want code %d", tc.what, code, msg, err, tc.code)
		}
		if req := l.lastRequest(t); !errors.Is(req.Err, tc.want) || req.File != nil {
			t.Errorf("%s: logged %+v, want %v", tc.what, req, tc.want)
		}
		if strings.Contains(msg, fx.dir) {
			t.Errorf("%s: the answer %q names the served folder", tc.what, msg)
		}
	}
	// Octet in any case is octet: the first block comes.
	if a := exchange(t, addr, rrq(opRRQ, "sub/boot.cmd", "OCTET")); !bytes.Equal(a, append([]byte{0, 3, 0, 1}, fx.raw...)) {
		t.Errorf("OCTET: answer %q", a)
	}
}

// A chunk that fails its check, after the catalog was made, ends the transfer with a TFTP
// error before any of its bytes; the client never gets a complete file.
func TestCorruptChunkEndsTransfer(t *testing.T) {
	fx := newFixture(t, 1<<20)
	c := fx.open(t)
	flipByte(t, filepath.Join(fx.dir, "rootfs.aduimg"), -200) // in the last frame
	addr, l := serve(t, &Server{Catalog: c})
	got, _, err := get(t, addr, "rootfs.aduimg", 1468)
	if err == nil || !strings.Contains(err.Error(), "code: 1") || !strings.Contains(err.Error(), "rootfs.aduimg: aduimg: chunk") {
		t.Fatalf("get = %d bytes, %v; want TFTP error 1 naming the chunk", len(got), err)
	}
	if len(got) >= len(fx.payload)-chunkSize+1 {
		t.Errorf("the client got %d bytes: some of the bad chunk went out", len(got))
	}
	if !bytes.Equal(got, fx.payload[:len(got)]) {
		t.Errorf("the bytes sent before the error are not the payload's")
	}
	if ends := l.endErrors(t, 1); ends[0] == nil {
		t.Errorf("the transfer's meter ended without an error")
	}
}

// A file changed since the catalog was made (same size, other bytes) is never served whole:
// its last byte is held until the SHA-256 matches the catalog, and it does not.
func TestChangedFileIsNotServed(t *testing.T) {
	fx := newFixture(t, 10<<10)
	c := fx.open(t)
	changed := bytes.ToUpper(fx.raw)
	fx.write(t, "sub/boot.cmd", changed)
	addr, _ := serve(t, &Server{Catalog: c})
	got, _, err := get(t, addr, "sub/boot.cmd", 0)
	if err == nil || !strings.Contains(err.Error(), "changed since the catalog") {
		t.Fatalf("get = %q, %v; want a TFTP error: changed", got, err)
	}
	if len(got) >= len(changed) {
		t.Errorf("the client got all %d bytes", len(got))
	}
	// Another size is refused before the first byte.
	fx.write(t, "sub/boot.cmd", append(changed, 'x'))
	if got, _, err = get(t, addr, "sub/boot.cmd", 0); err == nil || len(got) != 0 {
		t.Fatalf("get = %q, %v; want a TFTP error", got, err)
	}
}

// A whole block size of bytes, then a changed last one: the block that holds it waits for the
// sum, so the client sees no complete transfer.
func TestChangedLastByteOfFullBlock(t *testing.T) {
	fx := newFixture(t, 10<<10)
	b := bytes.Repeat([]byte{'a'}, 1024)
	fx.write(t, "two-blocks", b)
	c := fx.open(t)
	b[len(b)-1] = 'b'
	fx.write(t, "two-blocks", b)
	addr, _ := serve(t, &Server{Catalog: c})
	got, _, err := get(t, addr, "two-blocks", 512)
	if err == nil {
		t.Fatalf("get = %d bytes, no error", len(got))
	}
	if len(got) > 512 {
		t.Errorf("the client got %d bytes", len(got))
	}
}

// A file cut short since the catalog was made ends the transfer with an error.
func TestTruncatedImageEndsTransfer(t *testing.T) {
	fx := newFixture(t, 1<<20)
	c := fx.open(t)
	path := filepath.Join(fx.dir, "rootfs.aduimg")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()-1000); err != nil {
		t.Fatal(err)
	}
	addr, _ := serve(t, &Server{Catalog: c})
	got, _, err := get(t, addr, "rootfs.aduimg", 1468)
	if err == nil || len(got) >= len(fx.payload) {
		t.Fatalf("get = %d bytes, %v; want a TFTP error before the end", len(got), err)
	}
}

// guard never lets a failed read look like the end of a file: pin/tftp sends a bare
// io.ErrUnexpectedEOF's partial block as the last one.
func TestGuardWrapsUnexpectedEOF(t *testing.T) {
	g := &guard{ctx: context.Background(), r: io.MultiReader(strings.NewReader("ab"), errReader{io.ErrUnexpectedEOF}), name: "f"}
	b, err := io.ReadAll(g)
	if string(b) != "ab" || err == io.ErrUnexpectedEOF || !errors.Is(err, io.ErrUnexpectedEOF) || !strings.HasPrefix(err.Error(), "f: ") {
		t.Fatalf("ReadAll = %q, %v", b, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (&guard{ctx: ctx, r: strings.NewReader("x"), name: "f"}).Read(make([]byte, 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// The test hook changes bytes after their verification: the client gets them changed, and
// nothing in the server notices (the board's check must).
func TestTamper(t *testing.T) {
	fx := newFixture(t, 100<<10)
	const at = 5000
	srv := &Server{Catalog: fx.open(t), Tamper: func(name string, r io.Reader) io.Reader {
		if name != "rootfs.aduimg" {
			return r
		}
		return testpayload.Flip(r, at)
	}}
	addr, _ := serve(t, srv)
	got, _, err := get(t, addr, "rootfs.aduimg", 1468)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(fx.payload)
	want[at] ^= 0xff
	if !bytes.Equal(got, want) {
		t.Fatal("the client did not get the payload with the one byte flipped")
	}
}

// Ending the context stops the server: Serve returns, the port is closed, and a transfer
// under way ends with an error.
func TestServeStops(t *testing.T) {
	fx := newFixture(t, 4<<20)
	c := fx.open(t)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	ended := make(chan error, 1)
	srv := &Server{Catalog: c, Timeout: 100 * time.Millisecond, Progress: func(Transfer) Meter { close(started); return endMeter(ended) }}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()

	// A client that reads one block and then stalls, so the transfer is under way.
	client, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.WriteTo(rrq(opRRQ, "rootfs.aduimg", "octet"), conn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	<-started
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return")
	}
	if err := <-ended; err == nil {
		t.Error("the stalled transfer ended without an error")
	}
	if _, err := conn.WriteTo([]byte{0}, conn.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the port is still open: %v", err)
	}
}

type endMeter chan error

func (endMeter) Add(int64)       {}
func (m endMeter) End(err error) { m <- err }
