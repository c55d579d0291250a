package hub

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"
)

// listen returns Options.Listener, or a TCP listener on Options.Address, with the deadline for
// a new connection's CONNECT and, with Options.TLSConfig, TLS.
func (h *Hub) listen() (net.Listener, error) {
	ln := h.opts.Listener
	if ln == nil {
		addr := h.opts.Address
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("hub: listen %s: %w", addr, err)
		}
	}
	ln = deadlineListener{Listener: ln, d: h.opts.ConnectTimeout, accepted: &h.accepted}
	if h.opts.TLSConfig != nil {
		ln = tls.NewListener(ln, h.opts.TLSConfig)
	}
	return ln, nil
}

// deadlineListener gives every accepted connection a deadline for its TLS
// handshake and CONNECT; the broker replaces it with the keep-alive deadline
// once CONNECT is read. It also counts the connections accepted but not yet
// read from (see firstReadConn).
type deadlineListener struct {
	net.Listener
	d        time.Duration
	accepted *acceptGate
}

func (l deadlineListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if !l.accepted.enter() {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	_ = c.SetDeadline(time.Now().Add(l.d))
	return &firstReadConn{Conn: c, accepted: l.accepted}, nil
}

// firstReadConn leaves the accept gate at its first Read (or Close). mochi
// adds each connection to a WaitGroup of its own in the connection's
// goroutine, before it reads, unsynchronised with the Wait in Server.Close:
// a connection accepted while the broker closed raced with that Wait. Hub.Close
// closes the gate and waits until every connection that passed it was read
// from, which orders mochi's Add before its Wait.
type firstReadConn struct {
	net.Conn
	accepted *acceptGate
	once     sync.Once
}

func (c *firstReadConn) Read(p []byte) (int, error) {
	c.once.Do(c.accepted.leave)
	return c.Conn.Read(p)
}

func (c *firstReadConn) Close() error {
	c.once.Do(c.accepted.leave)
	return c.Conn.Close()
}

// acceptGate counts connections between Accept and their first read; once
// closed it lets none in and tells when the last one has left.
type acceptGate struct {
	mu     sync.Mutex
	n      int
	closed bool
	empty  chan struct{} // made by close, closed when n is 0
}

func (g *acceptGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *acceptGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.closed && g.n == 0 {
		close(g.empty)
	}
}

// close lets no more connections in; the channel is closed once every
// connection inside has left.
func (g *acceptGate) close() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		g.empty = make(chan struct{})
		if g.n == 0 {
			close(g.empty)
		}
	}
	return g.empty
}
