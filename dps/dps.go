package dps

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/aduflash/aduflash/internal/clock"
	"github.com/aduflash/aduflash/iothub"
)

// Defaults and protocol constants.
const (
	// DefaultGlobalEndpoint is the public DPS endpoint.
	DefaultGlobalEndpoint = "global.azure-devices-provisioning.net"
	// APIVersion is the DPS device API version in the CONNECT username.
	APIVersion = "2019-03-31"
	// SASKeyName is the key name (skn) of a device's registration SAS token.
	SASKeyName = "registration"
	// DefaultRetryAfter is the wait between polls when a reply does not say.
	DefaultRetryAfter = 3 * time.Second
	// DefaultTimeout bounds a whole registration whose context has no deadline.
	DefaultTimeout = 2 * time.Minute
	// MaxSessionBytes bounds what one registration's connection reads from the endpoint.
	MaxSessionBytes = 1 << 20
	// maxAttempts bounds the requests of one registration (polls and throttled retries).
	maxAttempts = 60
	tokenTTL    = time.Hour
)

// Config says who registers where.
type Config struct {
	// IDScope is the DPS instance's id scope (e.g. "0ne00000A0A"), RegistrationID the
	// device's registration id (for X.509: the certificate's common name).
	IDScope, RegistrationID string
	// SymmetricKey is the device's base64 key: an individual enrollment's, or the one
	// DeriveKey makes from an enrollment group's key. Empty with ClientCertificate.
	SymmetricKey string
	// ClientCertificate authenticates with X.509 instead.
	ClientCertificate *tls.Certificate

	// Endpoint is the DPS host, or host:port (default DefaultGlobalEndpoint on 8883, 443 with
	// WebSocket).
	Endpoint string
	// WebSocket carries MQTT over WebSockets (port 443).
	WebSocket bool
	// Dial opens the TCP connection (an HTTP proxy tunnel: iothub.ProxyDial). Default
	// net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is completed by iothub.CompleteTLSConfig (the Azure roots unless RootCAs).
	TLSConfig *tls.Config
	// InsecurePlainTCP leaves TLS out: a local stand-in only.
	InsecurePlainTCP bool
	// Now is the clock of the SAS expiry (default time.Now).
	Now func() time.Time
	// Logger receives debug records (default: none).
	Logger *slog.Logger
}

// Assignment is the outcome of a registration: the IoT Hub the device belongs to and its
// device id there, with what it was registered as.
type Assignment struct {
	IDScope        string `json:"idScope"`
	RegistrationID string `json:"registrationId"`
	AssignedHub    string `json:"assignedHub"`
	DeviceID       string `json:"deviceId"`
	Substatus      string `json:"substatus,omitempty"`
}

// DeriveKey returns the key of device registrationID in an enrollment group whose key is
// groupKey (both keys base64): base64(HMAC-SHA256(groupKey, registrationID)).
func DeriveKey(groupKey, registrationID string) (string, error) {
	k, err := base64.StdEncoding.DecodeString(groupKey)
	if err != nil || len(k) == 0 {
		return "", fmt.Errorf("%w: the group key is not base64", ErrInvalidConfig)
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(registrationID))
	return base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// Username is the CONNECT username of a registration.
func Username(idScope, registrationID string) string {
	return idScope + "/registrations/" + registrationID + "/api-version=" + APIVersion
}

// ResourceURI is the SAS "sr" of a registration (URL-encoded).
func ResourceURI(idScope, registrationID string) string {
	return iothub.URLEncode(idScope + "/registrations/" + registrationID)
}

// SASToken is the CONNECT password of a registration with a symmetric key.
func SASToken(keyB64, idScope, registrationID string, expiry time.Time) (string, error) {
	return iothub.NewSASToken(keyB64, ResourceURI(idScope, registrationID), SASKeyName, expiry)
}

// CheckRegistrationID accepts what DPS does: 1..128 characters of a-z, A-Z, 0-9, '-', '.',
// '_', ':' (it is also the MQTT client id and part of the username).
func CheckRegistrationID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("registration id %.130q: 1 to 128 characters", id)
	}
	for _, c := range id {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("-._:", c)) {
			return fmt.Errorf("registration id %q: %q is not a letter, digit, '-', '.', '_' or ':'", id, c)
		}
	}
	return nil
}

func (cfg *Config) resolve() error {
	switch {
	case cfg.IDScope == "" || strings.ContainsAny(cfg.IDScope, "/?#&= "):
		return fmt.Errorf("%w: id scope %q", ErrInvalidConfig, cfg.IDScope)
	case (cfg.SymmetricKey == "") == (cfg.ClientCertificate == nil):
		return fmt.Errorf("%w: give a symmetric key or an X.509 certificate (one of them)", ErrInvalidConfig)
	case cfg.ClientCertificate != nil && cfg.InsecurePlainTCP:
		return fmt.Errorf("%w: X.509 needs TLS", ErrInvalidConfig)
	}
	if err := CheckRegistrationID(cfg.RegistrationID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.SymmetricKey != "" {
		if _, err := base64.StdEncoding.DecodeString(cfg.SymmetricKey); err != nil {
			return fmt.Errorf("%w: the symmetric key is not base64: %w", ErrInvalidConfig, err)
		}
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultGlobalEndpoint
	}
	if _, _, err := net.SplitHostPort(cfg.Endpoint); err != nil {
		port := iothub.DefaultPort
		if cfg.WebSocket {
			port = iothub.DefaultWebSocketPort
		}
		cfg.Endpoint = net.JoinHostPort(cfg.Endpoint, strconv.Itoa(port))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Register provisions the device: it connects to DPS, asks to register and polls the
// operation until it is assigned, and returns the assignment. A refusal (an error status,
// a failed or disabled registration) is a *RefusedError; a throttled request (429) and
// a retriable server error are retried after their retry-after. Without a deadline in
// ctx it gives up after DefaultTimeout.
func Register(ctx context.Context, cfg Config) (Assignment, error) {
	if err := cfg.resolve(); err != nil {
		return Assignment{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	s, err := connect(ctx, cfg)
	if err != nil {
		return Assignment{}, err
	}
	defer s.close()
	st, err := s.run(ctx)
	if err != nil {
		return Assignment{}, err
	}
	return Assignment{IDScope: cfg.IDScope, RegistrationID: cfg.RegistrationID,
		AssignedHub: st.AssignedHub, DeviceID: st.DeviceID, Substatus: st.Substatus}, nil
}

// session is one registration's MQTT connection.
type session struct {
	cfg     Config
	mc      paho.Client
	replies chan Reply
	mu      sync.Mutex
	rid     int
}

func connect(ctx context.Context, cfg Config) (*session, error) {
	s := &session{cfg: cfg, replies: make(chan Reply, 4)}
	tr := iothub.Transport{Address: cfg.Endpoint, WebSocket: cfg.WebSocket, NoClientCert: cfg.ClientCertificate == nil,
		InsecurePlainTCP: cfg.InsecurePlainTCP, Dial: cfg.Dial, Logger: cfg.Logger,
		TLSConfig: iothub.CompleteTLSConfig(cfg.TLSConfig, cfg.Endpoint, cfg.WebSocket, cfg.ClientCertificate)}
	password := ""
	if cfg.SymmetricKey != "" {
		var err error
		if password, err = SASToken(cfg.SymmetricKey, cfg.IDScope, cfg.RegistrationID, cfg.Now().Add(tokenTTL)); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	opts := paho.NewClientOptions().
		AddBroker("tcp://" + cfg.Endpoint). // scheme unused: the transport dials
		SetClientID(cfg.RegistrationID).
		SetUsername(Username(cfg.IDScope, cfg.RegistrationID)).
		SetPassword(password).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(60 * time.Second).
		SetOrderMatters(false).
		SetCustomOpenConnectionFn(func(*url.URL, paho.ClientOptions) (net.Conn, error) {
			conn, err := tr.Open(ctx)
			if err != nil {
				return nil, err
			}
			return &limitConn{Conn: conn, left: MaxSessionBytes}, nil
		}).
		SetDefaultPublishHandler(s.onMessage)
	s.mc = paho.NewClient(opts)
	if err := wait(ctx, s.mc.Connect()); err != nil {
		s.mc.Disconnect(0)
		return nil, fmt.Errorf("%w: %s: %w", ErrConnect, cfg.Endpoint, err)
	}
	if err := wait(ctx, s.mc.Subscribe(FilterReplies, 1, nil)); err != nil {
		s.close()
		return nil, fmt.Errorf("%w: %s: subscribe: %w", ErrConnect, cfg.Endpoint, err)
	}
	return s, nil
}

func (s *session) close() { s.mc.Disconnect(100) }

// onMessage keeps replies that parse; the others are logged and dropped (a request whose
// reply never comes times out).
func (s *session) onMessage(_ paho.Client, m paho.Message) {
	r, err := ParseReply(m.Topic(), m.Payload())
	if err != nil {
		s.cfg.Logger.Warn("dps: ignoring a reply", "err", err)
		return
	}
	select {
	case s.replies <- r:
	default:
		s.cfg.Logger.Warn("dps: ignoring an unrequested reply", "rid", r.RequestID)
	}
}

// run registers and polls until the operation ends.
func (s *session) run(ctx context.Context) (*RegistrationState, error) {
	body, _ := json.Marshal(struct {
		RegistrationID string `json:"registrationId"`
	}{s.cfg.RegistrationID})
	topic := func(rid string) string { return TopicRegister + "?$rid=" + rid }
	for range maxAttempts {
		r, err := s.request(ctx, topic, body)
		if err != nil {
			return nil, err
		}
		switch {
		case r.Status == 429 || r.Status >= 500:
			s.cfg.Logger.Debug("dps: retrying", "status", r.Status, "in", r.RetryAfter)
		case r.Status >= 300:
			return nil, &RefusedError{Status: r.Status, ErrorCode: r.ErrorCode, Message: r.Message}
		case r.OperationStatus == StatusAssigned:
			return r.State, nil
		case r.OperationStatus == StatusAssigning || r.OperationStatus == StatusUnassigned:
			opID := r.OperationID
			topic = func(rid string) string { return TopicOperationStatus + "?$rid=" + rid + "&operationId=" + opID }
			body = nil
		default:
			re := &RefusedError{Status: r.Status, OpStatus: r.OperationStatus}
			if r.State != nil {
				re.ErrorCode, re.Message = r.State.ErrorCode, r.State.ErrorMessage
			}
			return nil, re
		}
		if err := clock.Sleep(ctx, orDefault(r.RetryAfter, DefaultRetryAfter)); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrTimeout, err)
		}
	}
	return nil, fmt.Errorf("%w: not assigned after %d requests", ErrTimeout, maxAttempts)
}

// request publishes one request and waits for its reply.
func (s *session) request(ctx context.Context, topic func(rid string) string, body []byte) (Reply, error) {
	s.mu.Lock()
	s.rid++
	rid := strconv.Itoa(s.rid)
	s.mu.Unlock()
	if err := wait(ctx, s.mc.Publish(topic(rid), 0, false, body)); err != nil {
		return Reply{}, fmt.Errorf("%w: publish: %w", ErrConnect, err)
	}
	for {
		select {
		case r := <-s.replies:
			if r.RequestID == rid {
				return r, nil
			}
		case <-ctx.Done():
			return Reply{}, fmt.Errorf("%w: no reply to request %s: %w", ErrTimeout, rid, ctx.Err())
		}
	}
}

// orDefault is d, or def when d is 0.
func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// wait waits for a paho token within ctx.
func wait(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// limitConn fails reads once left bytes were read: a DPS session is a few small packets.
type limitConn struct {
	net.Conn
	left int
}

var errSessionTooLong = errors.New("dps: the endpoint sent more than MaxSessionBytes")

func (c *limitConn) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errSessionTooLong
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= n
	return n, err
}
