package fastboot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// Defaults of Options.
const (
	DefaultTimeout         = 500 * time.Millisecond
	DefaultAttempts        = 120 // a minute at the default timeout: a device may be silent that long while it writes
	DefaultConnectAttempts = 4
	DefaultMaxPacketSize   = 8192
)

// maxResponse bounds a response the device sends in continuation packets.
const maxResponse = 4096

// Options tune the transport; zero values take the defaults.
type Options struct {
	// Timeout is how long to wait for an answer before sending a packet again.
	Timeout time.Duration
	// Attempts is how often a packet is sent before ErrNoResponse.
	Attempts int
	// ConnectAttempts is how often the first packet (the query) is sent.
	ConnectAttempts int
	// MaxPacketSize is the largest packet this host offers (at least MinPacketSize); the
	// device's offer, if smaller, wins.
	MaxPacketSize int
	// Info, if set, receives the INFO messages of the device (control characters replaced).
	Info func(msg string)
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultAttempts
	}
	if o.ConnectAttempts <= 0 {
		o.ConnectAttempts = DefaultConnectAttempts
	}
	if o.MaxPacketSize < MinPacketSize {
		o.MaxPacketSize = DefaultMaxPacketSize
	}
	if o.MaxPacketSize > 0xffff {
		o.MaxPacketSize = 0xffff
	}
	return o
}

// Stats counts the packets of a session.
type Stats struct {
	Packets     int `json:"packets"`     // packets sent, retransmissions included
	Retransmits int `json:"retransmits"` // packets sent again for want of an answer
	Stale       int `json:"stale"`       // answers the device sent again, skipped
}

// transport is the UDP layer: one packet out, its answer back, retransmitted on silence.
type transport struct {
	conn    net.Conn
	opts    Options
	seq     uint16 // of the next packet
	maxData int    // data bytes per packet
	buf     []byte
	stats   Stats
}

func newTransport(conn net.Conn, opts Options) *transport {
	return &transport{conn: conn, opts: opts, maxData: MinPacketSize - HeaderSize, buf: make([]byte, 64<<10)}
}

// handshake is the query (the device's next sequence number) and the init (the protocol
// version and the packet size).
func (t *transport) handshake(ctx context.Context) error {
	_, data, err := t.exchange(ctx, IDQuery, 0, nil, t.opts.ConnectAttempts)
	if err != nil {
		return err
	}
	if len(data) < 2 {
		return fmt.Errorf("%w: the answer to the query has %d data bytes, want the 2-byte sequence number", ErrProtocol, len(data))
	}
	t.seq = binary.BigEndian.Uint16(data)
	offer := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, ProtocolVersion), uint16(t.opts.MaxPacketSize))
	_, data, err = t.exchange(ctx, IDInit, 0, offer, t.opts.Attempts)
	if err != nil {
		return err
	}
	if len(data) < 4 {
		return fmt.Errorf("%w: the answer to init has %d data bytes, want version and packet size (4)", ErrProtocol, len(data))
	}
	version, size := binary.BigEndian.Uint16(data), int(binary.BigEndian.Uint16(data[2:]))
	if version < ProtocolVersion {
		return fmt.Errorf("%w: the device speaks protocol version %d, want %d or later", ErrProtocol, version, ProtocolVersion)
	}
	if size < MinPacketSize {
		return fmt.Errorf("%w: the device offers %d-byte packets, want at least %d", ErrProtocol, size, MinPacketSize)
	}
	t.maxData = min(size, t.opts.MaxPacketSize) - HeaderSize
	return nil
}

// write sends data in one fastboot packet (more: the continuation flag) and returns the
// acknowledgement's data, which should be empty.
func (t *transport) write(ctx context.Context, data []byte, more bool) ([]byte, error) {
	var flags byte
	if more {
		flags = FlagContinuation
	}
	_, ack, err := t.exchange(ctx, IDFastboot, flags, data, t.opts.Attempts)
	return ack, err
}

// read asks the device for its data with empty packets until its answer is complete.
func (t *transport) read(ctx context.Context) ([]byte, error) {
	var out []byte
	for {
		h, data, err := t.exchange(ctx, IDFastboot, 0, nil, t.opts.Attempts)
		if err != nil {
			return nil, err
		}
		if out = append(out, data...); len(out) > maxResponse {
			return nil, fmt.Errorf("%w: a response of more than %d bytes", ErrProtocol, maxResponse)
		}
		if h.Flags&FlagContinuation == 0 {
			return out, nil
		}
	}
}

// exchange sends one packet, again after every Timeout without its answer, up to attempts
// times, and returns the answer.
func (t *transport) exchange(ctx context.Context, id, flags byte, data []byte, attempts int) (Header, []byte, error) {
	pkt := AppendPacket(nil, Header{ID: id, Flags: flags, Seq: t.seq}, data)
	stop := context.AfterFunc(ctx, func() { t.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	refused := false
	for i := range attempts {
		if i > 0 {
			t.stats.Retransmits++
		}
		t.stats.Packets++
		if _, err := t.conn.Write(pkt); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			return Header{}, nil, fmt.Errorf("fastboot: sending packet %d: %w", t.seq, err)
		}
		h, reply, err := t.await(ctx, id, &refused)
		if err == nil {
			t.seq++
			return h, reply, nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return Header{}, nil, err
		}
	}
	hint := ""
	if refused {
		hint = " (the host reported the port unreachable: nothing listens there)"
	}
	return Header{}, nil, fmt.Errorf("%w: %s packet %d sent %d times, %v apart, to %s%s", ErrNoResponse, idName(id), t.seq, attempts, t.opts.Timeout, t.conn.RemoteAddr(), hint)
}

// await reads until the answer to the packet of id and t.seq arrives (skipping earlier
// answers sent again), the attempt's time is up (os.ErrDeadlineExceeded) or the device
// breaks the protocol.
func (t *transport) await(ctx context.Context, id byte, refused *bool) (Header, []byte, error) {
	t.conn.SetReadDeadline(time.Now().Add(t.opts.Timeout))
	for {
		if err := ctx.Err(); err != nil {
			return Header{}, nil, fmt.Errorf("fastboot: waiting for the answer to packet %d: %w", t.seq, err)
		}
		n, err := t.conn.Read(t.buf)
		if errors.Is(err, syscall.ECONNREFUSED) {
			*refused = true
			continue
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				return Header{}, nil, err
			}
			if ctx.Err() != nil {
				continue // reported at the top
			}
			return Header{}, nil, fmt.Errorf("fastboot: receiving: %w", err)
		}
		h, data, err := t.match(t.buf[:n], id)
		if errors.Is(err, errStale) {
			t.stats.Stale++
			continue
		}
		return h, data, err
	}
}

// errStale: an answer to an earlier packet, sent again.
var errStale = errors.New("stale answer")

// match checks that the packet is the answer to the packet of id and t.seq.
func (t *transport) match(pkt []byte, id byte) (Header, []byte, error) {
	h, data, err := ParsePacket(pkt)
	if err != nil {
		return Header{}, nil, err
	}
	switch d := int16(h.Seq - t.seq); {
	case d < 0:
		return Header{}, nil, errStale
	case d > 0:
		return Header{}, nil, fmt.Errorf("%w: an answer with sequence number %d to %s packet %d", ErrProtocol, h.Seq, idName(id), t.seq)
	}
	switch h.ID {
	case id:
		return h, data, nil
	case IDError:
		return Header{}, nil, fmt.Errorf("%w: the device answered %s packet %d with an error packet: %q", ErrProtocol, idName(id), t.seq, Printable(string(data[:min(len(data), maxResponse)])))
	}
	return Header{}, nil, fmt.Errorf("%w: the device answered %s packet %d with a packet of id %d", ErrProtocol, idName(id), t.seq, h.ID)
}

func idName(id byte) string {
	switch id {
	case IDQuery:
		return "query"
	case IDInit:
		return "init"
	case IDFastboot:
		return "fastboot"
	}
	return fmt.Sprintf("id-%d", id)
}
