package iothub

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Defaults used when the corresponding Config field is zero.
const (
	DefaultKeepAlive = 240 * time.Second
	MaxKeepAlive     = 1177 * time.Second
	DefaultTokenTTL  = time.Hour
	// MaxTokenTTL is the longest SAS token lifetime the client mints: IoT Hub's maintainers
	// give ten years as the longest supported (Azure/azure-iot-sdk-c#714), and a token that
	// outlives its leak by decades is a standing key.
	MaxTokenTTL                 = 10 * 365 * 24 * time.Hour
	DefaultRequestTimeout       = 30 * time.Second
	DefaultConnectTimeout       = 30 * time.Second
	DefaultMaxReconnectInterval = 2 * time.Minute
	DefaultPort                 = 8883
)

// Config configures a Client. Only the identity is required.
type Config struct {
	// ConnectionString, if set, is parsed and overrides Identity.
	ConnectionString string
	// Identity is the device identity (see ParseConnectionString).
	Identity ConnectionString

	// ModelID is the PnP model announced as model-id (mandatory for ADU,
	// e.g. "dtmi:azure:iot:deviceUpdateContractModel;2"). Empty omits it.
	ModelID string
	// APIVersion defaults to DefaultAPIVersion.
	APIVersion string

	// Address is the "host:port" to dial. Default: GatewayHostName (if set)
	// or HostName, port 8883 (443 with WebSocket).
	Address string
	// WebSocket carries MQTT over a WebSocket (subprotocol "mqtt") at
	// wss://{Address}/$iothub/websocket, IoT Hub's endpoint on port 443 for
	// networks that block 8883. SAS clients add ?iothub-no-client-cert=true
	// as the Azure SDKs do; X.509 client certificates work as on 8883. The
	// CONNECT is unchanged. To reach IoT Hub through an HTTP proxy, tunnel in
	// Dial (ProxyDial).
	WebSocket bool
	// Dial opens the TCP connection (TLS, and the WebSocket if enabled, run
	// over it). Default: (&net.Dialer{}).DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is cloned and completed: RootCAs defaults to AzureRootCAs(),
	// ServerName to the host of Address, MinVersion to TLS 1.2, and
	// ClientCertificate is added to Certificates. See LoadCAFile for a
	// private CA bundle (IoT Edge gateway, TLS-inspecting proxy).
	TLSConfig *tls.Config
	// ClientCertificate authenticates with X.509 (Identity.X509 must be true).
	ClientCertificate *tls.Certificate
	// InsecurePlainTCP disables TLS. Only for a local emulator; IoT Hub
	// refuses plain MQTT.
	InsecurePlainTCP bool

	// KeepAlive defaults to DefaultKeepAlive; must not exceed MaxKeepAlive.
	KeepAlive time.Duration
	// TokenTTL is the SAS token lifetime (default DefaultTokenTTL, at most
	// MaxTokenTTL). The client reconnects with a fresh token after 80% of it
	// has elapsed.
	TokenTTL time.Duration
	// Now is the clock used for SAS expiry. Default time.Now.
	Now func() time.Time
	// RequestTimeout bounds twin requests whose context has no deadline.
	RequestTimeout time.Duration
	// ConnectTimeout bounds each network connect + MQTT CONNECT.
	ConnectTimeout time.Duration
	// MaxReconnectInterval caps paho's exponential reconnect backoff.
	MaxReconnectInterval time.Duration

	// OnConnectionChange, if set, is called (from internal goroutines, one call at a time; it
	// must not block) when the connection is established (err == nil) or lost (err != nil).
	// The MQTT library reports a loss concurrently with the reconnect it starts, so a loss
	// can be reported after the new connection's "connected"; it is then followed by another
	// "connected": the last call always tells the current state.
	OnConnectionChange func(connected bool, err error)
	// Logger receives debug/warn records. Default: nothing is logged.
	Logger *slog.Logger
}

// Twin is a device twin as returned by a twin GET.
type Twin struct {
	Desired         json.RawMessage // desired document including "$version"
	Reported        json.RawMessage // reported document including "$version"
	DesiredVersion  int64
	ReportedVersion int64
}

// DesiredUpdate is delivered on Client.Desired.
//
// After every successful (re)connect — including the first — the client
// fetches the whole twin and delivers it with Full set, so the caller can
// reconcile (IoT Hub does not queue notifications for disconnected devices).
// Otherwise Patch holds a desired-property notification (a JSON merge patch
// of the desired document, including "$version"). Events are delivered in
// arrival order; a patch whose Version is <= the DesiredVersion of a later
// or earlier full twin is already contained in it.
type DesiredUpdate struct {
	Full    bool
	Twin    Twin            // valid if Full
	Patch   json.RawMessage // valid if !Full
	Version int64           // desired $version (of Twin.Desired or of Patch)
}

type twinResponse struct {
	topic   Topic
	payload []byte
	err     error
}

// Client is a connected IoT Hub device client. It is safe for concurrent use.
type Client struct {
	cfg      Config
	id       ConnectionString
	username string
	log      *slog.Logger
	mc       paho.Client

	mu       sync.Mutex
	notifyMu sync.Mutex // serialises OnConnectionChange calls
	pending  map[string]chan twinResponse
	nextRID  uint64
	conn     *dropConn
	renew    *time.Timer
	closed   bool
	ready    chan error // first connection's subscribe result; nil afterwards
	queue    []DesiredUpdate
	queueSig chan struct{}

	done   chan struct{}
	events chan DesiredUpdate
	wg     sync.WaitGroup
}

func (cfg *Config) resolve() (ConnectionString, error) {
	id := cfg.Identity
	if cfg.ConnectionString != "" {
		var err error
		if id, err = ParseConnectionString(cfg.ConnectionString); err != nil {
			return id, err
		}
	} else if err := id.Validate(); err != nil {
		return id, err
	}
	if id.X509 && cfg.ClientCertificate == nil && (cfg.TLSConfig == nil || (len(cfg.TLSConfig.Certificates) == 0 && cfg.TLSConfig.GetClientCertificate == nil)) {
		return id, fmt.Errorf("%w: x509=true needs ClientCertificate", ErrInvalidConfig)
	}
	if id.X509 && cfg.InsecurePlainTCP {
		return id, fmt.Errorf("%w: X.509 authentication needs TLS", ErrInvalidConfig)
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.KeepAlive < time.Second || cfg.KeepAlive > MaxKeepAlive {
		return id, fmt.Errorf("%w: KeepAlive %v outside [1s, %v]", ErrInvalidConfig, cfg.KeepAlive, MaxKeepAlive)
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.TokenTTL < 2*time.Second {
		return id, fmt.Errorf("%w: TokenTTL %v too short", ErrInvalidConfig, cfg.TokenTTL)
	}
	if cfg.TokenTTL > MaxTokenTTL {
		return id, fmt.Errorf("%w: TokenTTL %v is longer than IoT Hub's %v (ten years)", ErrInvalidConfig, cfg.TokenTTL, MaxTokenTTL)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.MaxReconnectInterval <= 0 {
		cfg.MaxReconnectInterval = DefaultMaxReconnectInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{}).DialContext
	}
	if cfg.Address == "" {
		cfg.Address = DefaultAddress(id, cfg.WebSocket)
	}
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return id, fmt.Errorf("%w: Address %q: %w", ErrInvalidConfig, cfg.Address, err)
	}
	return id, nil
}

// DefaultAddress is the "host:port" Dial connects to when Config.Address is empty: the
// gateway (GatewayHostName) if there is one, else the hub (HostName), on port 8883, or 443
// with WebSocket.
func DefaultAddress(id ConnectionString, webSocket bool) string {
	h := id.HostName
	if id.GatewayHostName != "" {
		h = id.GatewayHostName
	}
	port := DefaultPort
	if webSocket {
		port = DefaultWebSocketPort
	}
	return net.JoinHostPort(h, strconv.Itoa(port))
}

// Dial connects to IoT Hub, subscribes to the twin topics and returns once
// the subscriptions are acknowledged. The first full twin is then delivered
// on Desired (see DesiredUpdate). Connection-refused errors wrap ErrConnect.
// After Dial the client reconnects by itself with exponential backoff until
// Close.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	id, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:      cfg,
		id:       id,
		username: Username(id.HostName, id.DeviceID, id.ModuleID, cfg.APIVersion, cfg.ModelID),
		log:      cfg.Logger,
		pending:  map[string]chan twinResponse{},
		ready:    make(chan error, 1),
		queueSig: make(chan struct{}, 1),
		done:     make(chan struct{}),
		events:   make(chan DesiredUpdate),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	opts := paho.NewClientOptions().
		AddBroker("tcp://" + cfg.Address). // scheme unused: openConn dials
		SetClientID(id.ClientID()).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetKeepAlive(cfg.KeepAlive).
		SetPingTimeout(min(cfg.KeepAlive, 30*time.Second)).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(false).
		SetMaxReconnectInterval(cfg.MaxReconnectInterval).
		SetOrderMatters(true).
		SetResumeSubs(false).
		SetCredentialsProvider(c.credentials).
		SetCustomOpenConnectionFn(c.openConn).
		SetDefaultPublishHandler(c.onMessage).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(c.onConnectionLost)
	c.mc = paho.NewClient(opts)
	ready := c.ready // onConnect clears c.ready; keep our reference

	tok := c.mc.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("%w: %w", ErrConnect, ctx.Err())
	}
	if err := tok.Error(); err != nil {
		c.Close()
		return nil, connectError(cfg.Address, err)
	}
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: subscribe: %w", ErrConnect, err)
	}
	c.wg.Add(1)
	go c.dispatch()
	return c, nil
}

// credentials is paho's CredentialsProvider: a fresh SAS token per connect.
func (c *Client) credentials() (string, string) {
	if c.id.X509 {
		return c.username, ""
	}
	sr := ResourceURI(c.id.HostName, c.id.DeviceID, c.id.ModuleID)
	tok, err := NewSASToken(c.id.SharedAccessKey, sr, c.id.SharedAccessKeyName, c.cfg.Now().Add(c.cfg.TokenTTL))
	if err != nil { // cannot happen: the key was validated in Dial
		c.log.Warn("iothub: SAS token", "err", err)
	}
	return c.username, tok
}

// connectError is ErrConnect with the cause of a failed first connect to addr, without the
// MQTT library's "network Error : " prefix: an error of openConn names the address and the
// cause (dial, TLS handshake); a network error after it (writing CONNECT, reading CONNACK,
// e.g. a TLS 1.3 server refusing the client certificate) is named as such.
func connectError(addr string, err error) error {
	if errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
		return fmt.Errorf("%w: %w: %s: %w", ErrConnect, ErrUnauthorized, addr, err)
	}
	var oe *openError
	if errors.As(err, &oe) {
		return fmt.Errorf("%w: %w", ErrConnect, oe.err)
	}
	if m, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := m.Unwrap(); len(errs) == 2 && errors.Is(errs[0], packets.ErrorNetworkError) && errs[1] != nil {
			return fmt.Errorf("%w: %s: MQTT CONNECT: %w", ErrConnect, addr, errs[1])
		}
	}
	return fmt.Errorf("%w: %s: %w", ErrConnect, addr, err)
}

// openError is an error of openConn. The MQTT library wraps it in its own
// "network Error : " text; Dial reports it without that.
type openError struct{ err error }

func (e *openError) Error() string { return e.err.Error() }
func (e *openError) Unwrap() error { return e.err }

func (c *Client) openConn(_ *url.URL, _ paho.ClientOptions) (net.Conn, error) {
	conn, err := c.open()
	if err != nil {
		return nil, &openError{err}
	}
	return conn, nil
}

// open opens the connection (transport) and keeps it as the one a forced reconnect drops.
func (c *Client) open() (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ConnectTimeout)
	defer cancel()
	go func() { // abort a pending dial on Close
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, err := c.transport().Open(ctx)
	if err != nil {
		return nil, err
	}
	dc := &dropConn{Conn: conn}
	c.mu.Lock()
	c.conn = dc
	c.mu.Unlock()
	return dc, nil
}

// transport is how the client reaches its address.
func (c *Client) transport() Transport {
	return Transport{Address: c.cfg.Address, WebSocket: c.cfg.WebSocket, NoClientCert: !c.id.X509,
		InsecurePlainTCP: c.cfg.InsecurePlainTCP, Dial: c.cfg.Dial, TLSConfig: c.tlsConfig(), Logger: c.log}
}

// errDropped is what Read returns after dropConn.drop: paho ignores
// "use of closed network connection" (it assumes it closed the connection
// itself), so a forced reconnect needs a different error.
var errDropped = errors.New("iothub: connection dropped for reconnect")

// dropConn lets the client force paho into its reconnect path.
type dropConn struct {
	net.Conn
	dropped atomic.Bool
}

func (d *dropConn) drop() {
	d.dropped.Store(true)
	_ = d.Conn.Close()
}

func (d *dropConn) Read(p []byte) (int, error) {
	n, err := d.Conn.Read(p)
	if err != nil && d.dropped.Load() {
		return n, errDropped
	}
	return n, err
}

func (c *Client) tlsConfig() *tls.Config {
	return CompleteTLSConfig(c.cfg.TLSConfig, c.cfg.Address, c.cfg.WebSocket, c.cfg.ClientCertificate)
}

func (c *Client) onConnect(mc paho.Client) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	conn := c.conn
	if c.renew != nil {
		c.renew.Stop()
		c.renew = nil
	}
	if !c.id.X509 {
		// Reconnect (with a fresh token) after 80% of the token lifetime.
		c.renew = time.AfterFunc(c.cfg.TokenTTL*4/5, func() {
			c.log.Debug("iothub: renewing SAS token by reconnecting")
			conn.drop()
		})
	}
	ready := c.ready
	c.ready = nil
	c.mu.Unlock()

	tok := mc.SubscribeMultiple(map[string]byte{FilterTwinResponses: 1, FilterDesired: 1}, nil)
	err := waitToken(tok, c.cfg.RequestTimeout, c.done)
	if err == nil {
		if res, ok := tok.(*paho.SubscribeToken); ok {
			for f, q := range res.Result() {
				if q == 0x80 {
					err = fmt.Errorf("subscription to %s refused", f)
				}
			}
		}
	}
	if ready != nil {
		ready <- err
	}
	if err != nil {
		c.log.Warn("iothub: subscribe failed, reconnecting", "err", err)
		conn.drop()
		return
	}
	c.notify(true, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	twin, err := c.GetTwin(ctx)
	if err != nil {
		if !errors.Is(err, ErrClosed) {
			c.log.Warn("iothub: full twin GET after connect failed, reconnecting", "err", err)
			conn.drop()
		}
		return
	}
	c.enqueue(DesiredUpdate{Full: true, Twin: twin, Version: twin.DesiredVersion})
}

// notify calls OnConnectionChange, one call at a time. For a loss it then checks whether
// the client is connected again already (the library reconnects concurrently) and if so
// says so, so that the last call tells the current state.
func (c *Client) notify(up bool, err error, mc paho.Client) {
	if c.cfg.OnConnectionChange == nil {
		return
	}
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	c.cfg.OnConnectionChange(up, err)
	if !up && mc != nil && mc.IsConnectionOpen() {
		c.cfg.OnConnectionChange(true, nil)
	}
}

func (c *Client) onConnectionLost(mc paho.Client, err error) {
	c.mu.Lock()
	if c.renew != nil {
		c.renew.Stop()
		c.renew = nil
	}
	for rid, ch := range c.pending {
		ch <- twinResponse{err: fmt.Errorf("%w: connection lost: %w", ErrNotConnected, err)}
		delete(c.pending, rid)
	}
	c.mu.Unlock()
	c.notify(false, err, mc)
}

// onMessage runs on paho's router goroutine and never blocks.
func (c *Client) onMessage(_ paho.Client, m paho.Message) {
	t, err := ParseTopic(m.Topic())
	if err != nil {
		c.log.Debug("iothub: ignoring message", "topic", m.Topic(), "err", err)
		return
	}
	payload := bytes.Clone(m.Payload())
	switch t.Kind {
	case TopicTwinResponse:
		c.mu.Lock()
		ch, ok := c.pending[t.RequestID]
		delete(c.pending, t.RequestID)
		c.mu.Unlock()
		if ok {
			ch <- twinResponse{topic: t, payload: payload}
		}
	case TopicDesiredPatch:
		v := t.Version
		if !t.HasVersion {
			v, _ = docVersion(payload)
		}
		c.enqueue(DesiredUpdate{Patch: payload, Version: v})
	default:
		c.log.Debug("iothub: unexpected topic", "topic", m.Topic())
	}
}

func (c *Client) enqueue(u DesiredUpdate) {
	c.mu.Lock()
	c.queue = append(c.queue, u)
	c.mu.Unlock()
	select {
	case c.queueSig <- struct{}{}:
	default:
	}
}

func (c *Client) dispatch() {
	defer c.wg.Done()
	defer close(c.events)
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.mu.Unlock()
			select {
			case <-c.queueSig:
				continue
			case <-c.done:
				return
			}
		}
		u := c.queue[0]
		c.queue[0] = DesiredUpdate{}
		c.queue = c.queue[1:]
		c.mu.Unlock()
		select {
		case c.events <- u:
		case <-c.done:
			return
		}
	}
}

// Desired returns the channel of twin events (see DesiredUpdate). It is
// closed by Close. Events queue up (unbounded) until read.
func (c *Client) Desired() <-chan DesiredUpdate { return c.events }

// GetTwin fetches the full twin.
func (c *Client) GetTwin(ctx context.Context) (Twin, error) {
	r, err := c.request(ctx, TopicTwinGetPrefix, nil)
	if err != nil {
		return Twin{}, fmt.Errorf("twin GET: %w", err)
	}
	if r.topic.Status >= 400 {
		return Twin{}, statusErr("twin GET", r)
	}
	return parseTwin(r.payload)
}

// UpdateReported sends a reported-properties merge patch (a JSON object;
// null members delete) and returns the new reported $version.
func (c *Client) UpdateReported(ctx context.Context, patch json.RawMessage) (int64, error) {
	trimmed := bytes.TrimSpace(patch)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return 0, fmt.Errorf("%w: reported patch must be a JSON object", ErrInvalidConfig)
	}
	r, err := c.request(ctx, TopicReportedPrefix, trimmed)
	if err != nil {
		return 0, fmt.Errorf("reported PATCH: %w", err)
	}
	if r.topic.Status >= 400 {
		return 0, statusErr("reported PATCH", r)
	}
	if !r.topic.HasVersion {
		return 0, fmt.Errorf("%w: reported PATCH response without $version", ErrMalformedResponse)
	}
	return r.topic.Version, nil
}

func statusErr(op string, r twinResponse) error {
	body := string(r.payload)
	if len(body) > 256 {
		body = body[:256]
	}
	return &StatusError{Op: op, Status: r.topic.Status, Body: body}
}

func (c *Client) request(ctx context.Context, prefix string, payload []byte) (twinResponse, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
		defer cancel()
	}
	ch := make(chan twinResponse, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return twinResponse{}, ErrClosed
	}
	c.nextRID++
	rid := strconv.FormatUint(c.nextRID, 10)
	c.pending[rid] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, rid)
		c.mu.Unlock()
	}()
	if !c.mc.IsConnectionOpen() {
		return twinResponse{}, ErrNotConnected
	}
	tok := c.mc.Publish(prefix+"?$rid="+rid, 0, false, payload)
	if err := waitToken(tok, c.cfg.RequestTimeout, ctx.Done()); err != nil {
		return twinResponse{}, fmt.Errorf("publish: %w", err)
	}
	select {
	case r := <-ch:
		return r, r.err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return twinResponse{}, fmt.Errorf("%w: $rid=%s", ErrTimeout, rid)
		}
		return twinResponse{}, ctx.Err()
	case <-c.done:
		return twinResponse{}, ErrClosed
	}
}

func waitToken(tok paho.Token, timeout time.Duration, cancel <-chan struct{}) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-t.C:
		return ErrTimeout
	case <-cancel:
		return ErrClosed
	}
}

func docVersion(doc []byte) (int64, error) {
	var v struct {
		Version *int64 `json:"$version"`
	}
	if err := json.Unmarshal(doc, &v); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrMalformedResponse, err)
	}
	if v.Version == nil {
		return 0, fmt.Errorf("%w: missing $version", ErrMalformedResponse)
	}
	return *v.Version, nil
}

func parseTwin(b []byte) (Twin, error) {
	var raw struct {
		Desired  json.RawMessage `json:"desired"`
		Reported json.RawMessage `json:"reported"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Twin{}, fmt.Errorf("%w: twin: %w", ErrMalformedResponse, err)
	}
	t := Twin{Desired: raw.Desired, Reported: raw.Reported}
	var err error
	if t.DesiredVersion, err = docVersion(raw.Desired); err != nil {
		return Twin{}, fmt.Errorf("twin desired: %w", err)
	}
	if t.ReportedVersion, err = docVersion(raw.Reported); err != nil {
		return Twin{}, fmt.Errorf("twin reported: %w", err)
	}
	return t, nil
}

// Connected reports whether the MQTT connection is currently up.
func (c *Client) Connected() bool { return c.mc.IsConnectionOpen() }

// Close disconnects and stops reconnecting. Pending requests fail with
// ErrClosed and the Desired channel is closed. Close is idempotent.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.renew != nil {
		c.renew.Stop()
		c.renew = nil
	}
	close(c.done)
	c.mu.Unlock()
	c.mc.Disconnect(250)
	c.wg.Wait()
}
