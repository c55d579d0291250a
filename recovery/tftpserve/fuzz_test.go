package tftpserve

import (
	"bytes"
	"errors"
	"io/fs"
	"strings"
	"testing"
)

// FuzzLookup: whatever name a client sends, Lookup returns only a file of the catalog under
// that exact name, and refuses as outside every name with an absolute start, a "..", "." or
// empty element, or a backslash.
func FuzzLookup(f *testing.F) {
	fx := newFixture(f, 4<<10)
	c := fx.open(f)
	for _, s := range []string{"rootfs.aduimg", "sub/boot.cmd", "../etc/passwd", "/etc/passwd", `sub\boot.cmd`, "sub/../rootfs.aduimg", "", ".", "a//b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		file, err := c.Lookup(name)
		outside := name == "" || name == "." || strings.HasPrefix(name, "/") || strings.Contains(name, `\`) ||
			strings.Contains("/"+name+"/", "/../") || strings.Contains("/"+name+"/", "/./") || strings.Contains("/"+name+"/", "//")
		switch {
		case err == nil && (file.Name != name || !fs.ValidPath(name) || outside):
			t.Fatalf("Lookup(%q) = %+v", name, file)
		case err == nil:
		case outside && !errors.Is(err, ErrOutside):
			t.Fatalf("Lookup(%q) = %v, want ErrOutside", name, err)
		case !errors.Is(err, ErrOutside) && !errors.Is(err, ErrNotFound):
			t.Fatalf("Lookup(%q) = %v", name, err)
		}
	})
}

// FuzzRequest: any datagram on the server's port parses without panicking; a request passed
// on names exactly what pin/tftp will read from it (the first NUL-terminated field) and asks
// for octet mode, so the name checked is the name served.
func FuzzRequest(f *testing.F) {
	fx := newFixture(f, 4<<10)
	c := fx.open(f)
	for _, p := range [][]byte{
		rrq(opRRQ, "rootfs.aduimg", "octet", "blksize", "1468", "tsize", "0", "timeout", "5"),
		rrq(opRRQ, "sub/boot.cmd", "OCTET"),
		rrq(opWRQ, "x", "octet"),
		rrq(opRRQ, "../x", "netascii"),
		[]byte("\x00\x01rootfs.aduimg\x00octet"),
		[]byte("\x00\x04\x00\x01"),
		{0},
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		req, ok := parseRequest(p)
		if !ok {
			return
		}
		req.check(c)
		if req.Err == nil {
			fields := bytes.Split(p[2:], []byte{0})
			if req.Write || len(fields) < 2 || string(fields[0]) != req.Name || !strings.EqualFold(string(fields[1]), "octet") || req.File == nil || req.File.Name != req.Name {
				t.Fatalf("%q accepted as %+v", p, req)
			}
		}
		if req.Err == nil {
			return
		}
		if e := errorPacket(req.Err); len(e) > maxErrorPacket || e[len(e)-1] != 0 || bytes.IndexByte(e[4:], 0) != len(e)-5 {
			t.Fatalf("error packet %q", e)
		}
	})
}

// FuzzAck: whatever a client sends during a windowed transfer, the sender moves only within
// the window it sent: an ACK it takes names a block from the last acknowledged one to the
// window's last, however the 16-bit numbers roll over.
func FuzzAck(f *testing.F) {
	f.Add([]byte{0, opACK, 0, 16}, 0, 16)
	f.Add([]byte{0, opACK, 0, 0}, 65530, 16)
	f.Add([]byte{0, opACK, 0xff, 0xff}, -1, 1)
	f.Add(append([]byte{0, opERROR, 0, 3}, "disk full\x00"...), 7, 4)
	f.Fuzz(func(t *testing.T, p []byte, acked, sent int) {
		if acked < -1 || sent < 0 || sent > MaxWindow {
			return
		}
		ws := &windowSender{acked: acked, nacked: -1, pending: make([][]byte, sent)}
		k, ok, err := ws.ack(p)
		if ok && (err != nil || k < max(acked, 0) || k > acked+sent) {
			t.Fatalf("ack(%x) after block %d with %d sent: block %d", p, acked, sent, k)
		}
	})
}
