package smp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Defaults of Options.
const (
	DefaultTimeout      = 5 * time.Second
	DefaultEraseTimeout = 30 * time.Second
	DefaultRetries      = 3
	// DefaultMaxPacket is the packet size (header and CBOR) used with a device that does not
	// report its buffer size: small enough for Zephyr's default UART MTU and MCUboot's
	// default receive buffer (512 bytes with length and CRC).
	DefaultMaxPacket = 256
	minPacket        = 64
)

// Options configure a Client. Zero values take the defaults.
type Options struct {
	// Timeout is how long a reply is awaited before the request is sent again.
	Timeout time.Duration
	// EraseTimeout replaces Timeout for requests that may erase flash: the first frame of an
	// upload (MCUboot and Zephyr erase the slot there) and Erase.
	EraseTimeout time.Duration
	// Retries is how many times a request is sent again after a timeout or a garbled reply
	// (Reset is never sent again). Negative: never.
	Retries int
	// Version is the SMP version requests carry: 1 (default) or 2.
	Version int
	// MaxPacket is the largest packet (header and CBOR) sent; 0 asks the device ("mcumgr
	// params") and falls back to DefaultMaxPacket when it does not say.
	MaxPacket int
}

// Stats count a client's traffic.
type Stats struct {
	Requests int `json:"requests"` // requests made (each counted once)
	Resent   int `json:"resent"`   // sends after the first of a request
	Garbled  int `json:"garbled"`  // replies that did not decode
}

// Client sends SMP requests over a Transport, one at a time.
type Client struct {
	t         Transport
	o         Options
	mu        sync.Mutex
	seq       uint8
	maxPacket int
	stats     Stats
}

// NewClient returns a client over t.
func NewClient(t Transport, o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.EraseTimeout <= 0 {
		o.EraseTimeout = DefaultEraseTimeout
	}
	switch {
	case o.Retries == 0:
		o.Retries = DefaultRetries
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.MaxPacket > 0 {
		o.MaxPacket = max(min(o.MaxPacket, MaxPacket), minPacket)
	}
	return &Client{t: t, o: o, maxPacket: o.MaxPacket}
}

// Close closes the transport.
func (c *Client) Close() error { return c.t.Close() }

// Stats returns the traffic so far.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

var (
	encMode, _ = cbor.EncOptions{}.EncMode()
	decMode, _ = cbor.DecOptions{MaxNestedLevels: 16, MaxArrayElements: 4096, MaxMapPairs: 4096}.DecMode()
)

// call describes one request.
type call struct {
	name  string
	op    Op
	group uint16
	id    uint8
	slow  bool // may erase flash: EraseTimeout
	once  bool // never sent again (reset)
}

var errNoReply = errors.New("no reply")

// do sends req (a CBOR-encodable map; nil: {}) and decodes the reply into rsp (nil: only its
// status).
func (c *Client) do(ctx context.Context, k call, req, rsp any) error {
	if req == nil {
		req = struct{}{}
	}
	body, err := encMode.Marshal(req)
	if err != nil {
		return fmt.Errorf("smp: %s: encoding the request: %w", k.name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	h := Header{Op: k.op, Version: uint8(max(c.o.Version-1, 0)), Group: k.group, Seq: c.seq, ID: k.id}
	pkt := EncodePacket(h, body)
	if c.maxPacket > 0 && len(pkt) > c.maxPacket {
		return fmt.Errorf("%w: %s: a %d-byte request, the device takes %d", ErrTooLarge, k.name, len(pkt), c.maxPacket)
	}
	timeout, attempts := c.o.Timeout, 1+c.o.Retries
	if k.slow {
		timeout = c.o.EraseTimeout
	}
	if k.once {
		attempts = 1
	}
	c.stats.Requests++
	var garbled error
	for i := range attempts {
		if i > 0 {
			c.stats.Resent++
		}
		if err := c.t.Send(ctx, pkt); err != nil {
			return fmt.Errorf("smp: %s: %w", k.name, err)
		}
		reply, err := c.await(ctx, h, timeout, &garbled)
		switch {
		case err == nil:
			return decodeReply(k.name, reply, rsp)
		case !errors.Is(err, errNoReply):
			return fmt.Errorf("smp: %s: %w", k.name, err)
		}
	}
	if garbled != nil {
		return fmt.Errorf("%w to %s (sent %d times) but garbage: %w", ErrTimeout, k.name, attempts, garbled)
	}
	return fmt.Errorf("%w to %s (sent %d times, %s each)", ErrTimeout, k.name, attempts, timeout)
}

// await waits for the reply to h. Stale replies (another sequence number) are dropped; a
// garbled one is kept in *garbled and ends the wait, so that the request goes again.
func (c *Client) await(ctx context.Context, h Header, timeout time.Duration, garbled *error) ([]byte, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		p, err := c.t.Recv(wctx)
		if err == nil {
			var rh Header
			var body []byte
			if rh, body, err = DecodePacket(p); err == nil {
				if rh.Seq != h.Seq {
					continue
				}
				if rh.Group == h.Group && rh.ID == h.ID && rh.Op == h.Op+1 {
					return body, nil
				}
				err = fmt.Errorf("%w: the reply to sequence number %d is group %d command %d op %d, the request was group %d command %d op %d",
					ErrPacket, h.Seq, rh.Group, rh.ID, rh.Op, h.Group, h.ID, h.Op)
			}
		}
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case wctx.Err() != nil:
			return nil, errNoReply
		case errors.Is(err, ErrFrame) || errors.Is(err, ErrPacket):
			c.stats.Garbled++
			*garbled = err
			return nil, errNoReply
		}
		return nil, err
	}
}

// status is what every reply may say about its outcome.
type status struct {
	Rc  *int `cbor:"rc"`
	Err *struct {
		Group int `cbor:"group"`
		Rc    int `cbor:"rc"`
	} `cbor:"err"`
	Rsn string `cbor:"rsn"`
}

func decodeReply(name string, body []byte, rsp any) error {
	var st status
	if err := decMode.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("%w: %s: the reply is not a CBOR map of the expected shape: %w", ErrReply, name, err)
	}
	if st.Err != nil && st.Err.Rc != 0 {
		return &DeviceError{Command: name, Group: st.Err.Group, GroupRc: st.Err.Rc, Reason: st.Rsn}
	}
	if st.Rc != nil && *st.Rc != 0 {
		return &DeviceError{Command: name, Rc: *st.Rc, Reason: st.Rsn}
	}
	if rsp == nil {
		return nil
	}
	if err := decMode.Unmarshal(body, rsp); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrReply, name, err)
	}
	return nil
}

// packetSize is the negotiated packet size: Options.MaxPacket, the device's buf_size, or
// DefaultMaxPacket for a device that refuses to say.
func (c *Client) packetSize(ctx context.Context) (int, error) {
	c.mu.Lock()
	n := c.maxPacket
	c.mu.Unlock()
	if n > 0 {
		return n, nil
	}
	p, err := c.Params(ctx)
	var de *DeviceError
	switch {
	case errors.As(err, &de):
		n = DefaultMaxPacket
	case err != nil:
		return 0, err
	default:
		n = max(min(p.BufSize, MaxPacket), minPacket)
	}
	c.mu.Lock()
	c.maxPacket = n
	c.mu.Unlock()
	return n, nil
}

// MaxPacket returns the packet size requests are cut to, asking the device once.
func (c *Client) MaxPacket(ctx context.Context) (int, error) { return c.packetSize(ctx) }
