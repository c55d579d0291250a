package iothub

// Interop test: the same client against a real MQTT broker, Debian's mosquitto, over TLS with
// X.509 client certificates on 127.0.0.1 (research note test-harness.md §6).
//
// mosquitto is not IoT Hub: it does not answer $iothub/twin requests. So the test checks what
// mosquitto can show about the client (TLS 1.2+, the client certificate, the CONNECT's client id
// and username, the topics and payloads it publishes, seen by an independent mosquitto_sub), and a
// responder in the test plays the hub's twin side as a second MQTT client with its own certificate.
// Everything (CA, certificates, broker config) is generated in t.TempDir().

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/aduflash/aduflash/internal/peers"
	"github.com/aduflash/aduflash/internal/syncbuf"
	"github.com/aduflash/aduflash/internal/testwait"
)

const (
	mosqBroker   = "/usr/sbin/mosquitto"
	mosqSub      = "/usr/bin/mosquitto_sub"
	mosqPub      = "/usr/bin/mosquitto_pub"
	mosqInstall  = "apt-get install mosquitto mosquitto-clients"
	mosqHub      = "aduflash-test.azure-devices.net"
	mosqDeviceID = "dev-01"
	mosqModelID  = "dtmi:azure:iot:deviceUpdateContractModel;2"
	// What the responder answers to a twin GET and to a reported PATCH.
	mosqTwinDesired  = `{"deviceUpdate":{"__t":"c","service":{"workflow":{"action":255}}},"$version":5}`
	mosqTwinReported = `{"deviceUpdate":{"__t":"c","agent":{"state":0}},"$version":10}`
	mosqReportedVer  = 11
)

func TestMosquittoTLSClientCertificate(t *testing.T) {
	for _, p := range []string{mosqBroker, mosqSub, mosqPub} {
		if _, err := os.Stat(p); err != nil {
			peers.Missing(t, "mosquitto (%s): %v", mosqInstall, err)
			return
		}
	}
	dir := t.TempDir()
	ca := mosqNewCA(t, "aduflash test CA")
	rogueCA := mosqNewCA(t, "rogue CA")
	server := ca.issue(t, "localhost", true)
	observer := ca.issue(t, "observer", false) // mosquitto_sub and mosquitto_pub
	responder := ca.issue(t, "twin-responder", false)
	device := ca.issue(t, mosqDeviceID, false)
	ca.writePEM(t, dir, "ca")
	server.writePEM(t, dir, "server")
	observer.writePEM(t, dir, "observer")

	b := mosqStart(t, dir)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)

	obs := mosqObserve(t, b, dir)
	resp := mosqRespond(t, b, pool, responder.tls)

	deviceConfig := func(port int, st *mosqTLSState) Config {
		return Config{
			Identity:          ConnectionString{HostName: mosqHub, DeviceID: mosqDeviceID, X509: true},
			ModelID:           mosqModelID,
			Address:           net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			TLSConfig:         &tls.Config{RootCAs: pool, VerifyConnection: st.verify},
			ClientCertificate: &device.tls,
			Dial:              st.dial,
			KeepAlive:         30 * time.Second,
			RequestTimeout:    5 * time.Second,
			ConnectTimeout:    5 * time.Second,
		}
	}

	t.Run("twin", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st := &mosqTLSState{}
		cfg := deviceConfig(b.port, st)
		c, err := Dial(ctx, cfg)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.Close()

		// TLS, as seen by our side: the Dial hook carried a TLS record (0x16 handshake, not an
		// MQTT CONNECT 0x10), version 1.2 or later, server certificate for IP 127.0.0.1.
		st.check(t, cfg.Address)
		// As seen by mosquitto: the client certificate was required and accepted, its CN became
		// the username (use_identity_as_username), client id = device id, MQTT 3.1.1 (p2),
		// clean session false (c0), keep-alive 30 s.
		b.waitLog(t, `New client connected from 127\.0\.0\.1:\d+ as `+regexp.QuoteMeta(mosqDeviceID)+
			` \(p2, c0, k30, u'`+regexp.QuoteMeta(mosqDeviceID)+`'\)`)
		b.waitLog(t, `Received SUBSCRIBE from `+regexp.QuoteMeta(mosqDeviceID))

		// The full twin GET after connect: the responder answers, the twin arrives on Desired.
		get1 := resp.next(t, "automatic twin GET")
		mosqCheckRequest(t, get1, `^\$iothub/twin/GET/\?\$rid=\d+$`, "")
		obs.expect(t, get1.topic, "")
		u := mosqNextDesired(t, c)
		if !u.Full || u.Version != 5 || u.Twin.DesiredVersion != 5 || u.Twin.ReportedVersion != 10 {
			t.Fatalf("first Desired event = %+v, want the full twin (desired $version 5, reported 10)", u)
		}
		mosqJSONEqual(t, "full twin desired", u.Twin.Desired, mosqTwinDesired)
		mosqJSONEqual(t, "full twin reported", u.Twin.Reported, mosqTwinReported)

		// An explicit GetTwin.
		twin, err := c.GetTwin(ctx)
		if err != nil {
			t.Fatalf("GetTwin: %v", err)
		}
		get2 := resp.next(t, "GetTwin")
		mosqCheckRequest(t, get2, `^\$iothub/twin/GET/\?\$rid=\d+$`, "")
		if get2.topic == get1.topic {
			t.Errorf("GetTwin reused $rid: %s", get2.topic)
		}
		obs.expect(t, get2.topic, "")
		if twin.DesiredVersion != 5 || twin.ReportedVersion != 10 {
			t.Errorf("GetTwin versions = %d/%d, want 5/10", twin.DesiredVersion, twin.ReportedVersion)
		}
		mosqJSONEqual(t, "GetTwin desired", twin.Desired, mosqTwinDesired)

		// A reported PATCH: topic and payload as published, $version from the 204 response.
		patch := `{"deviceUpdate":{"__t":"c","agent":{"state":0,"deviceProperties":{"manufacturer":"aduflash"}}}}`
		v, err := c.UpdateReported(ctx, json.RawMessage(patch))
		if err != nil {
			t.Fatalf("UpdateReported: %v", err)
		}
		if v != mosqReportedVer {
			t.Errorf("UpdateReported version = %d, want %d", v, mosqReportedVer)
		}
		rep := resp.next(t, "reported PATCH")
		mosqCheckRequest(t, rep, `^\$iothub/twin/PATCH/properties/reported/\?\$rid=\d+$`, patch)
		obs.expect(t, rep.topic, patch)

		// A desired-property notification published by another client (mosquitto_pub).
		desired := `{"deviceUpdate":{"__t":"c","service":{"workflow":{"action":3,"id":"wf-1"}}},"$version":7}`
		b.pub(t, dir, TopicDesiredPrefix+"?$version=7", desired)
		u = mosqNextDesired(t, c)
		if u.Full || u.Version != 7 {
			t.Fatalf("Desired event = %+v, want a patch with version 7", u)
		}
		if string(u.Patch) != desired {
			t.Errorf("desired patch = %s, want %s", u.Patch, desired)
		}

		c.Close()
		b.waitLog(t, `Received DISCONNECT from `+regexp.QuoteMeta(mosqDeviceID))
	})

	// mosquitto overwrites the username with the certificate's CN on the IoT-Hub-like listener, so
	// the CONNECT's username is observed on a second listener that keeps it (it still requires a
	// client certificate from the CA; allow_anonymous true there only means "no password file").
	t.Run("username", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st := &mosqTLSState{}
		c, err := Dial(ctx, deviceConfig(b.port2, st))
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.Close()
		want := mosqHub + "/" + mosqDeviceID + "/?api-version=2021-04-12&model-id=dtmi%3Aazure%3Aiot%3AdeviceUpdateContractModel%3B2"
		b.waitLog(t, `New client connected from 127\.0\.0\.1:\d+ as `+regexp.QuoteMeta(mosqDeviceID)+
			` \(p2, c0, k30, u'`+regexp.QuoteMeta(want)+`'\)`)
		if u := mosqNextDesired(t, c); !u.Full || u.Version != 5 { // the responder is on the other listener
			t.Errorf("first Desired event = %+v, want the full twin", u)
		}
		resp.next(t, "automatic twin GET")
	})

	// The twin subtest negotiates TLS 1.3 with Debian's OpenSSL; TLS 1.2 (IoT Hub's minimum) works too.
	t.Run("tls1.2", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st := &mosqTLSState{}
		cfg := deviceConfig(b.port, st)
		cfg.TLSConfig.MaxVersion = tls.VersionTLS12
		c, err := Dial(ctx, cfg)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.Close()
		st.check(t, cfg.Address)
		if len(st.versions) > 0 && st.versions[0] != tls.VersionTLS12 {
			t.Errorf("negotiated %s, want TLS 1.2", tls.VersionName(st.versions[0]))
		}
		if u := mosqNextDesired(t, c); !u.Full || u.Version != 5 {
			t.Errorf("first Desired event = %+v, want the full twin", u)
		}
		resp.next(t, "automatic twin GET")
	})

	t.Run("refused", func(t *testing.T) {
		rogueDevice := rogueCA.issue(t, "rogue-device", false)
		rogueServerPool := x509.NewCertPool()
		rogueServerPool.AddCert(rogueCA.cert)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
		for _, tc := range []struct {
			name     string
			cfg      Config
			wantErr  func(error) bool
			wantText []string // the error contains one of these
			brokerRe string   // what mosquitto logs about the refused connection
		}{{
			// TLS 1.3: the client's handshake completes before the server checks the client
			// certificate, so the refusal surfaces after it, as the server's alert or as a reset
			// connection (a race) while writing the CONNECT or reading the CONNACK.
			name: "client cert from another CA (TLS 1.3)",
			cfg: Config{
				Identity:          ConnectionString{HostName: mosqHub, DeviceID: "rogue-device", X509: true},
				Address:           addr,
				TLSConfig:         &tls.Config{RootCAs: pool},
				ClientCertificate: &rogueDevice.tls,
			},
			wantText: mosqTLS13Refusal("tls: unknown certificate authority"),
			brokerRe: `certificate verify failed`,
		}, {
			name: "client cert from another CA (TLS 1.2)",
			cfg: Config{
				Identity:          ConnectionString{HostName: mosqHub, DeviceID: "rogue-device", X509: true},
				Address:           addr,
				TLSConfig:         &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12},
				ClientCertificate: &rogueDevice.tls,
			},
			wantText: []string{"TLS handshake with " + addr + ": remote error: tls: unknown certificate authority"},
			brokerRe: `certificate verify failed`,
		}, {
			name: "no client certificate (SAS identity)",
			cfg: Config{
				Identity:  ConnectionString{HostName: mosqHub, DeviceID: "sas-device", SharedAccessKey: "c2VjcmV0c2VjcmV0c2VjcmV0"},
				Address:   addr,
				TLSConfig: &tls.Config{RootCAs: pool},
			},
			wantText: mosqTLS13Refusal("tls: certificate required"),
			brokerRe: `peer did not return a certificate`,
		}, {
			name: "server cert not trusted",
			cfg: Config{
				Identity:          ConnectionString{HostName: mosqHub, DeviceID: mosqDeviceID, X509: true},
				Address:           addr,
				TLSConfig:         &tls.Config{RootCAs: rogueServerPool},
				ClientCertificate: &device.tls,
			},
			wantErr: func(err error) bool {
				var ve *tls.CertificateVerificationError
				var ua x509.UnknownAuthorityError
				return errors.As(err, &ve) && errors.As(err, &ua)
			},
			wantText: []string{"TLS handshake with " + addr},
			brokerRe: `alert bad certificate`,
		}, {
			name: "server name not in certificate",
			cfg: Config{
				Identity:          ConnectionString{HostName: mosqHub, DeviceID: mosqDeviceID, X509: true},
				Address:           addr,
				TLSConfig:         &tls.Config{RootCAs: pool, ServerName: "mqtt.example.com"},
				ClientCertificate: &device.tls,
			},
			wantErr: func(err error) bool {
				var he x509.HostnameError
				return errors.As(err, &he)
			},
			wantText: []string{"TLS handshake with " + addr + ` (server name "mqtt.example.com")`},
			brokerRe: `alert bad certificate`,
		}} {
			t.Run(tc.name, func(t *testing.T) {
				mark := b.log.Len()
				tc.cfg.ConnectTimeout = 5 * time.Second
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				c, err := Dial(ctx, tc.cfg)
				if err == nil {
					c.Close()
					t.Fatal("Dial succeeded, want an error")
				}
				if !errors.Is(err, ErrConnect) {
					t.Errorf("Dial error %v does not wrap ErrConnect", err)
				}
				if tc.wantErr != nil && !tc.wantErr(err) {
					t.Errorf("Dial error %v (%T chain) is not of the expected type", err, errors.Unwrap(err))
				}
				if !slices.ContainsFunc(tc.wantText, func(s string) bool { return strings.Contains(err.Error(), s) }) {
					t.Errorf("Dial error %q contains none of %q", err, tc.wantText)
				}
				if strings.Contains(err.Error(), "network Error") {
					t.Errorf("Dial error %q carries the MQTT library's wrapping", err)
				}
				b.waitLogFrom(t, mark, tc.brokerRe)
				if regexp.MustCompile(`New client connected`).MatchString(b.log.Since(mark)) {
					t.Errorf("mosquitto accepted the connection:\n%s", b.log.Since(mark))
				}
			})
		}
	})
}

// mosqTLS13Refusal lists the errors a TLS 1.3 client sees when the server refuses its
// certificate after the client's side of the handshake: the alert, or a closed connection.
func mosqTLS13Refusal(alert string) []string {
	return []string{"remote error: " + alert, "connection reset by peer", "broken pipe", "EOF"}
}

// mosqTLSState records what the Dial hook and VerifyConnection saw.
type mosqTLSState struct {
	mu       sync.Mutex
	dialed   []string
	first    []byte
	versions []uint16
	leaf     *x509.Certificate
}

func (s *mosqTLSState) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	s.mu.Lock()
	s.dialed = append(s.dialed, network+" "+addr)
	s.mu.Unlock()
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &mosqTapConn{Conn: conn, s: s}, nil
}

func (s *mosqTLSState) verify(cs tls.ConnectionState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.versions = append(s.versions, cs.Version)
	if len(cs.PeerCertificates) > 0 {
		s.leaf = cs.PeerCertificates[0]
	}
	return nil
}

func (s *mosqTLSState) check(t *testing.T, addr string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.dialed) != 1 || s.dialed[0] != "tcp "+addr {
		t.Errorf("Dial hook calls = %q, want one to tcp %s", s.dialed, addr)
	}
	if len(s.first) < 3 || s.first[0] != 0x16 || s.first[1] != 0x03 {
		t.Errorf("first bytes on the wire = % x, want a TLS handshake record (16 03 ..)", s.first)
	}
	if len(s.versions) != 1 || s.versions[0] < tls.VersionTLS12 {
		t.Errorf("TLS versions = %v, want one connection with TLS 1.2 or later", s.versions)
	} else {
		t.Logf("negotiated %s", tls.VersionName(s.versions[0]))
	}
	if s.leaf == nil || len(s.leaf.IPAddresses) != 1 || !s.leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("server certificate = %v, want the generated one for IP 127.0.0.1", s.leaf)
	}
}

type mosqTapConn struct {
	net.Conn
	s *mosqTLSState
}

func (c *mosqTapConn) Write(p []byte) (int, error) {
	c.s.mu.Lock()
	if c.s.first == nil {
		c.s.first = bytes.Clone(p[:min(len(p), 8)])
	}
	c.s.mu.Unlock()
	return c.Conn.Write(p)
}

// --- certificates ---

type mosqCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	tls  tls.Certificate
}

func mosqNewCA(t *testing.T, cn string) *mosqCert {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	return mosqSign(t, tmpl, nil)
}

func (ca *mosqCert) issue(t *testing.T, cn string, server bool) *mosqCert {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	return mosqSign(t, tmpl, ca)
}

func mosqSign(t *testing.T, tmpl *x509.Certificate, parent *mosqCert) *mosqCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	parentCert, parentKey := tmpl, key
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &mosqCert{cert: cert, key: key, tls: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}
}

// writePEM writes name.crt and name.key, readable by all (mosquitto may drop privileges).
func (c *mosqCert) writePEM(t *testing.T, dir, name string) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	for file, blk := range map[string]*pem.Block{
		name + ".crt": {Type: "CERTIFICATE", Bytes: c.cert.Raw},
		name + ".key": {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(blk), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// --- the broker ---

type mosqBrokerProc struct {
	port, port2 int
	log         syncbuf.Buffer // mosquitto's output
}

// waitLog waits up to 5 s for a broker log line matching re.
func (b *mosqBrokerProc) waitLog(t *testing.T, re string) {
	t.Helper()
	b.waitLogFrom(t, 0, re)
}

// waitLogFrom waits up to 5 s for a broker log line matching re after the first mark bytes.
func (b *mosqBrokerProc) waitLogFrom(t *testing.T, mark int, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(5 * time.Second)
	for !rx.MatchString(b.log.Since(mark)) {
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not log %q; log:\n%s", re, b.log.Since(0))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mosqFreePorts(t *testing.T) (int, int) {
	t.Helper()
	var ports [2]int
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1]
}

func mosqStart(t *testing.T, dir string) *mosqBrokerProc {
	t.Helper()
	b := &mosqBrokerProc{}
	b.port, b.port2 = mosqFreePorts(t)
	tlsFiles := fmt.Sprintf("cafile %[1]s/ca.crt\ncertfile %[1]s/server.crt\nkeyfile %[1]s/server.key\nrequire_certificate true\n", dir)
	conf := "# generated by iothub/mosquitto_test.go\n" +
		"per_listener_settings true\n" +
		"user root\n" + // do not drop privileges when run as root: t.TempDir() is 0700
		"persistence false\n" +
		"log_dest stderr\n" +
		"log_type all\n" +
		"connection_messages true\n" +
		// The IoT-Hub-like listener: client certificate required, its CN is the username.
		fmt.Sprintf("listener %d 127.0.0.1\n", b.port) + tlsFiles +
		"use_identity_as_username true\n" +
		"allow_anonymous false\n" +
		// A listener that keeps the CONNECT's username (to observe it); still client certificates.
		fmt.Sprintf("listener %d 127.0.0.1\n", b.port2) + tlsFiles +
		"allow_anonymous true\n"
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mosqBroker, "-c", confPath)
	cmd.Stdout, cmd.Stderr = &b.log, &b.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", b.log.Since(0))
		}
	})
	// Wait for both ports.
	deadline := time.Now().Add(5 * time.Second)
	for _, port := range []int{b.port, b.port2} {
		for {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-exited:
				t.Fatalf("mosquitto exited: %s", b.log.Since(0))
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("mosquitto does not listen on 127.0.0.1:%d: %v\n%s", port, err, b.log.Since(0))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return b
}

func mosqClientArgs(dir string, port int, clientID string) []string {
	return []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-i", clientID,
		"--cafile", filepath.Join(dir, "ca.crt"),
		"--cert", filepath.Join(dir, "observer.crt"), "--key", filepath.Join(dir, "observer.key")}
}

// pub publishes with mosquitto_pub at QoS 1 (as the service side would).
func (b *mosqBrokerProc) pub(t *testing.T, dir, topic, payload string) {
	t.Helper()
	args := append(mosqClientArgs(dir, b.port, "backend"), "-q", "1", "-t", topic, "-m", payload)
	if out, err := exec.Command(mosqPub, args...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
}

// --- the observer: mosquitto_sub on $iothub/# ---

type mosqMsg struct{ topic, payload string }

type mosqObserver struct{ msgs chan mosqMsg }

func mosqObserve(t *testing.T, b *mosqBrokerProc, dir string) *mosqObserver {
	t.Helper()
	args := append(mosqClientArgs(dir, b.port, "observer"), "-q", "1", "-t", "$iothub/#", "-F", "%j")
	cmd := exec.Command(mosqSub, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	o := &mosqObserver{msgs: make(chan mosqMsg, 100)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var m struct {
				Topic   string `json:"topic"`
				Payload string `json:"payload"`
			}
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				o.msgs <- mosqMsg{topic: "unparsable mosquitto_sub line: " + sc.Text()}
				continue
			}
			o.msgs <- mosqMsg{m.Topic, m.Payload}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("mosquitto_sub stderr: %s", stderr.String())
		}
	})
	b.waitLog(t, `Sending SUBACK to observer`)
	return o
}

// expect waits for the observer to see topic with payload (other messages are skipped).
func (o *mosqObserver) expect(t *testing.T, topic, payload string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	var seen []mosqMsg
	for {
		select {
		case m := <-o.msgs:
			if m.topic == topic {
				if m.payload != payload {
					t.Errorf("mosquitto_sub saw %s with payload %q, want %q", topic, m.payload, payload)
				}
				return
			}
			seen = append(seen, m)
		case <-timeout:
			t.Fatalf("mosquitto_sub did not see %s (saw %v)", topic, seen)
		}
	}
}

// --- the responder: the hub's twin side, a paho client with its own certificate ---

type mosqResponder struct{ reqs chan mosqMsg }

func mosqRespond(t *testing.T, b *mosqBrokerProc, pool *x509.CertPool, cert tls.Certificate) *mosqResponder {
	t.Helper()
	r := &mosqResponder{reqs: make(chan mosqMsg, 100)}
	work := make(chan mosqMsg, 100)
	opts := paho.NewClientOptions().
		AddBroker(fmt.Sprintf("ssl://127.0.0.1:%d", b.port)).
		SetClientID("twin-responder").
		SetTLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"}).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second)
	mc := paho.NewClient(opts)
	if tok := mc.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("responder connect: %v", tok.Error())
	}
	handler := func(_ paho.Client, m paho.Message) {
		work <- mosqMsg{m.Topic(), string(m.Payload())}
	}
	tok := mc.SubscribeMultiple(map[string]byte{TopicTwinGetPrefix + "#": 1, TopicReportedPrefix + "#": 1}, handler)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("responder subscribe: %v", tok.Error())
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var m mosqMsg
			select {
			case m = <-work:
			case <-stop:
				return
			}
			r.reqs <- m
			_, rid, ok := strings.Cut(m.topic, "?$rid=")
			if !ok {
				continue
			}
			var topic, payload string
			switch {
			case strings.HasPrefix(m.topic, TopicTwinGetPrefix):
				topic = TopicTwinResponsePrefix + "200/?$rid=" + rid
				payload = `{"desired":` + mosqTwinDesired + `,"reported":` + mosqTwinReported + `}`
			default:
				topic = TopicTwinResponsePrefix + "204/?$rid=" + rid + "&$version=" + strconv.Itoa(mosqReportedVer)
			}
			mc.Publish(topic, 1, false, payload).WaitTimeout(5 * time.Second)
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		mc.Disconnect(100)
	})
	return r
}

func (r *mosqResponder) next(t *testing.T, what string) mosqMsg {
	t.Helper()
	return testwait.Recv(t, r.reqs, 5*time.Second, what+" at the responder")
}

func mosqCheckRequest(t *testing.T, m mosqMsg, topicRe, payload string) {
	t.Helper()
	if !regexp.MustCompile(topicRe).MatchString(m.topic) {
		t.Errorf("request topic %q does not match %s", m.topic, topicRe)
	}
	if m.payload != payload {
		t.Errorf("request %s payload = %q, want %q", m.topic, m.payload, payload)
	}
}

func mosqNextDesired(t *testing.T, c *Client) DesiredUpdate {
	t.Helper()
	return testwait.Recv(t, c.Desired(), 5*time.Second, "desired-property update")
}

func mosqJSONEqual(t *testing.T, what string, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v: %s", what, err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}
