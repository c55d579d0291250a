package hub

import (
	"errors"
	"fmt"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// bucket is a device's twin request quota.
type bucket struct {
	tokens  float64   // requests that may be served now
	refused float64   // recent 429s, draining at the refill rate
	last    time.Time // last refill
}

// Disconnect drops the device's current connection (if any), like IoT Hub
// does on errors, token expiry or a duplicate connection: the network
// connection is closed (MQTT 3.1.1 has no server DISCONNECT), so that a
// device which does not read cannot hold the caller up.
func (h *Hub) Disconnect(id string) error {
	cl, ok := h.srv.Clients.Get(id)
	if !ok || cl.Closed() {
		return fmt.Errorf("%w: %s", ErrNotConnected, id)
	}
	cl.Stop(packets.ErrServerShuttingDown)
	return nil
}

// allowTwin takes one twin request from the device's quota. It reports
// whether the request may be served and, if not, whether the device has
// been flooding long enough to be disconnected.
func (h *Hub) allowTwin(id string) (ok, flood bool) {
	rate := h.opts.TwinRate
	if rate < 0 {
		return true, false
	}
	burst := float64(h.opts.TwinBurst)
	now := time.Now()
	h.quotaMu.Lock()
	defer h.quotaMu.Unlock()
	b := h.quota[id]
	if b == nil {
		b = &bucket{tokens: burst, last: now}
		h.quota[id] = b
	}
	el := now.Sub(b.last).Seconds()
	b.last = now
	b.tokens = min(burst, b.tokens+el*rate)
	b.refused = max(0, b.refused-el*rate)
	if b.tokens >= 1 {
		b.tokens--
		return true, false
	}
	b.refused++
	if h.opts.TwinFloodLimit >= 0 && b.refused > float64(h.opts.TwinFloodLimit) {
		b.refused = 0
		return false, true
	}
	return false, false
}

// Connected reports whether the device currently has a live connection.
func (h *Hub) Connected(id string) bool {
	cl, ok := h.srv.Clients.Get(id)
	return ok && !cl.Closed()
}

// Connection is what the Hub saw of a device's last MQTT connection since it started.
type Connection struct {
	// Connected: the connection is up.
	Connected bool `json:"connected"`
	// Since is when it was established, or when it ended (zero: no connection since the Hub
	// started).
	Since time.Time `json:"since,omitzero"`
	// Remote is the device's address as the Hub sees it.
	Remote string `json:"remote,omitempty"`
	// Clean: the connection ended with the device's DISCONNECT, what a device sends when it
	// stops or reboots on purpose, rather than with a network error, a keep-alive timeout, a
	// newer connection of the device or a drop by the Hub.
	Clean bool `json:"clean,omitempty"`
}

// connState is a device's last connection; cl tells it from a newer one.
type connState struct {
	Connection
	cl *mqtt.Client
}

// Connection returns what the Hub saw of the device's last connection (the zero Connection
// for a device that did not connect since the Hub started, or is not registered).
func (h *Hub) Connection(id string) Connection {
	h.connMu.Lock()
	defer h.connMu.Unlock()
	if c := h.conns[id]; c != nil {
		return c.Connection
	}
	return Connection{}
}

// connected records and logs a device's new connection.
func (h *Hub) connected(cl *mqtt.Client) {
	now := h.opts.Now()
	h.connMu.Lock()
	h.conns[cl.ID] = &connState{Connection: Connection{Connected: true, Since: now, Remote: cl.Net.Remote}, cl: cl}
	h.connMu.Unlock()
	h.opts.Logger.Info("hub: device connected", "device", cl.ID, "remote", cl.Net.Remote, "modelId", h.ModelID(cl.ID),
		"keepAlive", cl.State.Keepalive, "cleanSession", cl.Properties.Clean)
}

// disconnected records and logs the end of a device's connection (one that a newer
// connection replaced is only logged, and a removed device's is not recorded). The broker
// stops a connection that a newer one takes over before it runs the newer one's hooks, so
// the newer one may not be recorded yet: the stop cause tells.
func (h *Hub) disconnected(cl *mqtt.Client, err error) {
	now := h.opts.Now()
	clean := errors.Is(cl.StopCause(), packets.CodeDisconnect)
	takenOver := errors.Is(cl.StopCause(), packets.ErrSessionTakenOver)
	h.connMu.Lock()
	c := h.conns[cl.ID]
	current := c != nil && c.cl == cl && !takenOver
	var up time.Duration
	if current {
		up = now.Sub(c.Since)
		c.Connected, c.Since, c.Clean = false, now, clean
	}
	h.connMu.Unlock()
	if !current {
		if c != nil || takenOver {
			h.opts.Logger.Info("hub: an earlier connection of the device ended", "device", cl.ID, "remote", cl.Net.Remote, "why", fmt.Sprint(cl.StopCause()))
		}
		return
	}
	why := "the device sent DISCONNECT"
	if !clean {
		why = fmt.Sprint(cl.StopCause())
		if err != nil {
			why = err.Error()
		}
	}
	h.opts.Logger.Info("hub: device disconnected", "device", cl.ID, "remote", cl.Net.Remote, "clean", clean, "why", why,
		"connectedFor", up.Round(time.Millisecond).String())
}

// sendTo writes a QoS 0 PUBLISH to the connected client id if it is
// subscribed to topic (IoT Hub only delivers to subscribed devices).
func (h *Hub) sendTo(id, topic string, payload []byte) error {
	cl, ok := h.srv.Clients.Get(id)
	if !ok || cl.Closed() {
		return ErrNotConnected
	}
	if _, sub := h.srv.Topics.Subscribers(topic).Subscriptions[id]; !sub {
		return ErrNotConnected
	}
	return cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   topic,
		Payload:     payload,
	})
}
