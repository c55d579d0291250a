package iothub

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	vecHost = "unit-test.iot-azure.com"
	vecDev  = "unit_test_device"
	vecKey  = "6CLK6It9jOiABpFVu11CQDv9O49ebAneK3KbsvaoU1o="
)

func TestSASSpecVector(t *testing.T) {
	sr := ResourceURI(vecHost, vecDev, "")
	if sr != "unit-test.iot-azure.com%2Fdevices%2Funit_test_device" {
		t.Fatalf("sr = %q", sr)
	}
	tok, err := NewSASToken(vecKey, sr, "", time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	const want = "SharedAccessSignature sr=unit-test.iot-azure.com%2Fdevices%2Funit_test_device&sig=wV%2FVWXq%2BkmlSKWbWSRovF5o5jI9MBu0aS1N4cXQjt%2Bw%3D&se=1700000000"
	if tok != want {
		t.Fatalf("token\n got %s\nwant %s", tok, want)
	}
	// Independent computation straight from the §1.3 formula.
	key, _ := base64.StdEncoding.DecodeString(vecKey)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(url.QueryEscape(vecHost+"/devices/"+vecDev) + "\n1700000000"))
	sig := base64.StdEncoding.EncodeToString(m.Sum(nil))
	if sig != "wV/VWXq+kmlSKWbWSRovF5o5jI9MBu0aS1N4cXQjt+w=" {
		t.Fatalf("hand-computed sig %s", sig)
	}
	if !strings.Contains(tok, "&sig="+url.QueryEscape(sig)+"&") {
		t.Fatalf("token does not carry hand-computed sig")
	}
}

func TestSASModuleAndSkn(t *testing.T) {
	sr := ResourceURI("h.example", "d 1", "m/1")
	if sr != "h.example%2Fdevices%2Fd%201%2Fmodules%2Fm%2F1" {
		t.Fatalf("sr = %q", sr)
	}
	tok, err := NewSASToken(vecKey, sr, "iothubowner", time.Unix(5, 0))
	if err != nil || !strings.HasSuffix(tok, "&se=5&skn=iothubowner") {
		t.Fatalf("%q %v", tok, err)
	}
	if _, err := NewSASToken("not base64!", sr, "", time.Unix(5, 0)); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("bad key: %v", err)
	}
}

func TestSASVerifyWithClock(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	sr := ResourceURI(vecHost, vecDev, "")
	tok, err := NewSASToken(vecKey, sr, "", clock().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseSASToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Expiry != 1_003_600 {
		t.Fatalf("expiry %d", p.Expiry)
	}
	if err := p.Verify(vecKey, sr, clock()); err != nil {
		t.Fatalf("verify: %v", err)
	}
	now = now.Add(time.Hour) // exactly at se: expired
	if err := p.Verify(vecKey, sr, clock()); !errors.Is(err, ErrSASTokenExpired) {
		t.Fatalf("expired: %v", err)
	}
	now = time.Unix(1_000_000, 0)
	other := base64.StdEncoding.EncodeToString([]byte("another key 0123456789abcdef0123"))
	if err := p.Verify(other, sr, clock()); !errors.Is(err, ErrSASSignatureMismatch) {
		t.Fatalf("wrong key: %v", err)
	}
	if err := p.Verify(vecKey, ResourceURI(vecHost, "other", ""), clock()); !errors.Is(err, ErrSASSignatureMismatch) {
		t.Fatalf("wrong sr: %v", err)
	}
	for _, bad := range []string{"", "sr=a&sig=b&se=1", "SharedAccessSignature sig=b&se=1", "SharedAccessSignature sr=a&se=1", "SharedAccessSignature sr=a&sig=b", "SharedAccessSignature sr=a&sig=b&se=x"} {
		if _, err := ParseSASToken(bad); !errors.Is(err, ErrInvalidSASToken) {
			t.Errorf("ParseSASToken(%q) = %v", bad, err)
		}
	}
}

func TestUsernameAndURLEncode(t *testing.T) {
	got := Username("myiothub.azure-devices.net", "my_device", "", "", "dtmi:azure:iot:deviceUpdateContractModel;2")
	want := "myiothub.azure-devices.net/my_device/?api-version=2021-04-12&model-id=dtmi%3Aazure%3Aiot%3AdeviceUpdateContractModel%3B2"
	if got != want {
		t.Fatalf("got %s", got)
	}
	if g := Username("h", "d", "m", "2020-09-30", ""); g != "h/d/m/?api-version=2020-09-30" {
		t.Fatalf("module username %s", g)
	}
	if g := URLEncode("a+b=c/ ~é"); g != "a%2Bb%3Dc%2F%20~%C3%A9" {
		t.Fatalf("URLEncode %s", g)
	}
}

func TestParseConnectionString(t *testing.T) {
	cs, err := ParseConnectionString("HostName=h.azure-devices.net;DeviceId=dev1;SharedAccessKey=" + vecKey + ";ModuleId=m;GatewayHostName=gw.local")
	if err != nil {
		t.Fatal(err)
	}
	if cs.HostName != "h.azure-devices.net" || cs.DeviceID != "dev1" || cs.SharedAccessKey != vecKey || cs.ModuleID != "m" || cs.GatewayHostName != "gw.local" || cs.X509 {
		t.Fatalf("%+v", cs)
	}
	if cs.ClientID() != "dev1/m" || strings.Contains(cs.String(), vecKey) {
		t.Fatalf("ClientID/String: %s %s", cs.ClientID(), cs)
	}
	cs, err = ParseConnectionString("hostname=h;deviceid=d;x509=true")
	if err != nil || !cs.X509 {
		t.Fatalf("x509: %+v %v", cs, err)
	}
	for in, part := range map[string]string{
		"DeviceId=d;SharedAccessKey=" + vecKey:                      "HostName",
		"HostName=h;SharedAccessKey=" + vecKey:                      "DeviceId",
		"HostName=h;DeviceId=d":                                     "SharedAccessKey",
		"HostName=h;DeviceId=d;SharedAccessKey=%%%":                 "SharedAccessKey",
		"HostName=h;DeviceId=d;x509=maybe":                          "x509",
		"HostName=h;DeviceId=d;x509=true;SharedAccessKey=" + vecKey: "x509",
		"HostName=h;DeviceId=d;garbage":                             "garbage",
		"HostName=h;HostName=g;DeviceId=d;x509=true":                "duplicate",
		"HostName=h/x;DeviceId=d;x509=true":                         "HostName",
	} {
		_, err := ParseConnectionString(in)
		if !errors.Is(err, ErrInvalidConnectionString) || !strings.Contains(err.Error(), part) {
			t.Errorf("%q: %v (want mention of %s)", in, err, part)
		}
	}
}

func TestParseTopic(t *testing.T) {
	tp, err := ParseTopic("$iothub/twin/res/204/?$rid=7&$version=12")
	if err != nil || tp.Kind != TopicTwinResponse || tp.Status != 204 || tp.RequestID != "7" || !tp.HasVersion || tp.Version != 12 {
		t.Fatalf("%+v %v", tp, err)
	}
	tp, err = ParseTopic("$iothub/twin/PATCH/properties/desired/?$version=3")
	if err != nil || tp.Kind != TopicDesiredPatch || tp.Version != 3 {
		t.Fatalf("%+v %v", tp, err)
	}
	tp, err = ParseTopic("$iothub/twin/GET/?$rid=a=b")
	if err != nil || tp.Kind != TopicTwinGet || tp.RequestID != "a=b" {
		t.Fatalf("first '=' split: %+v %v", tp, err)
	}
	if s := tp.String(); s != "$iothub/twin/GET/?$rid=a=b" {
		t.Fatalf("String %s", s)
	}
	for _, bad := range []string{"", "$iothub/twin/res/abc/?$rid=1", "$iothub/twin/res/200/?x=1", "$iothub/twin/GET/", "$iothub/twin/res/200/x/?$rid=1",
		"$iothub/twin/PATCH/properties/desired/?$version=-1", "devices/x/messages/events/", "$iothub/twin/res/20/?$rid=1", "$iothub/twin/GET/?=1&$rid=2"} {
		if _, err := ParseTopic(bad); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ParseTopic(%q) = %v", bad, err)
		}
	}
}

func FuzzParseTopic(f *testing.F) {
	f.Add("$iothub/twin/res/200/?$rid=1")
	f.Add("$iothub/twin/PATCH/properties/desired/?$version=9")
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := ParseTopic(s)
		if err != nil {
			return
		}
		// Re-rendering and re-parsing keeps the IoT Hub-relevant fields.
		tp2, err := ParseTopic(tp.String())
		if err != nil {
			if tp.RequestID != "" && strings.ContainsAny(tp.RequestID, "&?") {
				return
			}
			t.Fatalf("reparse of %q (%q): %v", s, tp.String(), err)
		}
		if tp2.Kind != tp.Kind || tp2.Status != tp.Status || tp2.Version != tp.Version || tp2.HasVersion != tp.HasVersion {
			t.Fatalf("roundtrip %q: %+v vs %+v", s, tp, tp2)
		}
	})
}

func TestAzureRoots(t *testing.T) {
	if n := strings.Count(string(AzureRootsPEM()), "BEGIN CERTIFICATE"); n != 4 {
		t.Fatalf("%d roots", n)
	}
	if AzureRootCAs() == nil {
		t.Fatal("nil pool")
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{ConnectionString: "HostName=h;DeviceId=d;x509=true"},                                       // no cert
		{ConnectionString: "HostName=h;DeviceId=d;SharedAccessKey=" + vecKey, KeepAlive: time.Hour}, // keep-alive too long
		{ConnectionString: "HostName=h;DeviceId=d;SharedAccessKey=" + vecKey, Address: "nohostport"},
		{ConnectionString: "HostName=h;DeviceId=d;SharedAccessKey=" + vecKey, TokenTTL: 100 * 365 * 24 * time.Hour}, // IoT Hub: 10 years at most
		{ConnectionString: "HostName=h;DeviceId=d;SharedAccessKey=" + vecKey, TokenTTL: MaxTokenTTL + time.Second},
	} {
		if _, err := cfg.resolve(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

func TestTokenTTLLimit(t *testing.T) {
	cfg := Config{ConnectionString: "HostName=h;DeviceId=d;SharedAccessKey=" + vecKey, TokenTTL: MaxTokenTTL}
	if _, err := cfg.resolve(); err != nil {
		t.Fatalf("TokenTTL = MaxTokenTTL: %v", err)
	}
	cfg.TokenTTL = 100 * 365 * 24 * time.Hour
	if _, err := cfg.resolve(); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "TokenTTL") {
		t.Errorf("TokenTTL of 100 years: %v, want ErrInvalidConfig naming TokenTTL", err)
	}
}

// A server whose certificate the client does not trust: the error names the address and the
// TLS cause, without the MQTT library's "network Error : " wrapping.
func TestDialTLSErrorNamesHostAndCause(t *testing.T) {
	srv := mosqNewCA(t, "untrusted CA").issue(t, "localhost", true)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srv.tls}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := ln.Addr().String()
	_, err = Dial(ctx, Config{ConnectionString: "HostName=localhost;DeviceId=d;SharedAccessKey=" + vecKey, Address: addr, ConnectTimeout: 5 * time.Second})
	var ua x509.UnknownAuthorityError
	if !errors.Is(err, ErrConnect) || !errors.As(err, &ua) {
		t.Fatalf("Dial: %v, want ErrConnect with x509.UnknownAuthorityError", err)
	}
	want := "iothub: connect failed: TLS handshake with " + addr + ": tls: failed to verify certificate: x509: certificate signed by unknown authority"
	if err.Error() != want {
		t.Errorf("Dial error\n%s\nwant\n%s", err, want)
	}
}
