package tftpserve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/aduflash/aduflash/internal/readahead"
)

// Defaults of Server.
const (
	DefaultTimeout = time.Second
	DefaultRetries = 5
)

// Server serves a Catalog over TFTP, read only. Its fields are set before Serve.
type Server struct {
	Catalog *Catalog
	// Timeout is how long a sent block waits for its acknowledgement before it is sent again
	// (default DefaultTimeout); Retries how many times (default DefaultRetries).
	Timeout time.Duration
	Retries int
	// Window is the most blocks sent before an acknowledgement (RFC 7440) to a client whose
	// read request asks for a window (option windowsize): 0 is DefaultWindow, 1 negotiates
	// none (every transfer lock-step), more than MaxWindow is MaxWindow. Requests without the
	// option are served lock-step.
	Window int
	// OnRequest, if set, is called for every request that reaches the server's port, accepted
	// or refused, before it is answered (from the one goroutine that reads the port).
	OnRequest func(Request)
	// Progress, if set, is called when a transfer starts, and follows it to its end.
	Progress func(Transfer) Meter
	// Tamper, if set, may change the bytes of a transfer after they were verified, on their
	// way to the client: for tests that need a transfer corrupted on the wire, which the
	// board's own check must then catch. Nothing else sets it.
	Tamper func(name string, r io.Reader) io.Reader
}

// Transfer is an accepted read request being served.
type Transfer struct {
	File   File
	Remote net.Addr
}

// Serve answers the requests that arrive on conn (a UDP socket) until ctx ends, then waits
// for the transfers under way, which end at their next block with a TFTP error (or after
// Timeout×Retries if their client went silent), closes conn and returns nil. It returns
// early only when conn cannot be served.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	defer conn.Close()
	t := tftp.NewServer(func(name string, rf io.ReaderFrom) error { return s.send(ctx, name, rf) }, nil)
	t.SetTimeout(s.timeout())
	t.SetRetries(s.retries())
	t.SetBackoff(func(int) time.Duration { return 0 }) // resend when the timeout expires, no random pause
	// Honour the client's blksize (to 65464) as tftpd-hpa does: clients pick one their
	// network carries (U-Boot 1468).
	t.SetBlockSizeNegotiation(false)
	done := make(chan error, 1)
	f := &requestFilter{PacketConn: conn, ctx: ctx, s: s, buf: make([]byte, 65536)}
	go func() { done <- t.Serve(f) }()
	select {
	case <-ctx.Done():
		t.Shutdown()
		<-done
		f.windowed.Wait()
		return nil
	case err := <-done:
		return fmt.Errorf("tftpserve: %w", err)
	}
}

func (s *Server) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultTimeout
}

func (s *Server) retries() int {
	if s.Retries > 0 {
		return s.Retries
	}
	return DefaultRetries
}

// send serves one accepted read request through pin/tftp (lock-step, one block per ACK).
func (s *Server) send(ctx context.Context, name string, rf io.ReaderFrom) error {
	out := rf.(tftp.OutgoingTransfer)
	remote := out.RemoteAddr()
	return s.stream(ctx, name, &remote, func(f File, r io.Reader) error {
		out.SetSize(f.Size)
		_, err := rf.ReadFrom(r)
		return err
	})
}

// stream hands transmit the file's verified bytes, pinned to the catalog, and follows the
// transfer to remote with Progress until transmit returns.
func (s *Server) stream(ctx context.Context, name string, remote net.Addr, transmit func(File, io.Reader) error) error {
	e, err := s.Catalog.lookup(name)
	if err != nil {
		return err
	}
	f := e.File
	src, err := s.Catalog.open(e)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer src.Close()
	if src.Info.Format != f.Format || src.Info.RawSize != f.Size {
		return fmt.Errorf("%s: %w: now %s of %d bytes, the catalog says %s of %d", name, ErrChanged, src.Info.Format, src.Info.RawSize, f.Format, f.Size)
	}
	var m Meter = nopMeter{}
	if s.Progress != nil {
		m = s.Progress(Transfer{File: f, Remote: remote})
	}
	// Verification (decompression, chunk hashes, the pinning SHA-256) runs ahead in a
	// goroutine while the sender waits for acknowledgements: a lock-step transfer has no time
	// to spare for it between two blocks.
	ahead := readahead.New(&guard{ctx: ctx, r: newPinned(src, f.SHA256), name: name}, readAheadBlock, readAheadDepth)
	defer ahead.Close()
	var r io.Reader = &countingReader{r: ahead, m: m}
	if s.Tamper != nil {
		r = s.Tamper(name, r)
	}
	err = transmit(f, r)
	m.End(err)
	return err
}

// Read-ahead of a transfer: more than an aduimg chunk (1 MiB by default), so that the next
// chunk is verified while the current one is sent.
const (
	readAheadBlock = 256 << 10
	readAheadDepth = 8
)

// guard ends a transfer when ctx ends, and wraps every error but io.EOF with the file's name:
// pin/tftp ends a transfer as complete on a bare io.ErrUnexpectedEOF, and so does readahead
// (which takes it for a short last block), so it must never come from a failed read.
type guard struct {
	ctx  context.Context
	r    io.Reader
	name string
}

func (g *guard) Read(b []byte) (int, error) {
	if err := g.ctx.Err(); err != nil {
		return 0, fmt.Errorf("%s: server stopping: %w", g.name, err)
	}
	n, err := g.r.Read(b)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: %w", g.name, err)
	}
	return n, err
}

// requestFilter is the server's port as pin/tftp reads it: each request is parsed and
// checked first; a refused one is answered here with its TFTP error code and never reaches
// pin/tftp, which only sees read requests for names of the catalog.
type requestFilter struct {
	net.PacketConn
	ctx context.Context
	s   *Server
	buf []byte // a whole datagram: a request longer than pin/tftp's buffer is refused, not cut
	// windowed are the transfers with a window, served here rather than by pin/tftp.
	windowed sync.WaitGroup
}

func (f *requestFilter) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := f.PacketConn.ReadFrom(f.buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				// Closed by Serve's shutdown: hold pin/tftp's loop until it sees the end.
				<-f.ctx.Done()
			}
			return 0, addr, err
		}
		if f.admit(f.buf[:n], len(b), addr) {
			return copy(b, f.buf[:n]), addr, nil
		}
	}
}

// admit tells whether a datagram goes on to pin/tftp: an accepted read request without a
// window. Refused requests are answered with a TFTP error; accepted ones with a window are
// served by sendWindowed; anything else gets no answer.
func (f *requestFilter) admit(p []byte, room int, addr net.Addr) bool {
	if _, ok := addr.(*net.UDPAddr); !ok {
		return false
	}
	req, ok := parseRequest(p)
	if !ok {
		return false
	}
	req.Remote = addr
	if len(p) > room && req.Err == nil {
		req.Err = fmt.Errorf("%w: %d bytes, more than the %d this server reads", ErrMalformed, len(p), room)
	}
	req.check(f.s.Catalog)
	if f.s.OnRequest != nil {
		f.s.OnRequest(req)
	}
	if req.Err != nil {
		f.PacketConn.WriteTo(errorPacket(req.Err), addr) // best effort, as any UDP answer
		return false
	}
	if w := f.s.windowFor(req.Options); w > 1 {
		f.windowed.Go(func() { f.s.sendWindowed(f.ctx, f.PacketConn.LocalAddr(), req, w) })
		return false
	}
	return true
}
