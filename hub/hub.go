package hub

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/aduflash/aduflash/internal/errkind"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Sentinel errors.
var (
	ErrUnknownDevice = errkind.New(errkind.Input, "hub: unknown device")
	ErrInvalidKey    = errkind.New(errkind.Input, "hub: invalid device key")
	ErrInvalidPatch  = errkind.New(errkind.Input, "hub: invalid patch")
	ErrNotConnected  = errkind.New(errkind.Environment, "hub: device not connected")
	ErrInvalidOption = errkind.New(errkind.Input, "hub: invalid options")
	ErrTwinTooLarge  = errkind.New(errkind.Input, "hub: twin document too large")
)

// MaxPacketSize is the largest MQTT packet the hub reads: IoT Hub's 256 KB
// message limit plus room for the topic and headers. A larger packet closes
// the connection as soon as its fixed header is read.
const MaxPacketSize = 256*1024 + 1024

// Defaults of the per-device twin request quota (see Options.TwinRate).
const (
	DefaultTwinRate       = 20   // twin requests per second, sustained
	DefaultTwinBurst      = 100  // twin requests at once
	DefaultTwinFloodLimit = 1000 // refused requests before a disconnect
)

// Options configures a Hub.
type Options struct {
	// HostName is the IoT Hub host name devices must use in the CONNECT
	// username and the SAS "sr". Default "localhost".
	HostName string
	// Listener, if set, is served (the Hub closes it). Otherwise Address
	// (default "127.0.0.1:0") is listened on with TCP.
	Listener net.Listener
	Address  string
	// TLSConfig, if set, wraps the listener in TLS. For X.509 device auth
	// set ClientAuth to tls.RequireAnyClientCert or
	// tls.VerifyClientCertIfGiven (thumbprints are checked by the Hub).
	TLSConfig *tls.Config
	// Now is the clock used to check SAS expiry. Default time.Now.
	Now func() time.Time
	// Logger receives the broker's and the hub's logs. Default: discarded.
	Logger *slog.Logger
	// DataDir, if set, keeps the device registry and the twins (keys,
	// thumbprints, desired and reported documents with their $versions,
	// last model id) in DataDir/devices, one JSON file per device written
	// atomically on every change; New restores them. Other parts of the
	// stand-in (Service, LoadOrCreateCA, LoadOrCreateSigner) may use other
	// folders of the same DataDir.
	DataDir string
	// ConnectTimeout is the time a new connection has to finish its TLS
	// handshake and send CONNECT; it is closed otherwise. Default 30 s.
	ConnectTimeout time.Duration
	// TwinRate is each device's quota of twin requests (GET, reported
	// PATCH, and anything else it publishes under $iothub/twin/), refilled
	// at TwinRate per second into a bucket of TwinBurst requests. A request
	// finding the bucket empty is answered 429 (IoT Hub's throttling
	// status) on $iothub/twin/res/429/?$rid=…. Default DefaultTwinRate
	// (DefaultTwinBurst); a negative TwinRate turns the quota off. The
	// quota is kept across reconnects.
	TwinRate  float64
	TwinBurst int
	// TwinFloodLimit: refused (429) requests are counted per device, the
	// count draining at TwinRate per second; a device whose count exceeds
	// TwinFloodLimit is disconnected. Default DefaultTwinFloodLimit;
	// negative: never disconnect for flooding.
	TwinFloodLimit int
	// WebSocketAddress, if set, is listened on for MQTT over WebSockets at
	// /$iothub/websocket (IoT Hub's port-443 endpoint), with TLSConfig if set: SAS
	// authentication only (X.509 needs the TLS connection itself).
	WebSocketAddress string
	// IDScope is the id scope of the provisioning service the Hub also is (see
	// AddEnrollment). Default DefaultIDScope.
	IDScope string
}

// Hub is a running IoT Hub stand-in.
type Hub struct {
	opts Options
	srv  *mqtt.Server
	ln   net.Listener

	mu      sync.Mutex
	devices map[string]*device
	// seq numbers every change to be persisted (and every removal), across
	// all devices: a device file's writes and its removal are ordered by it,
	// also across a removal and a new registration of the same id.
	seq uint64
	// savers holds one saver per device id ever registered or loaded, kept
	// after a removal so that the removal and later writes stay ordered.
	savers map[string]*saver

	// stale holds, per device id, the MQTT client of a removed device whose
	// connection RemoveDevice dropped: its session is not resumed by the
	// next CONNECT with that id (see hook.OnSessionEstablish).
	staleMu sync.Mutex
	stale   map[string]*mqtt.Client

	reported observers[func(deviceID string, patch json.RawMessage)] // see OnReported
	removed  observers[func(deviceID string)]                        // see onRemoved

	quotaMu sync.Mutex
	quota   map[string]*bucket

	connMu sync.Mutex
	conns  map[string]*connState // device id → its last connection (see Connection)

	enrollMu    sync.Mutex
	enrollments []Enrollment // sorted by id; see AddEnrollment

	dpsMu sync.Mutex
	dps   map[*mqtt.Client]*dpsClient // authenticated registrations

	ws *wsServer // nil without Options.WebSocketAddress

	accepted acceptGate // accepted connections mochi has not read from yet (see firstReadConn)
}

// New starts a Hub. Close it when done.
func New(opts Options) (*Hub, error) {
	opts = opts.withDefaults()
	h := &Hub{
		opts:    opts,
		devices: map[string]*device{},
		savers:  map[string]*saver{},
		stale:   map[string]*mqtt.Client{},
		quota:   map[string]*bucket{},
		conns:   map[string]*connState{},
		dps:     map[*mqtt.Client]*dpsClient{},
	}
	if opts.DataDir != "" {
		if err := errors.Join(h.loadDevices(), h.loadEnrollments()); err != nil {
			if opts.Listener != nil {
				_ = opts.Listener.Close()
			}
			return nil, err
		}
	}
	ln, err := h.listen()
	if err != nil {
		return nil, err
	}
	if err := h.serve(ln); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return h, nil
}

// withDefaults fills in the options left zero.
func (opts Options) withDefaults() Options {
	if opts.HostName == "" {
		opts.HostName = "localhost"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 30 * time.Second
	}
	if opts.TwinRate == 0 {
		opts.TwinRate = DefaultTwinRate
	}
	if opts.TwinBurst <= 0 {
		opts.TwinBurst = DefaultTwinBurst
	}
	if opts.TwinFloodLimit == 0 {
		opts.TwinFloodLimit = DefaultTwinFloodLimit
	}
	if opts.IDScope == "" {
		opts.IDScope = DefaultIDScope
	}
	return opts
}

// serve starts the broker on ln with IoT Hub's limits and the hub's hooks.
func (h *Hub) serve(ln net.Listener) error {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1         // IoT Hub: QoS 0/1 only
	caps.RetainAvailable = 0    // IoT Hub does not persist RETAIN
	caps.SharedSubAvailable = 0 // no $share/ subscriptions
	caps.MaximumPacketSize = MaxPacketSize
	caps.MinimumProtocolVersion = 4
	h.ln = ln
	h.srv = mqtt.New(&mqtt.Options{Capabilities: caps, Logger: h.opts.Logger})
	if err := h.srv.AddHook(&hook{h: h}, nil); err != nil {
		return fmt.Errorf("hub: add hook: %w", err)
	}
	if err := h.srv.AddListener(listeners.NewNet("iothub", ln)); err != nil {
		return fmt.Errorf("hub: add listener: %w", err)
	}
	if h.opts.WebSocketAddress != "" {
		if err := h.startWebSocket(); err != nil {
			return err
		}
	}
	if err := h.srv.Serve(); err != nil {
		return fmt.Errorf("hub: serve: %w", err)
	}
	return nil
}

// Addr is the listening address.
func (h *Hub) Addr() net.Addr { return h.ln.Addr() }

// HostName is the IoT Hub host name devices must present.
func (h *Hub) HostName() string { return h.opts.HostName }

// closeWait bounds how long Close waits for accepted connections to reach the broker.
const closeWait = 2 * time.Second

// Close stops accepting connections, lets the broker take in those already
// accepted, and stops the broker (which closes every connection).
func (h *Hub) Close() error {
	empty := h.accepted.close()
	_ = h.ln.Close()
	select {
	case <-empty:
	case <-time.After(closeWait):
	}
	if err := h.srv.Close(); err != nil {
		return fmt.Errorf("hub: close: %w", err)
	}
	return nil
}
