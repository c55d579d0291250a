package tftpserve

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Window sizes (RFC 7440): how many blocks go out before the client acknowledges them.
const (
	// DefaultWindow is Server.Window's default: the window offered to a client that asks for
	// one this large or larger.
	DefaultWindow = 16
	// MaxWindow is the largest window served: 64 blocks of U-Boot's 1468 bytes are 92 KiB in
	// flight, as much as a board's network buffers are sure to take.
	MaxWindow = 64
)

// More TFTP opcodes, and the block sizes honoured (RFC 2348, as pin/tftp does).
const (
	opDATA = 3
	opACK  = 4
	opOACK = 6

	defaultBlockSize = 512
	maxBlockSize     = 65464
)

// windowFor returns the window a read request is served with: min(its windowsize option,
// Server.Window), or 1 (lock-step, through pin/tftp) when it asks for none or an invalid one,
// or the server negotiates none (Window 1).
func (s *Server) windowFor(opts map[string]string) int {
	n, err := strconv.Atoi(opts["windowsize"])
	if err != nil || n < 1 || n > 65535 {
		return 1
	}
	w := s.Window
	switch {
	case w == 0:
		w = DefaultWindow
	case w > MaxWindow:
		w = MaxWindow
	}
	return max(1, min(n, w))
}

// blockSize returns the block size a request asked for, and whether the OACK confirms it:
// 512 to 65464 bytes are honoured, as pin/tftp does; anything else falls back to 512.
func blockSize(opts map[string]string) (int, bool) {
	n, err := strconv.Atoi(opts["blksize"])
	if err != nil || n < defaultBlockSize || n > maxBlockSize {
		return defaultBlockSize, false
	}
	return n, true
}

// sendWindowed serves an accepted read request that asked for a window of w > 1 blocks, from
// a port of its own (the transfer's TID, on local's address): OACK, then windows of w
// blocks, each acknowledged by the ACK of its last block. A TFTP error tells the client why a
// transfer ends early, unless the client ended it.
func (s *Server) sendWindowed(ctx context.Context, local net.Addr, req Request, w int) {
	var ip net.IP
	if a, ok := local.(*net.UDPAddr); ok {
		ip = a.IP
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		return // as if the request was lost: the client asks again
	}
	defer conn.Close()
	// A server stopping ends the transfer at once, even while it waits for an ACK.
	stop := context.AfterFunc(ctx, func() {
		conn.WriteTo(errorPacket(fmt.Errorf("%s: server stopping", req.Name)), req.Remote)
		conn.Close()
	})
	defer stop()
	ws := &windowSender{ctx: ctx, conn: conn, remote: req.Remote.(*net.UDPAddr), timeout: s.timeout(), retries: s.retries(), window: w, buf: make([]byte, 65536)}
	err = s.stream(ctx, req.Name, req.Remote, func(f File, r io.Reader) error { return ws.run(req.Options, f, r) })
	var ce *clientError
	if err != nil && !errors.As(err, &ce) {
		conn.WriteTo(errorPacket(err), req.Remote) // best effort
	}
}

// clientError is an ERROR packet the client sent: the transfer ends without an answer.
type clientError struct {
	code int
	msg  string
}

func (e *clientError) Error() string {
	return fmt.Sprintf("the client ended the transfer: TFTP error %d: %q", e.code, e.msg)
}

// windowSender is one windowed transfer. Blocks are numbered from 1 (the OACK is 0) without
// limit; on the wire they roll over from 65535 to 0, as pin/tftp and U-Boot count.
type windowSender struct {
	ctx             context.Context
	conn            *net.UDPConn
	remote          *net.UDPAddr
	timeout         time.Duration
	retries, window int
	buf             []byte   // a received datagram
	pending         [][]byte // DATA packets of blocks acked+1…acked+len(pending), sent or not
	acked           int      // the last block the client acknowledged in order
	nacked          int      // the last ACK that sent the window back, -1: none since a resend
	last            int      // the last block of the file, once read (0: not yet)
	blksize         int
	tries           int // sends of the window without progress
}

// run sends the OACK, waits for its ACK 0, then sends r in windows until the client
// acknowledges the last block.
func (ws *windowSender) run(opts map[string]string, f File, r io.Reader) error {
	ws.blksize = defaultBlockSize
	oack := binary.BigEndian.AppendUint16(nil, opOACK)
	if n, ok := blockSize(opts); ok {
		ws.blksize = n
		oack = appendOption(oack, "blksize", n)
	}
	if _, ok := opts["tsize"]; ok {
		oack = appendOption(oack, "tsize", int(f.Size))
	}
	oack = appendOption(oack, "windowsize", ws.window)
	ws.pending = [][]byte{oack}
	ws.acked, ws.nacked = -1, -1
	for ws.last == 0 || ws.acked < ws.last {
		if err := ws.fill(r); err != nil {
			return err
		}
		if err := ws.sendPending(); err != nil {
			return err
		}
		if err := ws.await(); err != nil {
			return err
		}
	}
	return nil
}

func appendOption(p []byte, name string, v int) []byte {
	p = append(append(p, name...), 0)
	return append(strconv.AppendInt(p, int64(v), 10), 0)
}

// fill reads blocks up to a full window (none before the OACK is acknowledged). A block
// shorter than blksize, possibly empty, is the last.
func (ws *windowSender) fill(r io.Reader) error {
	for ws.acked >= 0 && ws.last == 0 && len(ws.pending) < ws.window {
		block := ws.acked + len(ws.pending) + 1
		p := make([]byte, 4+ws.blksize)
		binary.BigEndian.PutUint16(p, opDATA)
		binary.BigEndian.PutUint16(p[2:], uint16(block))
		n, err := io.ReadFull(r, p[4:])
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			ws.last = block
		case err != nil:
			return err
		}
		ws.pending = append(ws.pending, p[:4+n])
	}
	return nil
}

// sendPending sends every block of the window not yet acknowledged.
func (ws *windowSender) sendPending() error {
	for _, p := range ws.pending {
		if _, err := ws.conn.WriteToUDP(p, ws.remote); err != nil {
			return fmt.Errorf("sending block %d: %w", ws.acked+1, err)
		}
	}
	return nil
}

// await reads the client's answers to the window until one calls for sending again: the ACK
// of the window's last block (the next window), of an earlier one (go back: resend from the
// block after it), or none within timeout (resend the window, Retries times). Old and
// duplicate ACKs and packets from other ports are ignored.
func (ws *windowSender) await() error {
	deadline := time.Now().Add(ws.timeout)
	for {
		ws.conn.SetReadDeadline(deadline)
		n, from, err := ws.conn.ReadFromUDP(ws.buf)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			ws.tries++
			if ws.tries > ws.retries {
				return fmt.Errorf("%w: block %d, sent %d times", ErrNoAck, ws.acked+1, ws.tries)
			}
			ws.nacked = -1
			return nil
		}
		if errors.Is(err, net.ErrClosed) && ws.ctx.Err() != nil {
			return fmt.Errorf("server stopping: %w", ws.ctx.Err())
		}
		if err != nil {
			return fmt.Errorf("waiting for the ACK of block %d: %w", ws.acked+len(ws.pending), err)
		}
		if !from.IP.Equal(ws.remote.IP) || from.Port != ws.remote.Port {
			continue
		}
		if k, ok, err := ws.ack(ws.buf[:n]); err != nil {
			return err
		} else if ok {
			ws.advance(k)
			return nil
		}
	}
}

// ack reads a packet of the client: the block an ACK acknowledges within the window sent
// (ok), nothing for any other packet, or the client's ERROR.
func (ws *windowSender) ack(p []byte) (block int, ok bool, err error) {
	op, num, msg, valid := parseReply(p)
	switch {
	case !valid:
		return 0, false, nil
	case op == opERROR:
		return 0, false, &clientError{code: int(num), msg: msg}
	}
	k := ws.acked + int(num-uint16(ws.acked)) // the one block of acked…acked+65535 that num names
	if k > ws.acked+len(ws.pending) || k == ws.nacked || (k == ws.acked && ws.acked < 0) {
		return 0, false, nil // old, beyond what was sent, or a go-back already made
	}
	return k, true, nil
}

// advance moves the window to start after block k, the client's ACK.
func (ws *windowSender) advance(k int) {
	end := ws.acked + len(ws.pending)
	if k > ws.acked {
		ws.tries = 0
	}
	ws.pending = ws.pending[k-ws.acked:]
	ws.acked = k
	ws.nacked = -1
	if k < end {
		ws.nacked = k // a go-back: the same ACK again asks for nothing new
	}
}

// parseReply reads a packet a client sends a sender: an ACK (opcode, block) or an ERROR
// (opcode, code, message); valid is false for anything else.
func parseReply(p []byte) (op, num uint16, msg string, valid bool) {
	if len(p) < 4 {
		return 0, 0, "", false
	}
	op, num = binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:])
	switch op {
	case opACK:
		return op, num, "", true
	case opERROR:
		m := p[4:]
		if i := bytes.IndexByte(m, 0); i >= 0 {
			m = m[:i]
		}
		return op, num, string(m), true
	}
	return 0, 0, "", false
}
