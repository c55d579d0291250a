package fastboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
)

// Client is one fastboot session with a device over UDP. It is not safe for concurrent use.
type Client struct {
	t    *transport
	addr string
}

// Addr completes "HOST" or "HOST:PORT" (an IPv6 address in brackets with a port) to a UDP
// address with DefaultPort.
func Addr(hostPort string) string {
	if _, _, err := net.SplitHostPort(hostPort); err == nil {
		return hostPort
	}
	h := hostPort
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return net.JoinHostPort(h, strconv.Itoa(DefaultPort))
}

// Dial opens a session with the device at hostPort ("HOST" or "HOST:PORT", see Addr): the
// query and the init exchange.
func Dial(ctx context.Context, hostPort string, opts Options) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", Addr(hostPort))
	if err != nil {
		return nil, fmt.Errorf("fastboot: %w", err)
	}
	c, err := New(ctx, conn, opts)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// New opens a session over conn, a datagram connection to the device (a connected UDP
// socket): the query and the init exchange. Close closes conn.
func New(ctx context.Context, conn net.Conn, opts Options) (*Client, error) {
	c := &Client{t: newTransport(conn, opts.withDefaults()), addr: conn.RemoteAddr().String()}
	if err := c.t.handshake(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Close ends the session (the device keeps no state of it).
func (c *Client) Close() error { return c.t.conn.Close() }

// Stats counts the packets of the session so far.
func (c *Client) Stats() Stats { return c.t.stats }

// PacketData is how many payload bytes go into one packet of this session.
func (c *Client) PacketData() int { return c.t.maxData }

// Command sends a command and returns the message of the device's OKAY; INFO messages go to
// Options.Info, a FAIL is a *FailError.
func (c *Client) Command(ctx context.Context, cmd string) (string, error) {
	r, err := c.command(ctx, cmd)
	if err != nil {
		return "", err
	}
	if r.Kind != Okay {
		return "", fmt.Errorf("%w: %q answered %s%s", ErrProtocol, cmd, r.Kind, r.Message)
	}
	return r.Message, nil
}

// GetVar returns a variable of the device ("version", "max-download-size",
// "partition-size:NAME", ...).
func (c *Client) GetVar(ctx context.Context, name string) (string, error) {
	return c.Command(ctx, "getvar:"+name)
}

// Reboot asks the device to reboot; U-Boot answers OKAY, then resets.
func (c *Client) Reboot(ctx context.Context) error {
	_, err := c.Command(ctx, "reboot")
	return err
}

// Flash writes size bytes of payload into the device's partition: it checks the size
// against the download buffer and the partition, downloads the payload and flashes it (see
// the package doc for what it promises when the payload fails to read).
func (c *Client) Flash(ctx context.Context, partition string, payload io.Reader, size int64) error {
	if err := checkCommand("flash:" + partition); err != nil {
		return err
	}
	if err := c.fits(ctx, partition, size); err != nil {
		return err
	}
	if err := c.Download(ctx, payload, size); err != nil {
		return err
	}
	_, err := c.Command(ctx, "flash:"+partition)
	return err
}

// fits refuses a payload larger than the device's download buffer or than the partition,
// where the device tells their sizes (U-Boot tells no size for "mmc0", the whole card; then
// download or flash decides).
func (c *Client) fits(ctx context.Context, partition string, size int64) error {
	for _, v := range []struct{ name, what string }{
		{"max-download-size", "the device's download buffer"},
		{"partition-size:" + partition, "partition " + partition},
	} {
		limit, known, err := c.size(ctx, v.name)
		if err != nil {
			return err
		}
		if known && size > limit {
			return fmt.Errorf("%w: the image is %d bytes, %s %d (%s)", ErrTooLarge, size, v.what, limit, v.name)
		}
	}
	return nil
}

// size reads a size variable; known is false when the device FAILs it.
func (c *Client) size(ctx context.Context, name string) (n int64, known bool, err error) {
	v, err := c.GetVar(ctx, name)
	var fail *FailError
	if errors.As(err, &fail) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("fastboot: asking %s: %w", name, err)
	}
	if n, err = ParseSize(v); err != nil {
		return 0, false, fmt.Errorf("%s: %w", name, err)
	}
	return n, true, nil
}

// Download sends size bytes of payload into the device's download buffer. The last packet
// goes only after payload returned io.EOF; a payload that fails to read, or ends early or
// late, abandons the download (ErrAborted wrapping the cause) and leaves the device out of
// its download state.
func (c *Client) Download(ctx context.Context, payload io.Reader, size int64) error {
	if size <= 0 || size > 0xffffffff {
		return fmt.Errorf("%w: a download of %d bytes (the protocol takes 1 to %d)", ErrTooLarge, size, uint32(0xffffffff))
	}
	cmd := fmt.Sprintf("download:%08x", size)
	r, err := c.command(ctx, cmd)
	if err != nil {
		return err
	}
	if n, err := r.DataSize(); err != nil || n != size {
		return fmt.Errorf("%w: %q answered %s%s, want DATA%08x", ErrProtocol, cmd, r.Kind, r.Message, size)
	}
	if err := c.send(ctx, payload, size); err != nil {
		return err
	}
	_, err = c.verdict(ctx, cmd)
	return err
}

// send writes the payload in packets, each read ahead of the one before it goes out, so that
// the last goes only once the payload reported its end.
func (c *Client) send(ctx context.Context, payload io.Reader, size int64) error {
	cur, next := make([]byte, c.t.maxData), make([]byte, c.t.maxData)
	n, err := fill(payload, cur, 0, size)
	if err != nil {
		return c.abort(ctx, err)
	}
	for sent := int64(0); ; {
		last := sent+int64(n) == size
		var m int
		if last {
			err = atEnd(payload, size)
		} else {
			m, err = fill(payload, next, sent+int64(n), size)
		}
		if err != nil {
			return c.abort(ctx, err)
		}
		ack, err := c.t.write(ctx, cur[:n], !last)
		if err != nil {
			return err
		}
		if len(ack) > 0 {
			return c.dataRefused(ack)
		}
		if sent += int64(n); last {
			return nil
		}
		cur, next, n = next, cur, m
	}
}

// fill reads the next packet's bytes of the payload, at offset off of size.
func fill(payload io.Reader, p []byte, off, size int64) (int, error) {
	p = p[:min(int64(len(p)), size-off)]
	n, err := io.ReadFull(payload, p)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = fmt.Errorf("the payload ended after %d of %d bytes", off+int64(n), size)
	}
	return n, err
}

// atEnd checks that the payload ends after size bytes (and lets a verifying reader finish).
func atEnd(payload io.Reader, size int64) error {
	var b [1]byte
	n, err := io.ReadFull(payload, b[:])
	switch {
	case n > 0:
		return fmt.Errorf("the payload is longer than %d bytes", size)
	case err == io.EOF:
		return nil
	}
	return err
}

// abort ends a download whose payload failed: an empty packet where data is due, which
// U-Boot acknowledges with FAIL, leaving its download state. What it answers does not
// matter; nothing more is sent (another empty packet would be taken for a command).
func (c *Client) abort(ctx context.Context, cause error) error {
	c.t.write(ctx, nil, false)
	return fmt.Errorf("%w: %w", ErrAborted, cause)
}

// command sends cmd and returns the device's first response that is not INFO: OKAY or DATA;
// FAIL is a *FailError.
func (c *Client) command(ctx context.Context, cmd string) (Response, error) {
	if err := checkCommand(cmd); err != nil {
		return Response{}, err
	}
	ack, err := c.t.write(ctx, []byte(cmd), false)
	if err != nil {
		return Response{}, err
	}
	if len(ack) > 0 {
		return Response{}, outOfTurn(cmd, ack)
	}
	return c.verdict(ctx, cmd)
}

// verdict reads responses to cmd until one is not INFO.
func (c *Client) verdict(ctx context.Context, cmd string) (Response, error) {
	for {
		b, err := c.t.read(ctx)
		if err != nil {
			return Response{}, err
		}
		r, err := ParseResponse(b)
		if err != nil {
			return Response{}, fmt.Errorf("answer to %q: %w", cmd, err)
		}
		switch r.Kind {
		case Info:
			if c.t.opts.Info != nil {
				c.t.opts.Info(r.Message)
			}
		case Fail:
			return Response{}, &FailError{Command: cmd, Message: r.Message}
		default:
			return r, nil
		}
	}
}

// dataRefused explains what the device answered a data packet with, where it owes an empty
// acknowledgement: U-Boot's FAIL for a download that went wrong, or something out of turn.
func (c *Client) dataRefused(ack []byte) error {
	if r, err := ParseResponse(ack); err == nil && r.Kind == Fail {
		return &FailError{Command: "download", Message: r.Message}
	}
	return outOfTurn("download data", ack)
}

// outOfTurn is the error for data in an acknowledgement. After a command packet it is the
// answer of a command an earlier session left pending, which U-Boot runs on the next packet.
func outOfTurn(what string, ack []byte) error {
	return fmt.Errorf("%w: the device answered %q with %q, where it owes an empty acknowledgement "+
		"(a command an earlier session left pending runs on the next packet: send yours again)",
		ErrProtocol, what, Printable(string(ack[:min(len(ack), MaxCommandSize)])))
}
