package hub

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/aduflash/aduflash/iothub"
)

// wsServer serves MQTT over WebSockets at iothub.WebSocketPath (IoT Hub's port-443
// endpoint, Options.WebSocketAddress): each upgraded WebSocket is handed to the broker
// through a listener of its own, as a byte stream.
type wsServer struct {
	ln    net.Listener
	http  *http.Server
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// startWebSocket listens on Options.WebSocketAddress (TLS with Options.TLSConfig) and adds
// the broker listener of its connections.
func (h *Hub) startWebSocket() error {
	ln, err := net.Listen("tcp", h.opts.WebSocketAddress)
	if err != nil {
		return fmt.Errorf("hub: WebSocket listen %s: %w", h.opts.WebSocketAddress, err)
	}
	if h.opts.TLSConfig != nil {
		ln = tls.NewListener(ln, h.opts.TLSConfig)
	}
	ws := &wsServer{ln: ln, conns: make(chan net.Conn), done: make(chan struct{})}
	ws.http = &http.Server{Handler: ws, ReadHeaderTimeout: h.opts.ConnectTimeout}
	h.ws = ws
	if err := h.srv.AddListener(listeners.NewNet("iothub-ws", ws)); err != nil {
		_ = ln.Close()
		return fmt.Errorf("hub: add WebSocket listener: %w", err)
	}
	go func() { _ = ws.http.Serve(ln) }()
	return nil
}

// WebSocketAddr is the WebSocket listener's address (nil without
// Options.WebSocketAddress).
func (h *Hub) WebSocketAddr() net.Addr {
	if h.ws == nil {
		return nil
	}
	return h.ws.ln.Addr()
}

// ServeHTTP upgrades requests for iothub.WebSocketPath with the subprotocol "mqtt".
func (ws *wsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != iothub.WebSocketPath {
		http.NotFound(w, r)
		return
	}
	up := websocket.Upgrader{Subprotocols: []string{iothub.WebSocketSubprotocol}, HandshakeTimeout: 10 * time.Second}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	select {
	case ws.conns <- iothub.NewWebSocketConn(c):
	case <-ws.done:
		_ = c.Close()
	}
}

// Accept hands the broker the next upgraded WebSocket.
func (ws *wsServer) Accept() (net.Conn, error) {
	select {
	case c := <-ws.conns:
		return c, nil
	case <-ws.done:
		return nil, net.ErrClosed
	}
}

// Close stops the HTTP server and the broker's listener.
func (ws *wsServer) Close() error {
	var err error
	ws.once.Do(func() {
		close(ws.done)
		if err = ws.http.Close(); errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	})
	return err
}

func (ws *wsServer) Addr() net.Addr { return ws.ln.Addr() }
