package hub

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/iothub"
	"github.com/aduflash/aduflash/iothub/iothubtest"
)

// Register, desired, reported (over MQTT), close, reopen on the same folder:
// the same twin, the same versions, the key still works and a wrong one does not.
func TestPersistenceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	h, err := New(Options{HostName: testHost, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	const odd = "dev.%:1" // stored under an escaped file name
	for _, id := range []string{"dev1", odd} {
		if err := h.RegisterDevice(id, key1); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.RegisterDeviceX509("devx", strings.Repeat("ab", 32)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.SetDesired("dev1", json.RawMessage(`{"deviceUpdate":{"__t":"c","service":{"workflow":{"action":3,"id":"w1"}}},"big":12345678901234567890}`)); err != nil {
		t.Fatal(err)
	}
	c := iothubtest.Dial(t, cfgFor(h, "dev1", key1))
	iothubtest.NextDesired(t, c)
	if _, err := c.UpdateReported(context.Background(), json.RawMessage(`{"deviceUpdate":{"__t":"c","agent":{"state":0}},"n":{"x":"<y>"}}`)); err != nil {
		t.Fatal(err)
	}
	before, err := h.Twin("dev1")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "devices")); len(ents) != 3 {
		t.Fatalf("device files: %v", ents)
	}

	h2 := newHub(t, Options{DataDir: dir})
	if got := h2.Devices(); !slices.Equal(got, []string{odd, "dev1", "devx"}) {
		t.Fatalf("devices after restart: %v", got)
	}
	after, err := h2.Twin("dev1")
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Fatalf("twin changed across restart:\n%s\n%s", before, after)
	}
	if h2.ModelID("dev1") != modelID {
		t.Fatalf("model id %q", h2.ModelID("dev1"))
	}
	if k, _ := h2.DeviceKey(odd); k != key1 {
		t.Fatalf("key of %q: %q", odd, k)
	}
	if h2.devices["devx"].thumbprint != strings.Repeat("ab", 32) {
		t.Fatal("thumbprint lost")
	}
	// The device connects with its key and sees the same twin; versions continue.
	c2 := iothubtest.Dial(t, cfgFor(h2, "dev1", key1))
	u := iothubtest.NextDesired(t, c2)
	if !u.Full || u.Version != 2 || u.Twin.ReportedVersion != 2 {
		t.Fatalf("full twin after restart: %+v", u)
	}
	if v, err := c2.UpdateReported(context.Background(), json.RawMessage(`{"n":null}`)); err != nil || v != 3 {
		t.Fatalf("reported version after restart: %d %v", v, err)
	}
	if v, err := h2.SetDesired("dev1", json.RawMessage(`{"k":1}`)); err != nil || v != 3 {
		t.Fatalf("desired version after restart: %d %v", v, err)
	}
	// A wrong key is still refused.
	if _, err := iothub.Dial(context.Background(), cfgFor(h2, odd, key2)); !errors.Is(err, iothub.ErrConnect) {
		t.Fatalf("wrong key accepted after restart: %v", err)
	}
	cfg := cfgFor(h2, odd, key1)
	iothubtest.Dial(t, cfg)

	// A corrupt device file makes New fail rather than lose devices silently.
	if err := os.WriteFile(filepath.Join(dir, "devices", "bad.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{DataDir: dir}); err == nil {
		t.Fatal("corrupt store accepted")
	}
}

func TestWriteFileAtomicAndFileName(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.json")
	for _, s := range []string{"one", "two"} {
		if err := writeFileAtomic(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Fatalf("%q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporaries left: %v", ents)
	}
	seen := map[string]string{}
	for _, id := range []string{"a", "A", "a.b", "a%2Eb", "..", ".", "a/b", "a_b", "a-b", "é"} {
		n := fileName(id)
		if strings.ContainsAny(n, "/.") || seen[n] != "" {
			t.Fatalf("fileName(%q) = %q (also %q)", id, n, seen[n])
		}
		seen[n] = id
	}
}

// The local CA: a device trusting only its PEM connects over TLS (SAS and
// X.509); reloading keeps CA and server certificate; other hosts reissue
// the server certificate under the same CA.
func TestLocalCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := newHub(t, Options{TLSConfig: ca.ServerTLSConfig()})
	_ = h.RegisterDevice("dev1", key1)

	pool, err := iothub.LoadCAFile(writeTemp(t, ca.CertPEM))
	if err != nil {
		t.Fatal(err)
	}
	cfg := cfgFor(h, "dev1", key1)
	cfg.InsecurePlainTCP = false
	cfg.TLSConfig = &tls.Config{RootCAs: pool} // ServerName: 127.0.0.1 from Address
	c := iothubtest.Dial(t, cfg)
	if u := iothubtest.NextDesired(t, c); !u.Full {
		t.Fatal(u)
	}
	cfg.TLSConfig = &tls.Config{} // Azure roots: refused
	if _, err := iothub.Dial(context.Background(), cfg); !errors.Is(err, iothub.ErrConnect) {
		t.Fatalf("untrusted server accepted: %v", err)
	}
	// The same device with the CA's client config: the first client goes first (two live
	// clients of one device id take the connection from each other, as with IoT Hub).
	c.Close()
	cfg.TLSConfig = ca.ClientTLSConfig()
	cfg.TLSConfig.ServerName = "localhost"
	iothubtest.Dial(t, cfg)

	cert, err := ca.IssueClientCertificate("devx")
	if err != nil {
		t.Fatal(err)
	}
	_ = h.RegisterDeviceX509("devx", Thumbprint(cert.Certificate[0]))
	x := iothubtest.Dial(t, iothub.Config{
		ConnectionString: "HostName=" + testHost + ";DeviceId=devx;x509=true",
		Address:          h.Addr().String(), TLSConfig: ca.ClientTLSConfig(), ClientCertificate: &cert, ModelID: modelID,
	})
	if u := iothubtest.NextDesired(t, x); !u.Full {
		t.Fatal(u)
	}

	again, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(again.CertPEM) != string(ca.CertPEM) || string(again.Server.Certificate[0]) != string(ca.Server.Certificate[0]) {
		t.Fatal("reload changed the CA or the server certificate")
	}
	other, err := LoadOrCreateCA(dir, "hub.example", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if string(other.CertPEM) != string(ca.CertPEM) || string(other.Server.Certificate[0]) == string(ca.Server.Certificate[0]) {
		t.Fatal("new hosts: want the same CA and a new server certificate")
	}
	if err := other.Server.Leaf.VerifyHostname("hub.example"); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, CAKeyFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %v", st.Mode())
	}
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The desired document stays within IoT Hub's 32 KB: a patch that would pass it is refused,
// changes nothing and is not stored.
func TestDesiredSizeLimit(t *testing.T) {
	dir := t.TempDir()
	h, err := New(Options{HostName: testHost, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.RegisterDevice("dev1", key1); err != nil {
		t.Fatal(err)
	}
	half := json.RawMessage(`{"a":"` + strings.Repeat("x", 20<<10) + `"}`)
	v1, err := h.SetDesired("dev1", half)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.SetDesired("dev1", json.RawMessage(`{"b":"`+strings.Repeat("y", 20<<10)+`"}`)); !errors.Is(err, ErrTwinTooLarge) {
		t.Fatalf("second 20 KB member: %v", err)
	}
	tw, _ := h.Twin("dev1")
	if bytes.Contains(tw, []byte(`"b"`)) || !bytes.Contains(tw, []byte(`"$version":`+strconv.FormatInt(v1, 10))) {
		t.Fatalf("the refused patch changed the twin: %.200s", tw)
	}
	// Replacing the member keeps the document small: accepted.
	if _, err := h.SetDesired("dev1", json.RawMessage(`{"a":null,"b":"`+strings.Repeat("y", 20<<10)+`"}`)); err != nil {
		t.Fatalf("replacement: %v", err)
	}
}
