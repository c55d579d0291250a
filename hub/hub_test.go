package hub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aduflash/aduflash/iothub"
	"github.com/aduflash/aduflash/iothub/iothubtest"
)

const (
	testHost = "hub.local"
	key1     = "6CLK6It9jOiABpFVu11CQDv9O49ebAneK3KbsvaoU1o="
	key2     = "c2Vjb25kIGtleSBmb3IgdGVzdHMgMDEyMzQ1Njc4OQ=="
	modelID  = "dtmi:azure:iot:deviceUpdateContractModel;2"
)

func newHub(t *testing.T, opts Options) *Hub {
	t.Helper()
	if opts.HostName == "" {
		opts.HostName = testHost
	}
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func cfgFor(h *Hub, dev, key string) iothub.Config {
	return iothub.Config{
		Identity:             iothub.ConnectionString{HostName: h.HostName(), DeviceID: dev, SharedAccessKey: key},
		ModelID:              modelID,
		Address:              h.Addr().String(),
		InsecurePlainTCP:     true,
		RequestTimeout:       5 * time.Second,
		ConnectTimeout:       5 * time.Second,
		KeepAlive:            30 * time.Second,
		MaxReconnectInterval: 500 * time.Millisecond,
	}
}

func asMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

func TestConnectTwinRoundTrip(t *testing.T) {
	h := newHub(t, Options{})
	if err := h.RegisterDevice("dev1", key1); err != nil {
		t.Fatal(err)
	}
	if _, err := h.SetDesired("dev1", json.RawMessage(`{"deviceUpdate":{"__t":"c","service":{"workflow":{"action":3,"id":"w1"}}}}`)); err != nil {
		t.Fatal(err)
	}
	c := iothubtest.Dial(t, cfgFor(h, "dev1", key1))
	if got := h.ModelID("dev1"); got != modelID {
		t.Fatalf("model id %q", got)
	}
	ctx := context.Background()

	// First event: the full twin.
	u := iothubtest.NextDesired(t, c)
	if !u.Full || u.Version != 2 || u.Twin.ReportedVersion != 1 {
		t.Fatalf("first event %+v", u)
	}
	tw, err := c.GetTwin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := asMap(t, tw.Desired)
	if d["deviceUpdate"].(map[string]any)["service"].(map[string]any)["workflow"].(map[string]any)["id"] != "w1" || tw.DesiredVersion != 2 {
		t.Fatalf("desired %s", tw.Desired)
	}

	v, err := c.UpdateReported(ctx, json.RawMessage(`{"a":1,"b":{"x":1,"y":2},"c":"<&>"}`))
	if err != nil || v != 2 {
		t.Fatalf("patch 1: %d %v", v, err)
	}
	v, err = c.UpdateReported(ctx, json.RawMessage(`{"a":null,"b":{"x":null,"z":3}}`))
	if err != nil || v != 3 {
		t.Fatalf("patch 2: %d %v", v, err)
	}
	tw, err = c.GetTwin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(tw.Reported) != `{"$version":3,"b":{"y":2,"z":3},"c":"<&>"}` {
		t.Fatalf("reported %s", tw.Reported)
	}

	// Malformed payload → 400 StatusError; the broker survives.
	if _, err := c.UpdateReported(ctx, json.RawMessage(`[1]`)); !errors.Is(err, iothub.ErrInvalidConfig) {
		t.Fatalf("client-side check: %v", err)
	}

	// Desired notification.
	dv, err := h.SetDesired("dev1", json.RawMessage(`{"deviceUpdate":{"service":{"workflow":{"action":255,"id":"nodeployment"}}},"k":null}`))
	if err != nil || dv != 3 {
		t.Fatalf("SetDesired %d %v", dv, err)
	}
	u = iothubtest.NextDesired(t, c)
	if u.Full || u.Version != 3 {
		t.Fatalf("patch event %+v", u)
	}
	p := asMap(t, u.Patch)
	if p["$version"].(float64) != 3 {
		t.Fatalf("patch %s", u.Patch)
	}
	if _, ok := p["k"]; !ok {
		t.Fatalf("null member not forwarded: %s", u.Patch)
	}
}

func TestMalformedRequestsGet400(t *testing.T) {
	h := newHub(t, Options{})
	_ = h.RegisterDevice("dev1", key1)
	c := iothubtest.Dial(t, cfgFor(h, "dev1", key1))
	_ = iothubtest.NextDesired(t, c)
	// Bypass the client's own validation by crafting raw requests via the hook.
	k := &hook{h: h}
	cl, ok := h.srv.Clients.Get("dev1")
	if !ok {
		t.Fatal("client not found")
	}
	for _, tc := range []struct{ topic, payload string }{
		{"$iothub/twin/PATCH/properties/reported/?$rid=900", `not json`},
		{"$iothub/twin/PATCH/properties/reported/?$rid=901", `[1,2]`},
		{"$iothub/twin/PATCH/properties/reported/?$rid=902", `{"a":1} {"b":2}`},
		{"$iothub/twin/bogus/?$rid=903", ``},
		{"$iothub/twin/GET", ``},
	} {
		k.handleTwin(cl, tc.topic, []byte(tc.payload))
	}
	// Broker and device still fine.
	if _, err := c.GetTwin(context.Background()); err != nil {
		t.Fatal(err)
	}
	tw, _ := h.Twin("dev1")
	if v := asMap(t, tw)["reported"].(map[string]any)["$version"].(float64); v != 1 {
		t.Fatalf("reported version changed: %v", v)
	}
}

func TestRefused(t *testing.T) {
	now := time.Now()
	h := newHub(t, Options{Now: func() time.Time { return now }})
	_ = h.RegisterDevice("dev1", key1)
	ctx := context.Background()

	cfg := cfgFor(h, "dev1", key2)
	if _, err := iothub.Dial(ctx, cfg); !errors.Is(err, iothub.ErrConnect) || !errors.Is(err, iothub.ErrUnauthorized) {
		t.Fatalf("bad key: %v", err)
	}
	cfg = cfgFor(h, "dev1", key1)
	cfg.Now = func() time.Time { return now.Add(-2 * time.Hour) } // token expired an hour ago
	if _, err := iothub.Dial(ctx, cfg); !errors.Is(err, iothub.ErrConnect) {
		t.Fatalf("expired token: %v", err)
	}
	cfg = cfgFor(h, "nodev", key1)
	if _, err := iothub.Dial(ctx, cfg); !errors.Is(err, iothub.ErrConnect) || !errors.Is(err, iothub.ErrUnauthorized) {
		t.Fatalf("unknown device: %v", err)
	}
	cfg = cfgFor(h, "dev1", key1)
	cfg.Identity.HostName = "other.host"
	if _, err := iothub.Dial(ctx, cfg); !errors.Is(err, iothub.ErrConnect) {
		t.Fatalf("wrong host: %v", err)
	}
	// Sanity: the right key with the right clock works.
	iothubtest.Dial(t, cfgFor(h, "dev1", key1))
}

func TestReconnectAfterKick(t *testing.T) {
	h := newHub(t, Options{})
	_ = h.RegisterDevice("dev1", key1)
	var lost atomic.Int32
	var last atomic.Bool
	cfg := cfgFor(h, "dev1", key1)
	cfg.OnConnectionChange = func(up bool, _ error) {
		if !up {
			lost.Add(1)
		}
		last.Store(up)
	}
	c := iothubtest.Dial(t, cfg)
	if u := iothubtest.NextDesired(t, c); !u.Full {
		t.Fatalf("%+v", u)
	}
	if _, err := h.SetDesired("dev1", json.RawMessage(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	if u := iothubtest.NextDesired(t, c); u.Full || u.Version != 2 {
		t.Fatalf("%+v", u)
	}
	if err := h.Disconnect("dev1"); err != nil {
		t.Fatal(err)
	}
	// Changed while (possibly) disconnected: the full twin after the reconnect carries it,
	// or, when the client was back before the change, a desired patch follows that twin.
	_, _ = h.SetDesired("dev1", json.RawMessage(`{"y":2}`))
	for full, gotY := false, false; !full || !gotY; {
		u := iothubtest.NextDesired(t, c)
		var m map[string]any
		if u.Full {
			full = true
			m = asMap(t, u.Twin.Desired)
		} else {
			m = asMap(t, u.Patch)
		}
		if m["y"] == float64(2) {
			if u.Version != 3 {
				t.Fatalf("y with $version %d: %+v", u.Version, u)
			}
			gotY = true
		} else if u.Full && u.Version != 2 {
			t.Fatalf("full twin after reconnect %s", u.Twin.Desired)
		}
	}
	// The loss is reported asynchronously, possibly after the reconnect; the last report
	// must say "connected".
	for deadline := time.Now().Add(5 * time.Second); lost.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if lost.Load() == 0 {
		t.Fatal("connection loss not reported")
	}
	for deadline := time.Now().Add(5 * time.Second); !last.Load() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !last.Load() {
		t.Fatal("the last connection report says disconnected while the client is connected")
	}
	if _, err := c.UpdateReported(context.Background(), json.RawMessage(`{"ok":true}`)); err != nil {
		t.Fatal(err)
	}
}

func TestSASRenewal(t *testing.T) {
	h := newHub(t, Options{})
	_ = h.RegisterDevice("dev1", key1)
	cfg := cfgFor(h, "dev1", key1)
	cfg.TokenTTL = 2 * time.Second // renewal reconnect after 1.6 s
	c := iothubtest.Dial(t, cfg)
	if u := iothubtest.NextDesired(t, c); !u.Full {
		t.Fatal(u)
	}
	start := time.Now()
	if u := iothubtest.NextDesired(t, c); !u.Full {
		t.Fatalf("expected full twin after renewal, got %+v", u)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("renewal took %v", el)
	}
}

func TestDuplicateDeviceID(t *testing.T) {
	h := newHub(t, Options{})
	_ = h.RegisterDevice("dev1", key1)
	lostA := make(chan struct{}, 1)
	cfgA := cfgFor(h, "dev1", key1)
	cfgA.OnConnectionChange = func(up bool, _ error) {
		if !up {
			select {
			case lostA <- struct{}{}:
			default:
			}
		}
	}
	// A may connect only once, so that its automatic reconnect cannot kick
	// B in turn (which is what two live clients with one id do on IoT Hub).
	var dials atomic.Int32
	cfgA.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) > 1 {
			return nil, errors.New("test: A stays offline")
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	a := iothubtest.Dial(t, cfgA)
	_ = iothubtest.NextDesired(t, a)
	b := iothubtest.Dial(t, cfgFor(h, "dev1", key1))
	select {
	case <-lostA:
	case <-time.After(5 * time.Second):
		t.Fatal("old connection not dropped")
	}
	if a.Connected() {
		t.Fatal("A still connected")
	}
	if _, err := a.GetTwin(context.Background()); !errors.Is(err, iothub.ErrNotConnected) {
		t.Fatalf("A GetTwin: %v", err)
	}
	_ = iothubtest.NextDesired(t, b)
	if _, err := b.GetTwin(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// testPKI is a CA with leaf certificates for the hub (server) and for devices (clients).
type testPKI struct {
	t     *testing.T
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	pool  *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{t: t, ca: ca, caKey: caKey, pool: pool}
}

// leaf issues a certificate for cn: the hub's (server, for testHost) or a device's (client).
func (p *testPKI) leaf(cn string, server bool) tls.Certificate {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{testHost}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.caKey)
	if err != nil {
		p.t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// serverTLS is the hub's TLS configuration: its certificate, client certificates asked for.
func (p *testPKI) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.leaf(testHost, true)}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
}

// clientTLS trusts the hub's certificate.
func (p *testPKI) clientTLS() *tls.Config { return &tls.Config{RootCAs: p.pool, ServerName: testHost} }

func TestTLSAndX509(t *testing.T) {
	pki := newTestPKI(t)
	leaf := pki.leaf
	devCert := leaf("dev-x509", false)
	h := newHub(t, Options{TLSConfig: pki.serverTLS()})
	_ = h.RegisterDevice("dev1", key1)
	_ = h.RegisterDeviceX509("dev-x509", Thumbprint(devCert.Certificate[0]))
	pool := pki.pool

	// SAS over TLS.
	cfg := cfgFor(h, "dev1", key1)
	cfg.InsecurePlainTCP = false
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: testHost}
	c := iothubtest.Dial(t, cfg)
	if u := iothubtest.NextDesired(t, c); !u.Full {
		t.Fatal(u)
	}

	// Default (Azure) roots must reject the local CA.
	cfg.TLSConfig = &tls.Config{ServerName: testHost}
	if _, err := iothub.Dial(context.Background(), cfg); !errors.Is(err, iothub.ErrConnect) {
		t.Fatalf("untrusted server accepted: %v", err)
	}

	// X.509 client certificate.
	xc := iothub.Config{
		ConnectionString:  "HostName=" + testHost + ";DeviceId=dev-x509;x509=true",
		Address:           h.Addr().String(),
		TLSConfig:         &tls.Config{RootCAs: pool, ServerName: testHost},
		ClientCertificate: &devCert,
		ModelID:           modelID,
	}
	x := iothubtest.Dial(t, xc)
	if u := iothubtest.NextDesired(t, x); !u.Full {
		t.Fatal(u)
	}
	if _, err := x.UpdateReported(context.Background(), json.RawMessage(`{"x509":true}`)); err != nil {
		t.Fatal(err)
	}
	// A certificate with another thumbprint is refused.
	other := leaf("dev-x509", false)
	xc.ClientCertificate = &other
	if _, err := iothub.Dial(context.Background(), xc); !errors.Is(err, iothub.ErrConnect) {
		t.Fatalf("wrong client cert accepted: %v", err)
	}
}

func TestPassedListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := newHub(t, Options{Listener: ln})
	_ = h.RegisterDevice("dev1", key1)
	c := iothubtest.Dial(t, cfgFor(h, "dev1", key1))
	if u := iothubtest.NextDesired(t, c); !u.Full {
		t.Fatal(u)
	}
	if !h.Connected("dev1") {
		t.Fatal("not connected")
	}
}
