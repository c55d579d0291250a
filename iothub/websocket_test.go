package iothub

// MQTT over WebSockets against an in-process stand-in for IoT Hub's port-443 endpoint: an
// HTTPS server (certificates from a test CA) that records each opening handshake and upgrades
// it with gorilla/websocket, feeding the connections to an embedded mochi-mqtt broker whose
// hook records the CONNECT and answers the twin topics like IoT Hub.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aduflash/aduflash/internal/testwait"
)

// What IoT Hub's CONNECT username must be for mosqHub / mosqDeviceID / mosqModelID.
const wsWantUsername = mosqHub + "/" + mosqDeviceID + "/?api-version=" + DefaultAPIVersion +
	"&model-id=dtmi%3Aazure%3Aiot%3AdeviceUpdateContractModel%3B2"

// wsUpgrade is what the HTTPS side saw of one WebSocket opening handshake.
type wsUpgrade struct {
	method, requestURI, host, upgrade, protocol, version string
	tlsVersion                                           uint16
	peerCN                                               string
}

// wsConnect is what the broker saw of one MQTT CONNECT.
type wsConnect struct {
	clientID, username, password string
	clean                        bool
	keepalive                    uint16
}

type wsTestHub struct {
	addr   string
	pool   *x509.CertPool
	ca     *mosqCert
	reject int // HTTP status to refuse upgrades with; 0 accepts

	mu       sync.Mutex
	upgrades []wsUpgrade
	connects []wsConnect
	twinReqs chan mosqMsg

	conns chan net.Conn
	done  chan struct{}
}

func newWSTestHub(t *testing.T, reject int) *wsTestHub {
	t.Helper()
	ca := mosqNewCA(t, "aduflash ws test CA")
	server := ca.issue(t, "localhost", true)
	h := &wsTestHub{
		ca:       ca,
		pool:     x509.NewCertPool(),
		reject:   reject,
		twinReqs: make(chan mosqMsg, 100),
		conns:    make(chan net.Conn),
		done:     make(chan struct{}),
	}
	h.pool.AddCert(ca.cert)

	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(&wsTestHook{h: h}, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("ws", &wsChanListener{h: h})); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}

	hs := httptest.NewUnstartedServer(h)
	hs.TLS = &tls.Config{
		Certificates: []tls.Certificate{server.tls},
		ClientCAs:    h.pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	}
	hs.StartTLS()
	h.addr = hs.Listener.Addr().String()
	t.Cleanup(func() {
		close(h.done)
		hs.Close()
		_ = srv.Close()
	})
	return h
}

func (h *wsTestHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u := wsUpgrade{
		method:     r.Method,
		requestURI: r.RequestURI,
		host:       r.Host,
		upgrade:    r.Header.Get("Upgrade"),
		protocol:   r.Header.Get("Sec-WebSocket-Protocol"),
		version:    r.Header.Get("Sec-WebSocket-Version"),
	}
	if r.TLS != nil {
		u.tlsVersion = r.TLS.Version
		if len(r.TLS.PeerCertificates) > 0 {
			u.peerCN = r.TLS.PeerCertificates[0].Subject.CommonName
		}
	}
	h.mu.Lock()
	h.upgrades = append(h.upgrades, u)
	h.mu.Unlock()
	if h.reject != 0 {
		http.Error(w, `{"errorCode":401002,"message":"test refusal"}`, h.reject)
		return
	}
	if r.URL.Path != WebSocketPath {
		http.NotFound(w, r)
		return
	}
	up := websocket.Upgrader{Subprotocols: []string{"mqtt"}}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	select {
	case h.conns <- &wsServerConn{Conn: ws.NetConn(), ws: ws}:
	case <-h.done:
		_ = ws.Close()
	}
}

func (h *wsTestHub) snapshot() ([]wsUpgrade, []wsConnect) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]wsUpgrade(nil), h.upgrades...), append([]wsConnect(nil), h.connects...)
}

func (h *wsTestHub) nextTwinRequest(t *testing.T, what string) mosqMsg {
	t.Helper()
	return testwait.Recv(t, h.twinReqs, 5*time.Second, what+" at the broker")
}

// wsChanListener is the net.Listener mochi serves: the upgraded WebSockets.
type wsChanListener struct{ h *wsTestHub }

func (l *wsChanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.h.conns:
		return c, nil
	case <-l.h.done:
		return nil, net.ErrClosed
	}
}
func (l *wsChanListener) Close() error   { return nil }
func (l *wsChanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// wsServerConn is the broker's side of a WebSocket as a byte stream (written independently
// of the client's wsConn): whole binary messages in, one binary message per Write out.
type wsServerConn struct {
	net.Conn // addresses and deadlines of the underlying TLS connection
	ws       *websocket.Conn
	rmu      sync.Mutex
	buf      []byte
	wmu      sync.Mutex
}

func (c *wsServerConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.buf) == 0 {
		typ, msg, err := c.ws.ReadMessage()
		if err != nil {
			return 0, err
		}
		if typ != websocket.BinaryMessage {
			return 0, errors.New("non-binary WebSocket message")
		}
		c.buf = msg
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

func (c *wsServerConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsServerConn) Close() error { return c.ws.Close() }

// wsTestHook records CONNECTs and answers twin GET and reported PATCH like IoT Hub.
type wsTestHook struct {
	mqtt.HookBase
	h *wsTestHub
}

func (k *wsTestHook) ID() string { return "ws-test-iothub" }

func (k *wsTestHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPublish
}

func (k *wsTestHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	k.h.mu.Lock()
	k.h.connects = append(k.h.connects, wsConnect{
		clientID:  pk.Connect.ClientIdentifier,
		username:  string(pk.Connect.Username),
		password:  string(pk.Connect.Password),
		clean:     pk.Connect.Clean,
		keepalive: pk.Connect.Keepalive,
	})
	k.h.mu.Unlock()
	return true
}

func (k *wsTestHook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

func (k *wsTestHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !strings.HasPrefix(pk.TopicName, "$iothub/") {
		return pk, nil
	}
	k.h.twinReqs <- mosqMsg{pk.TopicName, string(pk.Payload)}
	t, err := ParseTopic(pk.TopicName)
	if err != nil {
		return pk, packets.CodeSuccessIgnore
	}
	var resp Topic
	var body []byte
	switch t.Kind {
	case TopicTwinGet:
		resp = Topic{Kind: TopicTwinResponse, Status: 200, RequestID: t.RequestID}
		body = []byte(`{"desired":` + mosqTwinDesired + `,"reported":` + mosqTwinReported + `}`)
	case TopicReportedPatch:
		resp = Topic{Kind: TopicTwinResponse, Status: 204, RequestID: t.RequestID, Version: mosqReportedVer, HasVersion: true}
	default:
		return pk, packets.CodeSuccessIgnore
	}
	_ = cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   resp.String(),
		Payload:     body,
	})
	return pk, packets.CodeSuccessIgnore
}

func wsConfig(h *wsTestHub, x509Cert *tls.Certificate) Config {
	cs := "HostName=" + mosqHub + ";DeviceId=" + mosqDeviceID + ";SharedAccessKey=" + vecKey
	if x509Cert != nil {
		cs = "HostName=" + mosqHub + ";DeviceId=" + mosqDeviceID + ";x509=true"
	}
	return Config{
		ConnectionString:  cs,
		ModelID:           mosqModelID,
		WebSocket:         true,
		Address:           h.addr,
		TLSConfig:         &tls.Config{RootCAs: h.pool},
		ClientCertificate: x509Cert,
		KeepAlive:         30 * time.Second,
		RequestTimeout:    5 * time.Second,
		ConnectTimeout:    5 * time.Second,
	}
}

func TestWebSocketTwinRoundTrip(t *testing.T) {
	for _, mode := range []string{"sas", "x509"} {
		t.Run(mode, func(t *testing.T) {
			h := newWSTestHub(t, 0)
			var cert *tls.Certificate
			if mode == "x509" {
				cert = &h.ca.issue(t, mosqDeviceID, false).tls
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, wsConfig(h, cert))
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()

			// The full twin GET after connect, answered through the WebSocket.
			get := h.nextTwinRequest(t, "automatic twin GET")
			mosqCheckRequest(t, get, `^\$iothub/twin/GET/\?\$rid=\d+$`, "")
			u := mosqNextDesired(t, c)
			if !u.Full || u.Version != 5 || u.Twin.ReportedVersion != 10 {
				t.Fatalf("first event = %+v, want the full twin (desired 5, reported 10)", u)
			}
			mosqJSONEqual(t, "desired", u.Twin.Desired, mosqTwinDesired)

			// An explicit GET and a reported PATCH.
			tw, err := c.GetTwin(ctx)
			if err != nil || tw.DesiredVersion != 5 {
				t.Fatalf("GetTwin = %+v, %v", tw, err)
			}
			h.nextTwinRequest(t, "explicit twin GET")
			const patch = `{"deviceUpdate":{"__t":"c","agent":{"state":6}}}`
			v, err := c.UpdateReported(ctx, []byte(patch))
			if err != nil || v != mosqReportedVer {
				t.Fatalf("UpdateReported = %d, %v; want %d", v, err, mosqReportedVer)
			}
			mosqCheckRequest(t, h.nextTwinRequest(t, "reported PATCH"),
				`^\$iothub/twin/PATCH/properties/reported/\?\$rid=\d+$`, patch)

			// The opening handshake as IoT Hub's endpoint expects it.
			ups, cons := h.snapshot()
			if len(ups) != 1 || len(cons) != 1 {
				t.Fatalf("%d upgrades, %d CONNECTs; want 1 each", len(ups), len(cons))
			}
			up := ups[0]
			wantURI := "/$iothub/websocket?iothub-no-client-cert=true"
			wantCN := ""
			if mode == "x509" {
				wantURI, wantCN = "/$iothub/websocket", mosqDeviceID
			}
			if up.method != http.MethodGet || up.requestURI != wantURI {
				t.Errorf("request = %s %s, want GET %s", up.method, up.requestURI, wantURI)
			}
			if up.protocol != "mqtt" || !strings.EqualFold(up.upgrade, "websocket") || up.version != "13" {
				t.Errorf("Sec-WebSocket-Protocol %q, Upgrade %q, Sec-WebSocket-Version %q; want mqtt, websocket, 13",
					up.protocol, up.upgrade, up.version)
			}
			if up.host != h.addr {
				t.Errorf("Host = %q, want %q", up.host, h.addr)
			}
			if up.tlsVersion < tls.VersionTLS12 {
				t.Errorf("TLS version %s, want 1.2 or later", tls.VersionName(up.tlsVersion))
			}
			if up.peerCN != wantCN {
				t.Errorf("client certificate CN = %q, want %q", up.peerCN, wantCN)
			}

			// The same CONNECT as on 8883.
			con := cons[0]
			if con.clientID != mosqDeviceID || con.username != wsWantUsername || con.clean || con.keepalive != 30 {
				t.Errorf("CONNECT = %+v, want client id %s, username %s, clean session 0, keep-alive 30",
					con, mosqDeviceID, wsWantUsername)
			}
			if mode == "x509" {
				if con.password != "" {
					t.Errorf("X.509 CONNECT carries password %q", con.password)
				}
				return
			}
			tok, err := ParseSASToken(con.password)
			if err != nil {
				t.Fatalf("CONNECT password %q: %v", con.password, err)
			}
			if err := tok.Verify(vecKey, ResourceURI(mosqHub, mosqDeviceID, ""), time.Now()); err != nil {
				t.Errorf("SAS token in CONNECT: %v", err)
			}
		})
	}
}

// The SAS renewal forces a reconnect by closing the connection under paho; over a WebSocket
// that must lead to a new handshake, a CONNECT with a new token and a new full twin.
func TestWebSocketSASRenewalReconnects(t *testing.T) {
	h := newWSTestHub(t, 0)
	cfg := wsConfig(h, nil)
	cfg.TokenTTL = 2 * time.Second // reconnect after 1.6 s
	cfg.MaxReconnectInterval = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	for i := range 2 {
		select {
		case u := <-c.Desired():
			if !u.Full {
				t.Fatalf("event %d = %+v, want a full twin", i, u)
			}
		case <-ctx.Done():
			t.Fatalf("only %d full twins delivered", i)
		}
	}
	ups, cons := h.snapshot()
	if len(ups) < 2 || len(cons) < 2 {
		t.Fatalf("%d upgrades, %d CONNECTs; want at least 2 each", len(ups), len(cons))
	}
	if ups[1].requestURI != "/$iothub/websocket?iothub-no-client-cert=true" {
		t.Errorf("second handshake %q", ups[1].requestURI)
	}
	if cons[0].password == cons[1].password {
		t.Errorf("reconnect reused the SAS token")
	}
}

func TestWebSocketHandshakeRefused(t *testing.T) {
	h := newWSTestHub(t, http.StatusUnauthorized)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, wsConfig(h, nil))
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded against a server refusing the upgrade")
	}
	if !errors.Is(err, ErrConnect) || !errors.Is(err, websocket.ErrBadHandshake) {
		t.Errorf("error %v does not wrap ErrConnect and websocket.ErrBadHandshake", err)
	}
	t.Log(err)
	for _, s := range []string{"401", "test refusal", "wss://" + h.addr + "/$iothub/websocket"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestWebSocketAddressAndURL(t *testing.T) {
	sas := "HostName=h.example;DeviceId=d;SharedAccessKey=" + vecKey
	for _, tc := range []struct {
		cfg      Config
		wantAddr string
		wantURL  string
	}{
		{Config{ConnectionString: sas}, "h.example:8883", ""},
		{Config{ConnectionString: sas, WebSocket: true}, "h.example:443",
			"wss://h.example/$iothub/websocket?iothub-no-client-cert=true"},
		{Config{ConnectionString: sas + ";GatewayHostName=gw.local", WebSocket: true}, "gw.local:443",
			"wss://gw.local/$iothub/websocket?iothub-no-client-cert=true"},
		{Config{ConnectionString: "HostName=h.example;DeviceId=d;x509=true", ClientCertificate: &tls.Certificate{}, WebSocket: true},
			"h.example:443", "wss://h.example/$iothub/websocket"},
		{Config{ConnectionString: sas, WebSocket: true, Address: "127.0.0.1:8443"}, "127.0.0.1:8443",
			"wss://127.0.0.1:8443/$iothub/websocket?iothub-no-client-cert=true"},
		{Config{ConnectionString: sas, WebSocket: true, Address: "[::1]:443"}, "[::1]:443",
			"wss://[::1]/$iothub/websocket?iothub-no-client-cert=true"},
		{Config{ConnectionString: sas, WebSocket: true, InsecurePlainTCP: true, Address: "localhost:80"}, "localhost:80",
			"ws://localhost/$iothub/websocket?iothub-no-client-cert=true"},
	} {
		cfg := tc.cfg
		id, err := cfg.resolve()
		if err != nil {
			t.Fatalf("%+v: %v", tc.cfg, err)
		}
		if cfg.Address != tc.wantAddr {
			t.Errorf("%s: Address = %q, want %q", tc.cfg.ConnectionString, cfg.Address, tc.wantAddr)
		}
		c := &Client{cfg: cfg, id: id}
		if tc.wantURL != "" {
			if got := c.transport().webSocketURL().String(); got != tc.wantURL {
				t.Errorf("URL = %q, want %q", got, tc.wantURL)
			}
		}
		wantReneg := tls.RenegotiateNever
		if cfg.WebSocket {
			wantReneg = tls.RenegotiateOnceAsClient
		}
		if r := c.tlsConfig().Renegotiation; r != wantReneg {
			t.Errorf("%s: Renegotiation = %v, want %v", tc.wantAddr, r, wantReneg)
		}
	}
}

func TestLoadCAFile(t *testing.T) {
	dir := t.TempDir()
	ca := mosqNewCA(t, "file CA")
	leaf := ca.issue(t, "localhost", true)
	write := func(name string, blocks ...*pem.Block) string {
		var b []byte
		for _, blk := range blocks {
			b = append(b, pem.EncodeToMemory(blk)...)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyBlock := &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}

	t.Run("good", func(t *testing.T) {
		// A bundle with a non-certificate block (skipped) and the Azure roots.
		p := write("bundle.pem", keyBlock, &pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
		b, _ := os.ReadFile(p)
		if err := os.WriteFile(p, append(b, AzureRootsPEM()...), 0o600); err != nil {
			t.Fatal(err)
		}
		pool, err := LoadCAFile(p)
		if err != nil {
			t.Fatalf("LoadCAFile: %v", err)
		}
		if _, err := leaf.cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"}); err != nil {
			t.Errorf("certificate issued by the file's CA does not verify: %v", err)
		}
		blk, _ := pem.Decode(AzureRootsPEM())
		root, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := root.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
			t.Errorf("%s from later in the file is not in the pool: %v", root.Subject.CommonName, err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		p := filepath.Join(dir, "nonexistent.pem")
		_, err := LoadCAFile(p)
		if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), p) {
			t.Errorf("error %v: want fs.ErrNotExist and ErrInvalidConfig naming %s", err, p)
		}
	})
	t.Run("no certificates", func(t *testing.T) {
		for name, p := range map[string]string{
			"key only": write("key.pem", keyBlock),
			"empty":    write("empty.pem"),
		} {
			_, err := LoadCAFile(p)
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), p) ||
				!strings.Contains(err.Error(), "no PEM CERTIFICATE") {
				t.Errorf("%s: error %v: want ErrInvalidConfig naming %s and saying no certificate", name, err, p)
			}
		}
	})
	t.Run("corrupt certificate", func(t *testing.T) {
		p := write("bad.pem", &pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw},
			&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
		_, err := LoadCAFile(p)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), p+": certificate 2") {
			t.Errorf("error %v: want ErrInvalidConfig naming %s and certificate 2", err, p)
		}
	})
}

// wsPair is a WebSocket connection as NewWebSocketConn presents it, and the
// bytes its server side received.
func wsPair(t *testing.T) (net.Conn, <-chan []byte) {
	t.Helper()
	got := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		var all []byte
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				got <- all
				return
			}
			all = append(all, b...)
		}
	}))
	t.Cleanup(srv.Close)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := NewWebSocketConn(ws)
	t.Cleanup(func() { c.Close() })
	return c, got
}

// TestWebSocketConnDeadlineWhileWriting: an MQTT server refreshes a
// connection's deadlines from its read loop while its write loop sends
// (mochi-mqtt does); gorilla/websocket forbids that on its own Conn, so
// wsConn must serialise it. The race detector (CI's -race run) fails this
// test when it does not; without it, every byte must still arrive.
func TestWebSocketConnDeadlineWhileWriting(t *testing.T) {
	c, got := wsPair(t)
	const n = 200
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range n {
			_ = c.SetDeadline(time.Now().Add(time.Minute))
		}
	}()
	for i := range n {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	wg.Wait()
	c.Close()
	select {
	case b := <-got:
		if len(b) != n {
			t.Fatalf("the server received %d bytes, want %d", len(b), n)
		}
		for i, v := range b {
			if v != byte(i) {
				t.Fatalf("byte %d = %d, out of order", i, v)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server never saw the connection close")
	}
}

// TestWebSocketConnWriteDeadlineApplies: a deadline set through the
// net.Conn reaches the next write.
func TestWebSocketConnWriteDeadlineApplies(t *testing.T) {
	c, _ := wsPair(t)
	if err := c.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Write([]byte("late"))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("write after a past deadline = %v, want a timeout", err)
	}
}
