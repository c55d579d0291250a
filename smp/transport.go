package smp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/aduflash/aduflash/internal/serial"
)

// Transport carries SMP packets (header and CBOR body) to a device and back.
type Transport interface {
	// Send sends one packet.
	Send(ctx context.Context, pkt []byte) error
	// Recv returns the next packet from the device, waiting until ctx ends. An error that
	// wraps ErrFrame or ErrPacket is a garbled reply: the transport is still usable.
	Recv(ctx context.Context) ([]byte, error)
	// Close ends the transport (and closes what it was made over, if that can be closed).
	Close() error
}

// SerialOptions configure a serial transport.
type SerialOptions struct {
	// LineSize is the longest line sent, markers and newline included (0: DefaultLineSize).
	// MCUs with a 128-byte line buffer (Zephyr's CONFIG_BOOT_MAX_LINE_INPUT_LEN) need ≤ 128.
	LineSize int
}

// maxLine is the longest line the serial reader keeps; longer ones are console noise.
const maxLine = 8 << 10

// Serial is the console framing over a byte stream (a tty, a pseudo-terminal, a pipe).
type Serial struct {
	rw       io.ReadWriter
	lineSize int
	wmu      sync.Mutex
	in       chan received
	done     chan struct{}
	once     sync.Once
}

type received struct {
	pkt []byte
	err error
}

// NewSerial starts reading rw for frames; lines that are not frames are skipped.
func NewSerial(rw io.ReadWriter, o SerialOptions) *Serial {
	s := &Serial{rw: rw, lineSize: o.LineSize, in: make(chan received, 16), done: make(chan struct{})}
	if s.lineSize <= 0 {
		s.lineSize = DefaultLineSize
	}
	go s.read()
	return s
}

// Endpoint names an MCU's SMP server: a serial line (Port, at Baud, in lines of at most
// LineSize bytes) or a UDP address (UDP, host[:port]). Exactly one of Port and UDP is set.
type Endpoint struct {
	Port     string `json:"port,omitempty"`
	Baud     int    `json:"baud,omitempty"`      // 0: 115200
	LineSize int    `json:"line_size,omitempty"` // 0: DefaultLineSize
	UDP      string `json:"udp,omitempty"`
}

// String names the endpoint: the serial line's path, or host:port.
func (e Endpoint) String() string {
	if e.Port != "" {
		return e.Port
	}
	return UDPAddr(e.UDP)
}

// Open opens the endpoint's transport.
func Open(ctx context.Context, e Endpoint) (Transport, error) {
	switch {
	case e.Port != "" && e.UDP != "":
		return nil, fmt.Errorf("%w: %s and %s: a serial line and a UDP address", ErrEndpoint, e.Port, e.UDP)
	case e.Port != "":
		baud := e.Baud
		if baud == 0 {
			baud = 115200
		}
		return OpenSerial(e.Port, baud, SerialOptions{LineSize: e.LineSize})
	case e.UDP != "":
		return DialUDP(ctx, e.UDP)
	}
	return nil, fmt.Errorf("%w: neither a serial line nor a UDP address", ErrEndpoint)
}

// OpenSerial opens a serial line (a tty or a pseudo-terminal: raw mode, 8N1, no flow control,
// at baud; Linux only) and runs the console framing over it.
func OpenSerial(path string, baud int, o SerialOptions) (*Serial, error) {
	f, err := serial.Open(path, baud)
	if err != nil {
		return nil, fmt.Errorf("smp: %w", err)
	}
	return NewSerial(f, o), nil
}

// Send writes pkt as serial lines.
func (s *Serial) Send(ctx context.Context, pkt []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.rw.Write(AppendFrame(nil, pkt, s.lineSize)); err != nil {
		return fmt.Errorf("%w: writing: %w", ErrClosed, err)
	}
	return nil
}

// Recv returns the next packet, or a frame error, or ctx's error.
func (s *Serial) Recv(ctx context.Context) ([]byte, error) {
	select {
	case r, ok := <-s.in:
		if !ok {
			return nil, ErrClosed
		}
		return r.pkt, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops the transport and closes rw if it is an io.Closer.
func (s *Serial) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		if c, ok := s.rw.(io.Closer); ok {
			err = c.Close()
		}
	})
	return err
}

// read turns lines into packets until the stream ends.
func (s *Serial) read() {
	defer close(s.in)
	br := bufio.NewReaderSize(s.rw, 1024)
	var (
		ra   Reassembler
		line []byte
	)
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) <= maxLine {
			line = append(line, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			s.deliver(received{err: fmt.Errorf("%w: reading: %w", ErrClosed, err)})
			return
		}
		pkt, ferr := ra.Line(line)
		line = line[:0]
		if pkt != nil || ferr != nil {
			if !s.deliver(received{pkt: pkt, err: ferr}) {
				return
			}
		}
	}
}

func (s *Serial) deliver(r received) bool {
	select {
	case s.in <- r:
		return true
	case <-s.done:
		return false
	}
}

// DefaultUDPPort is the port of mcumgr's UDP transport.
const DefaultUDPPort = 1337

// UDP carries one packet per datagram.
type UDP struct {
	conn net.Conn
}

// UDPAddr adds the default port to a host without one.
func UDPAddr(hostport string) string {
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return hostport
	}
	return net.JoinHostPort(hostport, strconv.Itoa(DefaultUDPPort))
}

// DialUDP connects to a device's SMP server at host[:port] (port 1337 by default).
func DialUDP(ctx context.Context, hostport string) (*UDP, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", UDPAddr(hostport))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return &UDP{conn: c}, nil
}

// Send sends pkt as one datagram.
func (u *UDP) Send(ctx context.Context, pkt []byte) error {
	if _, err := u.conn.Write(pkt); err != nil {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return nil
}

// Recv waits for the next datagram until ctx ends.
func (u *UDP) Recv(ctx context.Context) ([]byte, error) {
	stop := context.AfterFunc(ctx, func() { u.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	u.conn.SetReadDeadline(time.Time{})
	buf := make([]byte, MaxPacket)
	for {
		n, err := u.conn.Read(buf)
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err == nil:
			return buf[:n:n], nil
		case errors.Is(err, syscall.ECONNREFUSED):
			// ICMP port unreachable: the device is not listening (yet); a reply may still come.
		default:
			return nil, fmt.Errorf("%w: %w", ErrClosed, err)
		}
	}
}

// Close closes the socket.
func (u *UDP) Close() error { return u.conn.Close() }
