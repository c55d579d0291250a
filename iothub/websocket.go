package iothub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// MQTT over WebSockets (adu-protocol.md §1.1): IoT Hub accepts MQTT 3.1.1
// tunnelled through a WebSocket on port 443, for networks that only let
// HTTPS out. The CONNECT (client id, username, SAS password or none for
// X.509) is the same as on 8883.
const (
	// DefaultWebSocketPort is the port dialled when Config.WebSocket is set
	// and Config.Address is empty.
	DefaultWebSocketPort = 443
	// WebSocketPath is IoT Hub's MQTT-over-WebSocket endpoint.
	WebSocketPath = "/$iothub/websocket"
	// WebSocketNoClientCertQuery is appended to WebSocketPath by SAS
	// clients, as the Azure SDKs do, telling IoT Hub not to ask for a client
	// certificate.
	WebSocketNoClientCertQuery = "iothub-no-client-cert=true"
	// WebSocketSubprotocol is the Sec-WebSocket-Protocol requested.
	WebSocketSubprotocol = "mqtt"
)

// webSocketURL is the endpoint URL: wss (ws with InsecurePlainTCP) to Address, without
// the port if it is the scheme's default, so that the Host header reads like the SDKs'.
func (t Transport) webSocketURL() *url.URL {
	u := &url.URL{Scheme: "wss", Host: t.Address, Path: WebSocketPath}
	defPort := "443"
	if t.InsecurePlainTCP {
		u.Scheme, defPort = "ws", "80"
	}
	if host, port, err := net.SplitHostPort(t.Address); err == nil && port == defPort {
		u.Host = host
		if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			u.Host = "[" + host + "]"
		}
	}
	if t.NoClientCert {
		u.RawQuery = WebSocketNoClientCertQuery
	}
	return u
}

// upgradeWebSocket runs the WebSocket opening handshake over conn (already
// TLS unless InsecurePlainTCP) and returns a net.Conn carrying MQTT in
// binary messages. conn is closed on failure.
func (t Transport) upgradeWebSocket(ctx context.Context, conn net.Conn) (net.Conn, error) {
	u := t.webSocketURL()
	given := func(context.Context, string, string) (net.Conn, error) { return conn, nil }
	d := &websocket.Dialer{
		NetDialContext:    given, // ws://
		NetDialTLSContext: given, // wss://: the TLS handshake is done
		Subprotocols:      []string{WebSocketSubprotocol},
		// Proxy nil: Dial is the place to tunnel through a proxy (ProxyDial).
	}
	ws, resp, err := d.DialContext(ctx, u.String(), nil)
	if err != nil {
		_ = conn.Close()
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			body = bytes.TrimSpace(body)
			if len(body) > 0 {
				return nil, fmt.Errorf("websocket handshake with %s: %w: HTTP %s: %s", u.Redacted(), err, resp.Status, body)
			}
			return nil, fmt.Errorf("websocket handshake with %s: %w: HTTP %s", u.Redacted(), err, resp.Status)
		}
		return nil, fmt.Errorf("websocket handshake with %s: %w", u.Redacted(), err)
	}
	if p := ws.Subprotocol(); p != WebSocketSubprotocol && t.Logger != nil {
		t.Logger.Debug("iothub: server did not confirm the WebSocket subprotocol", "requested", WebSocketSubprotocol, "got", p)
	}
	return NewWebSocketConn(ws), nil
}

// NewWebSocketConn presents a WebSocket as the byte stream MQTT expects (either side of
// the connection): writes go out as binary messages, reads concatenate incoming binary
// messages and skip text ones.
func NewWebSocketConn(ws *websocket.Conn) net.Conn { return &wsConn{ws: ws} }

// wsConn presents a WebSocket as the byte stream MQTT expects: writes go
// out as binary messages, reads concatenate incoming messages.
type wsConn struct {
	ws  *websocket.Conn
	rmu sync.Mutex
	r   io.Reader // current message, nil between messages
	wmu sync.Mutex
	// wdl is the write deadline last set. gorilla/websocket allows one
	// writer at a time and its deadline setter counts as one, while MQTT
	// servers (mochi) refresh deadlines from their read loop as their
	// write loop sends; so the deadline is kept here and handed to the
	// WebSocket under wmu, right before each message goes out.
	wdl atomic.Pointer[time.Time]
}

var _ net.Conn = (*wsConn)(nil)

func (c *wsConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					return 0, fmt.Errorf("%w (%v)", io.EOF, ce)
				}
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				continue // MQTT is only carried in binary messages; skip text
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var dl time.Time
	if p := c.wdl.Load(); p != nil {
		dl = *p
	}
	if err := c.ws.SetWriteDeadline(dl); err != nil {
		return 0, err
	}
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close sends a best-effort close frame and closes the connection.
func (c *wsConn) Close() error {
	_ = c.ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	return c.ws.Close()
}

func (c *wsConn) LocalAddr() net.Addr               { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr              { return c.ws.RemoteAddr() }
func (c *wsConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

// SetWriteDeadline applies to the next message written and, through the
// network connection underneath (safe to call at any time), to one being
// written now.
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.wdl.Store(&t)
	return c.ws.NetConn().SetWriteDeadline(t)
}

func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
