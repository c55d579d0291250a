// Package tftptest serves a folder over TFTP on 127.0.0.1 for tests and benchmarks (with
// github.com/pin/tftp/v3, read only, names confined to the folder), and can damage one byte
// of a file on the way, as a bad link would: the corrupted-transfer case of the recovery tests.
// QEMU's user network lets a guest reach it at 10.0.2.2:Port.
package tftptest

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"

	"github.com/pin/tftp/v3"
)

// Server is a running TFTP server.
type Server struct {
	Port int
	// Served counts the files sent whole.
	Served atomic.Int64
}

// Start serves dir on 127.0.0.1 (a free port) until the test ends. corrupt maps a file name to
// the offset of a byte that is flipped while the file is sent (nil: none).
func Start(t testing.TB, dir string, corrupt map[string]int64) *Server {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{}
	read := func(name string, rf io.ReaderFrom) error {
		f, err := root.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		rf.(tftp.OutgoingTransfer).SetSize(st.Size())
		var r io.Reader = f
		if off, ok := corrupt[name]; ok {
			r = &flipper{r: f, at: off}
		}
		if _, err := rf.ReadFrom(r); err != nil {
			return err
		}
		srv.Served.Add(1)
		return nil
	}
	s := tftp.NewServer(read, nil)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Port = conn.LocalAddr().(*net.UDPAddr).Port
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(conn) }()
	t.Cleanup(func() { s.Shutdown(); <-done; root.Close() })
	return srv
}

func (s *Server) String() string { return fmt.Sprintf("tftp://127.0.0.1:%d", s.Port) }

// flipper inverts the byte at offset at of what it reads.
type flipper struct {
	r   io.Reader
	at  int64
	off int64
}

func (f *flipper) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if i := f.at - f.off; i >= 0 && i < int64(n) {
		p[i] ^= 0xff
	}
	f.off += int64(n)
	return n, err
}
