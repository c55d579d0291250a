// Package hub is a local stand-in for Azure IoT Hub and the Device Update
// service, so the whole update loop runs on one machine (aduhub, the demo,
// tests).
//
// Hub is the device side of IoT Hub: an embedded mochi-mqtt broker that
// authenticates devices like IoT Hub does (CONNECT username format, SAS
// tokens checked against registered device keys, or X.509 client
// certificates by SHA-256 thumbprint) and answers the device twin topics
// (GET, reported PATCH, desired notifications). With Options.DataDir the
// device registry and the twins (both documents with their $versions) are
// stored there, one JSON file per device written atomically, and restored by
// New. LoadOrCreateCA makes (and keeps) a local CA and a server certificate
// for TLS, whose PEM devices trust instead of the Azure roots.
//
// Scope of Hub: device identities only (no modules), MQTT 3.1.1 over TCP or
// TLS (no WebSockets), twins only (no telemetry routing, C2D messages, direct
// methods, tags, or service-side REST API). One connection per device id: a
// new CONNECT takes over (drops) the previous connection. RemoveDevice deletes
// a device as IoT Hub does (connection and session dropped, credentials and
// twin gone).
//
// Bad device behaviour is refused as IoT Hub refuses it, and the hub stays
// up: a CONNECT with a wrong, expired or foreign SAS token, a username for
// another hub or device, a client id other than the username's device, an
// unknown device, MQTT other than 3.1.1 or a will topic other than the
// device's telemetry topic gets a refusing CONNACK; a connection that sends
// no CONNECT within Options.ConnectTimeout is closed; a PUBLISH to a topic
// the device may not use (another device's topics, $iothub/methods/res/
// without a subscription to $iothub/methods/POST/#, anything outside
// $iothub/twin/ and its own devices/{id}/messages/events/) or with QoS 2 closes
// the connection; a SUBSCRIBE outside $iothub/twin/, $iothub/methods/POST/ and
// its own devices/{id}/messages/devicebound/ is refused (SUBACK 0x80); any
// MQTT packet above 256 KB closes the connection before it is buffered; a
// reported patch above 32 KB, or one that would make the reported document
// larger than 32 KB, gets 413, one nested deeper than 10 levels 400; twin
// requests above a device's quota (a token bucket per device, see
// Options.TwinRate) get 429, and a device that keeps flooding is disconnected.
// Telemetry (devices/{id}/messages/events/) is accepted and dropped.
//
// Signer signs update manifests (and root-key packages, spec §5.5) the way the Device
// Update service does, so that adu.Verify accepts them when it trusts the signer's root key;
// LoadOrCreateSigner keeps its keys in a folder.
//
// Service is the Device Update service side on top of a Hub and a Signer,
// kept in its own DataDir: Import (import manifest checked with
// manifestgen's validator, files checked and copied, opaque file ids, the
// update manifest v5 in the real manifests' shape, signed), FileHandler (the
// payload file server, with Range), Deploy to a group of devices selected by
// their reported deviceProperties and the update's compatibility, Cancel,
// Retry (retryTimestamp, failed devices only) and per-device results
// (Status, Deployments) computed from the reported twins as the service does.
// Not modelled: device classes and groups as stored objects (a group is the
// property filter given to Deploy), deployment start times, automatic
// rollback policies, delta updates' download handlers beyond passing them
// through, detached (mini) manifests for large update manifests, root-key
// package publication (only its URL can be configured), the REST API.
//
// The package never logs unless a Logger is set and holds no package-level
// mutable state.
package hub

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aduflash/aduflash/iothub"
)

// Sentinel errors.
var (
	ErrUnknownDevice = errors.New("hub: unknown device")
	ErrInvalidKey    = errors.New("hub: invalid device key")
	ErrInvalidPatch  = errors.New("hub: invalid patch")
	ErrNotConnected  = errors.New("hub: device not connected")
	ErrInvalidOption = errors.New("hub: invalid options")
	ErrTwinTooLarge  = errors.New("hub: twin document too large")
)

// MaxPatchSize is the largest accepted twin patch, and the largest reported
// document a device may build up (IoT Hub's 32 KB limit, spec §1.7).
const MaxPatchSize = 32 * 1024

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

// maxKeepAlive caps the client keep-alive so that the server-side timeout
// (1.5 × keep-alive) stays within IoT Hub's 1767 s (spec §1.1); a keep-alive
// of 0 (none) gets the cap too.
const maxKeepAlive = 1177

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
}

type device struct {
	key         string // base64 SAS key, "" if none
	thumbprint  string // lower-case hex SHA-256 of the DER certificate, "" if none
	desired     map[string]any
	reported    map[string]any
	desiredVer  int64
	reportedVer int64
	modelID     string

	// save writes the device's file; it is the id's, shared with any later
	// registration under the same id (see Hub.savers).
	save *saver
}

// bucket is a device's twin request quota.
type bucket struct {
	tokens  float64   // requests that may be served now
	refused float64   // recent 429s, draining at the refill rate
	last    time.Time // last refill
}

// Hub is a running IoT Hub stand-in.
type Hub struct {
	opts   Options
	srv    *mqtt.Server
	ln     net.Listener
	served chan struct{}

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

	obsMu     sync.Mutex
	observers map[int]func(deviceID string, patch json.RawMessage)
	removedFn map[int]func(deviceID string) // see onRemoved
	obsNext   int

	quotaMu sync.Mutex
	quota   map[string]*bucket

	connMu sync.Mutex
	conns  map[string]*connState // device id → its last connection (see Connection)

	accepted acceptGate // accepted connections mochi has not read from yet (see firstReadConn)
}

// New starts a Hub. Close it when done.
func New(opts Options) (*Hub, error) {
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
	h := &Hub{
		opts:    opts,
		devices: map[string]*device{},
		savers:  map[string]*saver{},
		stale:   map[string]*mqtt.Client{},
		served:  make(chan struct{}),
		quota:   map[string]*bucket{},
		conns:   map[string]*connState{},
	}
	if opts.DataDir != "" {
		if err := h.loadDevices(); err != nil {
			if opts.Listener != nil {
				_ = opts.Listener.Close()
			}
			return nil, err
		}
	}
	ln := opts.Listener
	if ln == nil {
		addr := opts.Address
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("hub: listen %s: %w", addr, err)
		}
	}
	ln = deadlineListener{Listener: ln, d: opts.ConnectTimeout, accepted: &h.accepted}
	if opts.TLSConfig != nil {
		ln = tls.NewListener(ln, opts.TLSConfig)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumQos = 1         // IoT Hub: QoS 0/1 only
	caps.RetainAvailable = 0    // IoT Hub does not persist RETAIN
	caps.SharedSubAvailable = 0 // no $share/ subscriptions
	caps.MaximumPacketSize = MaxPacketSize
	caps.MinimumProtocolVersion = 4
	h.ln = ln
	h.srv = mqtt.New(&mqtt.Options{Capabilities: caps, Logger: opts.Logger})
	if err := h.srv.AddHook(&hook{h: h}, nil); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("hub: add hook: %w", err)
	}
	if err := h.srv.AddListener(listeners.NewNet("iothub", ln)); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("hub: add listener: %w", err)
	}
	if err := h.srv.Serve(); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("hub: serve: %w", err)
	}
	return h, nil
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

func (h *Hub) deviceLocked(id string) *device {
	d := h.devices[id]
	if d == nil {
		d = &device{desired: map[string]any{}, reported: map[string]any{}, desiredVer: 1, reportedVer: 1, save: h.saverLocked(id)}
		h.devices[id] = d
	}
	return d
}

// saverLocked returns the id's saver, made on first use. Called with h.mu
// held (or before the Hub is shared).
func (h *Hub) saverLocked(id string) *saver {
	s := h.savers[id]
	if s == nil {
		s = &saver{}
		h.savers[id] = s
	}
	return s
}

// RegisterDevice registers (or re-keys) a device with a base64 SAS key.
func (h *Hub) RegisterDevice(id, keyB64 string) error {
	if id == "" || strings.ContainsAny(id, "/#+?") {
		return fmt.Errorf("%w: device id %q", ErrInvalidOption, id)
	}
	if _, err := base64.StdEncoding.DecodeString(keyB64); err != nil || keyB64 == "" {
		return fmt.Errorf("%w: %s", ErrInvalidKey, id)
	}
	h.mu.Lock()
	d := h.deviceLocked(id)
	d.key = keyB64
	seq, data, err := h.snapshotLocked(id, d)
	h.mu.Unlock()
	return h.persist(id, d, seq, data, err)
}

// RegisterDeviceX509 registers a device authenticated by a client
// certificate with the given SHA-256 thumbprint (hex, case-insensitive,
// optional ':' separators). See Thumbprint.
func (h *Hub) RegisterDeviceX509(id, thumbprintSHA256 string) error {
	if id == "" || strings.ContainsAny(id, "/#+?") {
		return fmt.Errorf("%w: device id %q", ErrInvalidOption, id)
	}
	tp, err := ParseThumbprint(thumbprintSHA256)
	if err != nil {
		return fmt.Errorf("%w: thumbprint for %s: %w", ErrInvalidKey, id, err)
	}
	h.mu.Lock()
	d := h.deviceLocked(id)
	d.thumbprint = tp
	seq, data, err := h.snapshotLocked(id, d)
	h.mu.Unlock()
	return h.persist(id, d, seq, data, err)
}

// Devices returns the ids of all registered devices, sorted.
func (h *Hub) Devices() []string {
	h.mu.Lock()
	ids := make([]string, 0, len(h.devices))
	for id := range h.devices {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	sort.Strings(ids)
	return ids
}

// DeviceKey returns the device's base64 SAS key ("" for X.509 devices).
func (h *Hub) DeviceKey(id string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.devices[id]
	if d == nil {
		return "", fmt.Errorf("%w: %s", ErrUnknownDevice, id)
	}
	return d.key, nil
}

// DeviceThumbprint returns the SHA-256 thumbprint (lower-case hex) of the
// client certificate the device authenticates with ("" for SAS devices).
func (h *Hub) DeviceThumbprint(id string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.devices[id]
	if d == nil {
		return "", fmt.Errorf("%w: %s", ErrUnknownDevice, id)
	}
	return d.thumbprint, nil
}

// RemoveDevice deletes a device, as deleting a device identity in IoT Hub
// does: it leaves the registry (Devices, Twin and the rest answer
// ErrUnknownDevice), its live connection is dropped, its MQTT session is not
// resumed by a later connection, a later CONNECT with its old credentials is
// refused (not authorized), and its twin is gone (with DataDir its file is
// deleted, also when a write of the device races with the removal: the
// removal wins). A device registered later under the same id starts anew.
// An unknown id is an error wrapping ErrUnknownDevice. If deleting the file
// fails the error is returned, but the running Hub has removed the device.
func (h *Hub) RemoveDevice(id string) error {
	h.mu.Lock()
	d := h.devices[id]
	if d == nil {
		h.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownDevice, id)
	}
	delete(h.devices, id)
	h.seq++
	seq := h.seq
	h.mu.Unlock()

	h.quotaMu.Lock()
	delete(h.quota, id)
	h.quotaMu.Unlock()
	h.connMu.Lock()
	delete(h.conns, id)
	h.connMu.Unlock()
	if cl, ok := h.srv.Clients.Get(id); ok {
		// Marked before it is stopped: see hook.OnSessionEstablish.
		h.staleMu.Lock()
		h.stale[id] = cl
		h.staleMu.Unlock()
		if !cl.Closed() {
			h.opts.Logger.Info("hub: disconnecting a removed device", "device", id)
		}
		cl.Stop(packets.ErrNotAuthorized)
	}

	h.obsMu.Lock()
	fns := make([]func(string), 0, len(h.removedFn))
	for _, fn := range h.removedFn {
		fns = append(fns, fn)
	}
	h.obsMu.Unlock()
	for _, fn := range fns {
		fn(id)
	}
	return h.unpersist(id, d, seq)
}

// onRemoved registers fn to be called after a device was removed (the
// Service stops following it). The returned func unregisters fn.
func (h *Hub) onRemoved(fn func(deviceID string)) (remove func()) {
	h.obsMu.Lock()
	defer h.obsMu.Unlock()
	if h.removedFn == nil {
		h.removedFn = map[int]func(string){}
	}
	n := h.obsNext
	h.obsNext++
	h.removedFn[n] = fn
	return func() {
		h.obsMu.Lock()
		delete(h.removedFn, n)
		h.obsMu.Unlock()
	}
}

// OnReported registers fn to be called after every reported-properties
// PATCH a device sent was applied (and stored, with DataDir), before the
// device gets its 204, with the patch as sent (metadata members removed).
// fn runs on the device's connection goroutine: keep it short and do not
// call Disconnect for that device from it. The returned func unregisters fn.
func (h *Hub) OnReported(fn func(deviceID string, patch json.RawMessage)) (remove func()) {
	h.obsMu.Lock()
	defer h.obsMu.Unlock()
	if h.observers == nil {
		h.observers = map[int]func(string, json.RawMessage){}
	}
	n := h.obsNext
	h.obsNext++
	h.observers[n] = fn
	return func() {
		h.obsMu.Lock()
		delete(h.observers, n)
		h.obsMu.Unlock()
	}
}

// applyReported merges patch into the device's reported properties, stores
// the twin and tells the observers. It returns the new reported $version.
func (h *Hub) applyReported(id string, patch []byte) (int64, error) {
	p, err := decodePatch(patch)
	if err != nil {
		return 0, err
	}
	h.mu.Lock()
	d := h.devices[id]
	if d == nil {
		h.mu.Unlock()
		return 0, fmt.Errorf("%w: %s", ErrUnknownDevice, id)
	}
	merged, err := mergeWithin(d.reported, p, "reported")
	if err != nil {
		h.mu.Unlock()
		return 0, err
	}
	d.reported = merged
	d.reportedVer++
	v := d.reportedVer
	seq, data, serr := h.snapshotLocked(id, d)
	h.mu.Unlock()
	if err := h.persist(id, d, seq, data, serr); err != nil {
		h.opts.Logger.Error("hub: storing the twin failed", "device", id, "err", err)
		return 0, err
	}
	body, err := marshal(p)
	if err != nil {
		return v, nil
	}
	h.opts.Logger.Debug("hub: reported properties", "device", id, "version", v, "patch", string(body))
	h.obsMu.Lock()
	obs := make([]func(string, json.RawMessage), 0, len(h.observers))
	for _, fn := range h.observers {
		obs = append(obs, fn)
	}
	h.obsMu.Unlock()
	for _, fn := range obs {
		fn(id, body)
	}
	return v, nil
}

// ParseThumbprint checks a SHA-256 certificate thumbprint (64 hex digits, ':'
// separators and either case allowed) and returns it as Thumbprint writes
// them: lower case, no separators.
func ParseThumbprint(s string) (string, error) {
	tp := strings.ToLower(strings.ReplaceAll(s, ":", ""))
	if b, err := hex.DecodeString(tp); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%q is not a SHA-256 thumbprint (64 hex digits)", s)
	}
	return tp, nil
}

// Thumbprint returns the lower-case hex SHA-256 of a DER certificate.
func Thumbprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// Twin returns the device's full twin document
// {"desired":{…,"$version":n},"reported":{…,"$version":m}}.
func (h *Hub) Twin(id string) (json.RawMessage, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.devices[id]
	if d == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownDevice, id)
	}
	return d.twinJSON()
}

// ModelID returns the model-id the device announced in its last CONNECT.
func (h *Hub) ModelID(id string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if d := h.devices[id]; d != nil {
		return d.modelID
	}
	return ""
}

// SetDesired merges patch (a JSON object; null members delete) into the
// device's desired properties, bumps the desired $version, and, if the device
// is connected and subscribed, publishes the notification
// (patch + "$version") on $iothub/twin/PATCH/properties/desired/?$version=V.
// It returns the new desired $version. A patch that would make the desired
// document larger than MaxPatchSize (IoT Hub's 32 KB) is refused with
// ErrTwinTooLarge and changes nothing.
func (h *Hub) SetDesired(id string, patch json.RawMessage) (int64, error) {
	p, err := decodePatch(patch)
	if err != nil {
		return 0, err
	}
	h.mu.Lock()
	d := h.devices[id]
	if d == nil {
		h.mu.Unlock()
		return 0, fmt.Errorf("%w: %s", ErrUnknownDevice, id)
	}
	merged, err := mergeWithin(d.desired, p, "desired")
	if err != nil {
		h.mu.Unlock()
		return 0, err
	}
	d.desired = merged
	d.desiredVer++
	v := d.desiredVer
	seq, data, serr := h.snapshotLocked(id, d)
	p["$version"] = v
	body, err := marshal(p)
	h.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if err := h.persist(id, d, seq, data, serr); err != nil {
		return 0, err
	}
	topic := iothub.TopicDesiredPrefix + "?$version=" + strconv.FormatInt(v, 10)
	// Delivery outside h.mu; a concurrent SetDesired may overtake this one,
	// as with the real service; $version orders them.
	serr = h.sendTo(id, topic, body)
	h.opts.Logger.Debug("hub: desired properties", "device", id, "version", v, "delivered", serr == nil, "patch", string(body))
	return v, nil
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
// connection replaced is only logged, and a removed device's is not recorded).
func (h *Hub) disconnected(cl *mqtt.Client, err error) {
	now := h.opts.Now()
	clean := errors.Is(cl.StopCause(), packets.CodeDisconnect)
	h.connMu.Lock()
	c := h.conns[cl.ID]
	current := c != nil && c.cl == cl
	var up time.Duration
	if current {
		up = now.Sub(c.Since)
		c.Connected, c.Since, c.Clean = false, now, clean
	}
	h.connMu.Unlock()
	if !current {
		if c != nil {
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

func (d *device) twinJSON() (json.RawMessage, error) {
	des := make(map[string]any, len(d.desired)+1)
	for k, v := range d.desired {
		des[k] = v
	}
	des["$version"] = d.desiredVer
	rep := make(map[string]any, len(d.reported)+1)
	for k, v := range d.reported {
		rep[k] = v
	}
	rep["$version"] = d.reportedVer
	return marshal(map[string]any{"desired": des, "reported": rep})
}

// decodePatch parses a JSON object patch, keeping numbers exact and dropping
// the read-only metadata members ($version, $metadata, …).
func decodePatch(b []byte) (map[string]any, error) {
	if len(b) > MaxPatchSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalidPatch, len(b), MaxPatchSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var p map[string]any
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPatch, err)
	}
	if p == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidPatch)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrInvalidPatch)
	}
	for k := range p {
		if strings.HasPrefix(k, "$") {
			delete(p, k)
		}
	}
	if depth(p) > 10 {
		return nil, fmt.Errorf("%w: nested deeper than 10 levels", ErrInvalidPatch)
	}
	return p, nil
}

func depth(v any) int {
	m, ok := v.(map[string]any)
	if !ok {
		return 0
	}
	d := 0
	for _, c := range m {
		d = max(d, depth(c))
	}
	return d + 1
}

// cloneMap copies the objects of a decoded JSON document (other values are
// never modified in place by mergePatch and are shared).
// mergeWithin returns a copy of doc with patch merged in (merge-patch), refused with
// ErrTwinTooLarge when it would be larger than MaxPatchSize (IoT Hub's 32 KB for each of
// a twin's desired and reported documents); doc itself is not changed. which names the
// document in the error.
func mergeWithin(doc, patch map[string]any, which string) (map[string]any, error) {
	merged := cloneMap(doc)
	mergePatch(merged, patch)
	if b, err := json.Marshal(merged); err != nil || len(b) > MaxPatchSize {
		return nil, fmt.Errorf("%w: %s properties would be %d bytes, more than %d", ErrTwinTooLarge, which, len(b), MaxPatchSize)
	}
	return merged, nil
}

func cloneMap(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			v = cloneMap(sub)
		}
		c[k] = v
	}
	return c
}

// mergePatch applies an RFC 7386 JSON merge patch to dst in place.
func mergePatch(dst, patch map[string]any) {
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(dst, k)
		case map[string]any:
			sub, ok := dst[k].(map[string]any)
			if !ok {
				sub = map[string]any{}
			}
			mergePatch(sub, pv)
			dst[k] = sub
		default:
			dst[k] = v
		}
	}
}

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("hub: encode: %w", err)
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// hook implements IoT Hub's authentication, topic ACL and twin protocol.
type hook struct {
	mqtt.HookBase
	h *Hub
}

func (k *hook) ID() string { return "iothub" }

func (k *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablish, mqtt.OnSessionEstablished,
		mqtt.OnACLCheck, mqtt.OnPacketRead, mqtt.OnPublish, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnConnect refuses protocols other than MQTT 3.1.1 (3.1 is refused by the
// broker's MinimumProtocolVersion) and caps the keep-alive as IoT Hub does.
func (k *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if pk.ProtocolVersion != 4 {
		k.h.opts.Logger.Info("hub: refused CONNECT: MQTT version", "client", cl.ID, "version", pk.ProtocolVersion)
		_ = k.h.srv.SendConnack(cl, packets.ErrUnsupportedProtocolVersion, false, nil)
		return packets.ErrUnsupportedProtocolVersion
	}
	if cl.State.Keepalive == 0 || cl.State.Keepalive > maxKeepAlive {
		cl.State.Keepalive = maxKeepAlive
	}
	return nil
}

// OnPacketRead closes the connection of a device that publishes to a topic
// it may not use, or with QoS 2, as IoT Hub does (spec §1; IoT Hub's MQTT
// support: "the connection is closed"). ErrRejectPacket (the only error the
// broker does not ignore here) ends its read loop for the client.
func (k *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish {
		return pk, nil
	}
	if pk.FixedHeader.Qos > 1 {
		k.h.opts.Logger.Info("hub: disconnecting: PUBLISH with QoS 2", "device", cl.ID, "topic", pk.TopicName)
		cl.Stop(packets.ErrQosNotSupported)
		return pk, packets.ErrRejectPacket
	}
	if why := k.h.publishRefused(cl, pk.TopicName); why != "" {
		k.h.opts.Logger.Info("hub: disconnecting: PUBLISH to a forbidden topic", "device", cl.ID, "topic", pk.TopicName, "why", why)
		cl.Stop(packets.ErrNotAuthorized)
		return pk, packets.ErrRejectPacket
	}
	pk.FixedHeader.Retain = false
	return pk, nil
}

// publishRefused says why the device may not publish to topic, or "".
func (h *Hub) publishRefused(cl *mqtt.Client, topic string) string {
	switch {
	case strings.ContainsAny(topic, "+#\x00") || topic == "":
		return "not a valid topic name"
	case strings.HasPrefix(topic, "$iothub/twin/"):
		return ""
	case strings.HasPrefix(topic, "$iothub/methods/res/"):
		if _, sub := h.srv.Topics.Subscribers("$iothub/methods/POST/x").Subscriptions[cl.ID]; !sub {
			return "method response without a subscription to $iothub/methods/POST/#"
		}
		return ""
	case topic == "devices/"+cl.ID+"/messages/events" || strings.HasPrefix(topic, "devices/"+cl.ID+"/messages/events/"):
		return ""
	case strings.HasPrefix(topic, "devices/"):
		return "not the device's own telemetry topic"
	}
	return "not an IoT Hub device topic"
}

// subscribeAllowed: the twin topics, direct methods, and the device's own
// cloud-to-device topic.
func subscribeAllowed(cl *mqtt.Client, filter string) bool {
	return strings.HasPrefix(filter, "$iothub/twin/") ||
		strings.HasPrefix(filter, "$iothub/methods/POST/") ||
		strings.HasPrefix(filter, "devices/"+cl.ID+"/messages/devicebound/")
}

// parseUsername splits "{host}/{deviceId}/?api-version=…[&model-id=…]".
func parseUsername(u string) (host, deviceID string, q url.Values, err error) {
	path, query, ok := strings.Cut(u, "?")
	if !ok {
		return "", "", nil, errors.New("no '?' in username")
	}
	parts := strings.Split(path, "/")
	if len(parts) != 3 || parts[2] != "" || parts[0] == "" || parts[1] == "" {
		return "", "", nil, errors.New("username path is not {host}/{deviceId}/")
	}
	q, err = url.ParseQuery(query)
	if err != nil {
		return "", "", nil, fmt.Errorf("username query: %w", err)
	}
	if q.Get("api-version") == "" {
		return "", "", nil, errors.New("username lacks api-version")
	}
	return parts[0], parts[1], q, nil
}

func (k *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	h := k.h
	d, q, ok := k.authenticate(cl, pk)
	if !ok {
		return false
	}
	h.mu.Lock()
	if h.devices[cl.ID] != d {
		// Removed (or removed and registered anew) since it was checked.
		h.mu.Unlock()
		h.opts.Logger.Info("hub: refused CONNECT: the device was removed", "device", cl.ID)
		return false
	}
	var (
		seq     uint64
		data    []byte
		err     error
		changed = d.modelID != q.Get("model-id")
	)
	if changed {
		d.modelID = q.Get("model-id")
		seq, data, err = h.snapshotLocked(cl.ID, d)
	}
	h.mu.Unlock()
	if changed {
		if err := h.persist(cl.ID, d, seq, data, err); err != nil {
			h.opts.Logger.Error("hub: storing the twin failed", "device", cl.ID, "err", err)
		}
	}
	return true
}

// authenticate checks a CONNECT as IoT Hub does and returns the registered
// device it authenticates as, with the username's query.
func (k *hook) authenticate(cl *mqtt.Client, pk packets.Packet) (*device, url.Values, bool) {
	h := k.h
	log := h.opts.Logger
	host, devID, q, err := parseUsername(string(pk.Connect.Username))
	if err != nil {
		log.Info("hub: refused CONNECT", "client", cl.ID, "err", err)
		return nil, nil, false
	}
	if !strings.EqualFold(host, h.opts.HostName) || devID != cl.ID {
		log.Info("hub: refused CONNECT: host/device mismatch", "client", cl.ID, "username", string(pk.Connect.Username))
		return nil, nil, false
	}
	if pk.Connect.WillFlag {
		w := pk.Connect.WillTopic
		if w != "devices/"+devID+"/messages/events" && !strings.HasPrefix(w, "devices/"+devID+"/messages/events/") {
			log.Info("hub: refused CONNECT: will topic", "device", devID, "topic", w)
			return nil, nil, false
		}
	}
	h.mu.Lock()
	d := h.devices[devID]
	var key, tp string
	if d != nil {
		key, tp = d.key, d.thumbprint
	}
	h.mu.Unlock()
	if d == nil {
		log.Info("hub: refused CONNECT: unknown device", "device", devID)
		return nil, nil, false
	}
	if len(pk.Connect.Password) > 0 {
		if key == "" {
			return nil, nil, false
		}
		tok, err := iothub.ParseSASToken(string(pk.Connect.Password))
		if err == nil {
			err = tok.Verify(key, iothub.ResourceURI(host, devID, ""), h.opts.Now())
		}
		if err != nil {
			log.Info("hub: refused CONNECT: SAS", "device", devID, "err", err)
			return nil, nil, false
		}
	} else {
		tc, ok := cl.Net.Conn.(*tls.Conn)
		if !ok || tp == "" {
			log.Info("hub: refused CONNECT: no password and no X.509 identity", "device", devID)
			return nil, nil, false
		}
		certs := tc.ConnectionState().PeerCertificates
		if len(certs) == 0 || Thumbprint(certs[0].Raw) != tp {
			log.Info("hub: refused CONNECT: client certificate thumbprint mismatch", "device", devID)
			return nil, nil, false
		}
	}
	return d, q, true
}

// OnSessionEstablish runs after a CONNECT was authenticated, before the
// broker takes over the session an earlier connection of the same client id
// left: the session of a removed device (whose client RemoveDevice stopped)
// is dropped, so that a device registered anew under its id starts with a
// clean session, as after a device deletion in IoT Hub. A clean session
// needs nothing (the broker does not resume it, and its connection's
// goroutine deletes it).
func (k *hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	h := k.h
	h.staleMu.Lock()
	old, ok := h.stale[cl.ID]
	delete(h.stale, cl.ID)
	h.staleMu.Unlock()
	if !ok || old.Properties.Clean {
		return
	}
	if cur, found := h.srv.Clients.Get(cl.ID); found && cur == old {
		h.srv.UnsubscribeClient(old)
		old.ClearInflights()
		h.srv.Clients.Delete(cl.ID)
	}
}

// OnSessionEstablished checks the connection's credentials again once the
// client is in the broker's client list: a device removed between its
// CONNECT's authentication and then was not seen by RemoveDevice, and is
// dropped here.
func (k *hook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	h := k.h
	h.mu.Lock()
	_, registered := h.devices[cl.ID]
	h.mu.Unlock()
	if registered {
		if _, _, ok := k.authenticate(cl, pk); ok {
			h.connected(cl)
			return
		}
	}
	h.opts.Logger.Info("hub: disconnecting a removed device", "device", cl.ID)
	h.staleMu.Lock()
	h.stale[cl.ID] = cl
	h.staleMu.Unlock()
	cl.Stop(packets.ErrNotAuthorized)
}

// OnDisconnect records and logs the end of a device's connection.
func (k *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	k.h.disconnected(cl, err)
}

// OnACLCheck: publishes were checked by OnPacketRead (this is the same
// rule); subscriptions outside the allowed filters get SUBACK 0x80.
func (k *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		return k.h.publishRefused(cl, topic) == ""
	}
	if !subscribeAllowed(cl, topic) {
		k.h.opts.Logger.Info("hub: refused SUBSCRIBE", "device", cl.ID, "filter", topic)
		return false
	}
	return true
}

// OnPublish answers twin requests directly to the requesting client. No
// device publish reaches another subscriber: telemetry and method responses
// are acknowledged (QoS 1) and dropped.
func (k *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if strings.HasPrefix(pk.TopicName, "$iothub/twin/") {
		k.handleTwin(cl, pk.TopicName, pk.Payload)
	}
	return pk, packets.CodeSuccessIgnore
}

func (k *hook) respond(cl *mqtt.Client, status int, rid string, version int64, body []byte) {
	t := iothub.Topic{Kind: iothub.TopicTwinResponse, Status: status, RequestID: rid, Version: version, HasVersion: version > 0}
	if err := k.h.sendTo(cl.ID, t.String(), body); err != nil {
		k.h.opts.Logger.Debug("hub: response not delivered", "device", cl.ID, "status", status, "err", err)
	}
}

func (k *hook) handleTwin(cl *mqtt.Client, topic string, payload []byte) {
	h := k.h
	t, err := iothub.ParseTopic(topic)
	rid := t.RequestID
	if err != nil {
		// A $rid recovered from a malformed topic still gets its answer.
		if _, q, ok := strings.Cut(topic, "?"); ok {
			if v, err := url.ParseQuery(q); err == nil {
				rid = v.Get("$rid")
			}
		}
	}
	if ok, flood := h.allowTwin(cl.ID); !ok {
		if flood {
			h.opts.Logger.Warn("hub: disconnecting a device that keeps exceeding its twin request quota", "device", cl.ID)
			cl.Stop(packets.ErrQuotaExceeded)
			return
		}
		if rid != "" {
			k.respond(cl, 429, rid, 0, nil)
		}
		return
	}
	if err != nil {
		// Answer 400 if a $rid can be recovered, else drop.
		if rid != "" {
			k.respond(cl, 400, rid, 0, nil)
		}
		h.opts.Logger.Info("hub: bad twin topic", "device", cl.ID, "topic", topic, "err", err)
		return
	}
	switch t.Kind {
	case iothub.TopicTwinGet:
		h.mu.Lock()
		d := h.devices[cl.ID]
		var body []byte
		if d != nil {
			body, err = d.twinJSON()
		}
		h.mu.Unlock()
		switch {
		case d == nil:
			k.respond(cl, 404, t.RequestID, 0, nil)
		case err != nil:
			k.respond(cl, 500, t.RequestID, 0, nil)
		default:
			k.respond(cl, 200, t.RequestID, 0, body)
		}
	case iothub.TopicReportedPatch:
		if len(payload) > MaxPatchSize {
			k.respond(cl, 413, t.RequestID, 0, nil)
			return
		}
		v, err := h.applyReported(cl.ID, payload)
		switch {
		case errors.Is(err, ErrTwinTooLarge):
			k.respond(cl, 413, t.RequestID, 0, nil)
		case errors.Is(err, ErrInvalidPatch):
			k.respond(cl, 400, t.RequestID, 0, []byte(strconv.Quote(err.Error())))
		case errors.Is(err, ErrUnknownDevice):
			k.respond(cl, 404, t.RequestID, 0, nil)
		case err != nil:
			k.respond(cl, 500, t.RequestID, 0, nil)
		default:
			k.respond(cl, 204, t.RequestID, v, nil)
		}
	default:
		// Devices may not publish responses or desired patches.
		if t.RequestID != "" {
			k.respond(cl, 400, t.RequestID, 0, nil)
		}
	}
}
