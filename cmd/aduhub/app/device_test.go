package app

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/iothub"
	"github.com/aduflash/aduflash/iothub/iothubtest"
)

// deviceConfig is what a device needs to dial serve with its connection string.
func deviceConfig(t *testing.T, s *hubServe, conn, caFile string) iothub.Config {
	t.Helper()
	pool, err := iothub.LoadCAFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	return iothub.Config{
		ConnectionString:     conn,
		ModelID:              "dtmi:azure:iot:deviceUpdateContractModel;2",
		Address:              s.info.MQTT,
		TLSConfig:            &tls.Config{RootCAs: pool},
		RequestTimeout:       5 * time.Second,
		ConnectTimeout:       5 * time.Second,
		MaxReconnectInterval: 200 * time.Millisecond,
	}
}

func dialConfig(t *testing.T, cfg iothub.Config) (*iothub.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := iothub.Dial(ctx, cfg)
	if err == nil {
		t.Cleanup(c.Close)
	}
	return c, err
}

func listDevices(t *testing.T, s *hubServe) []string {
	t.Helper()
	var devs []deviceInfo
	s.mustCLI(t, &devs, "device", "list", "--json")
	var ids []string
	for _, d := range devs {
		ids = append(ids, d.DeviceID)
	}
	return ids
}

// device remove against a running server: a connected device is dropped and cannot
// connect again, it leaves the device list, and an unknown id is exit 1 (404 from the API).
func TestDeviceRemoveOnline(t *testing.T) {
	s := startServe(t, filepath.Join(t.TempDir(), "hub"))
	var dev1, dev2 deviceAdded
	s.mustCLI(t, &dev1, "device", "add", "--json", "dev1")
	s.mustCLI(t, &dev2, "device", "add", "--json", "dev2")
	s.mustCLI(t, nil, "device", "add", "dev3")

	cfg := deviceConfig(t, s, dev1.ConnectionString, dev1.CAFile)
	lost := make(chan error, 10)
	cfg.OnConnectionChange = func(up bool, err error) {
		if !up {
			select {
			case lost <- err:
			default:
			}
		}
	}
	c1, err := dialConfig(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if u := iothubtest.NextDesired(t, c1); !u.Full {
		t.Fatal("no full twin")
	}
	c2 := dialDevice(t, s, dev2.ConnectionString, dev2.CAFile)
	iothubtest.NextDesired(t, c2)

	out := s.mustCLI(t, nil, "device", "remove", "dev1")
	if out != "removed device dev1\n" {
		t.Fatalf("output %q", out)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the removed device's connection was not closed")
	}
	cfg.OnConnectionChange = nil
	if _, err := dialConfig(t, cfg); !errors.Is(err, iothub.ErrConnect) {
		t.Fatalf("the removed device connected again: %v", err)
	}
	if _, err := c2.GetTwin(context.Background()); err != nil {
		t.Fatalf("the other device: %v", err)
	}

	var rm deviceRemoved
	s.mustCLI(t, &rm, "device", "remove", "--json", "dev2")
	if rm != (deviceRemoved{DeviceID: "dev2", Removed: true}) {
		t.Fatalf("--json: %+v", rm)
	}
	// Through --data while the server serves the folder.
	if code, out, e := runHub(t, "device", "remove", "--data", s.dir, "dev3"); code != 0 || out != "removed device dev3\n" {
		t.Fatalf("remove --data while serving: %d %q %q", code, out, e)
	}
	if ids := listDevices(t, s); len(ids) != 0 {
		t.Fatalf("devices left: %v", ids)
	}

	s.wantFail(t, exitcode.Invalid, `device "dev1" is not registered`, "device", "remove", "dev1")
	s.wantFail(t, exitcode.Invalid, `device "no such/dev" is not registered`, "device", "remove", "no such/dev")
	resp := s.request(t, http.MethodDelete, "/api/devices/nosuch", "")
	var ae apiError
	err = json.NewDecoder(resp.Body).Decode(&ae)
	if resp.StatusCode != http.StatusNotFound || err != nil || ae.ExitCode != exitcode.Invalid || !strings.Contains(ae.Error, "nosuch") {
		t.Fatalf("DELETE unknown: %d %+v %v", resp.StatusCode, ae, err)
	}

	// Added again it is a new device with a new key.
	var again deviceAdded
	s.mustCLI(t, &again, "device", "add", "--json", "dev1")
	if !again.Created || again.ConnectionString == dev1.ConnectionString {
		t.Fatalf("added again: %+v", again)
	}
}

// device remove --data without a server; usage and I/O errors.
func TestDeviceRemoveOffline(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hub")
	for _, id := range []string{"dev1", "dev2"} {
		if code, _, e := runHub(t, "device", "add", "--data", dir, id); code != 0 {
			t.Fatalf("add %s: %d %s", id, code, e)
		}
	}
	code, out, e := runHub(t, "device", "remove", "--data", dir, "dev1")
	if code != 0 || out != "removed device dev1 from "+dir+"\n" {
		t.Fatalf("remove --data: %d %q %q", code, out, e)
	}
	if _, err := os.Stat(filepath.Join(dir, "devices", "dev1.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("dev1's file: %v", err)
	}
	code, out, e = runHub(t, "device", "remove", "--data", dir, "--json", "dev2")
	var rm deviceRemoved
	if code != 0 || json.Unmarshal([]byte(out), &rm) != nil || rm != (deviceRemoved{DeviceID: "dev2", Removed: true}) {
		t.Fatalf("remove --data --json: %d %q %q", code, out, e)
	}
	if code, _, e := runHub(t, "device", "remove", "--data", dir, "dev1"); code != exitcode.Invalid || !strings.Contains(e, `device "dev1" is not registered in `+dir) {
		t.Fatalf("remove unknown --data: %d %q", code, e)
	}
	if code, _, e := runHub(t, "device", "remove", "--data", t.TempDir(), "dev1"); code != exitcode.Invalid || !strings.Contains(e, "not registered") {
		t.Fatalf("remove from an empty folder: %d %q", code, e)
	}
	if code, _, e := runHub(t, "device", "remove", "--data", filepath.Join(t.TempDir(), "nope"), "dev1"); code != exitcode.IO || !strings.Contains(e, "data folder") {
		t.Fatalf("remove from a missing folder: %d %q", code, e)
	}
	if code, _, e := runHub(t, "device", "remove", "--data", dir, ""); code != exitcode.Invalid {
		t.Fatalf("remove \"\": %d %q", code, e)
	}

	// serve does not know them.
	if code, _, e := runHub(t, "device", "add", "--data", dir, "dev3"); code != 0 {
		t.Fatalf("add dev3: %d %s", code, e)
	}
	s := startServe(t, dir)
	if ids := listDevices(t, s); len(ids) != 1 || ids[0] != "dev3" {
		t.Fatalf("after restart: %v", ids)
	}

	for _, args := range [][]string{
		{"device", "remove"},
		{"device", "remove", "a", "b"},
		{"device", "remove", "--nosuch", "a"},
		{"device", "remove", "--server", "ftp://x", "a"},
	} {
		if code, _, e := runHub(t, args...); code != exitcode.Usage {
			t.Errorf("%v: exit %d, %q", args, code, e)
		}
	}
	url, tf := deadServer(t)
	if code, _, e := runHub(t, "device", "remove", "--server", url, "--token-file", tf, "d"); code != exitcode.IO || !strings.Contains(e, "is `aduhub serve` running?") {
		t.Fatalf("unreachable server: %d %q", code, e)
	}
}

// colonHex writes a thumbprint as OpenSSL's fingerprint does: upper case, ':' between bytes.
func colonHex(tp string) string {
	b, _ := hex.DecodeString(tp)
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = strings.ToUpper(hex.EncodeToString([]byte{x}))
	}
	return strings.Join(parts, ":")
}

// device add --x509-thumbprint registers an X.509 device that connects with its client
// certificate; bad thumbprints are usage errors.
func TestDeviceAddX509(t *testing.T) {
	s := startServe(t, filepath.Join(t.TempDir(), "hub"))
	ca, err := hub.LoadOrCreateCA(filepath.Join(s.dir, caDir))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueClientCertificate("xdev")
	if err != nil {
		t.Fatal(err)
	}
	tp := hub.Thumbprint(cert.Certificate[0])

	var added deviceAdded
	s.mustCLI(t, &added, "device", "add", "--json", "--x509-thumbprint", colonHex(tp), "xdev")
	if !added.Created || added.ConnectionString != "HostName=localhost;DeviceId=xdev;x509=true" ||
		added.Authentication != "x509" || added.X509Thumbprint != tp || added.HostName != "localhost" ||
		added.CAFile != filepath.Join(s.dir, "ca", "ca.pem") || added.MQTT != s.info.DeviceMQTT || !added.TLS ||
		added.RootKeysFile != s.info.RootKeysFile {
		t.Fatalf("--json: %+v", added)
	}
	var raw map[string]any
	_, out, _ := s.cli(t, "device", "add", "--json", "--x509-thumbprint", tp, "xdev")
	if err := json.Unmarshal([]byte(out), &raw); err != nil || raw["created"] != false || raw["authentication"] != "x509" || raw["x509Thumbprint"] != tp {
		t.Fatalf("--json again: %s", out)
	}

	// The device connects with its certificate, not without.
	cfg := deviceConfig(t, s, added.ConnectionString, added.CAFile)
	cfg.ClientCertificate = &cert
	c, err := dialConfig(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if u := iothubtest.NextDesired(t, c); !u.Full {
		t.Fatal("no full twin")
	}
	other, err := ca.IssueClientCertificate("xdev")
	if err != nil {
		t.Fatal(err)
	}
	cfg.ClientCertificate = &other
	if _, err := dialConfig(t, cfg); !errors.Is(err, iothub.ErrConnect) {
		t.Fatalf("another certificate connected: %v", err)
	}

	// Text output.
	cert2, err := ca.IssueClientCertificate("xdev2")
	if err != nil {
		t.Fatal(err)
	}
	tp2 := hub.Thumbprint(cert2.Certificate[0])
	out = s.mustCLI(t, nil, "device", "add", "--x509-thumbprint", tp2, "xdev2")
	for _, want := range []string{"registered device xdev2 (X.509)\n", "connection string: HostName=localhost;DeviceId=xdev2;x509=true\n",
		"client certificate, SHA-256 thumbprint " + tp2, "CA certificate:", "update root keys:"} {
		if !strings.Contains(out, want) {
			t.Fatalf("text output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "SharedAccessKey") {
		t.Fatalf("text output:\n%s", out)
	}

	// Conflicts with what is registered: exit 1.
	s.mustCLI(t, nil, "device", "add", "sas")
	s.wantFail(t, exitcode.Invalid, "another X.509 certificate", "device", "add", "--x509-thumbprint", tp2, "xdev")
	s.wantFail(t, exitcode.Invalid, "registered with a SAS key", "device", "add", "--x509-thumbprint", tp, "sas")
	s.wantFail(t, exitcode.Invalid, "not a SAS key", "device", "add", "xdev")

	// Bad thumbprints: usage errors naming the flag, online and offline.
	off := t.TempDir()
	for _, bad := range []string{"", "zz", tp[:62], tp + "00", strings.Repeat("g", 64), "sha256:" + tp} {
		s.wantFail(t, exitcode.Usage, "--x509-thumbprint", "device", "add", "--x509-thumbprint", bad, "bad")
		if code, _, e := runHub(t, "device", "add", "--data", off, "--x509-thumbprint", bad, "bad"); code != exitcode.Usage || !strings.Contains(e, "--x509-thumbprint") {
			t.Fatalf("offline %q: %d %q", bad, code, e)
		}
	}
	if ids := listDevices(t, s); strings.Join(ids, ",") != "sas,xdev,xdev2" {
		t.Fatalf("devices %v", ids)
	}

	// Offline.
	code, out, e := runHub(t, "device", "add", "--data", off, "--json", "--x509-thumbprint", tp, "offdev")
	var offline deviceAdded
	if code != 0 || json.Unmarshal([]byte(out), &offline) != nil || !offline.Created ||
		offline.ConnectionString != "HostName=localhost;DeviceId=offdev;x509=true" || offline.X509Thumbprint != tp || offline.MQTT != "" {
		t.Fatalf("offline: %d %s %s", code, out, e)
	}
	h, err := hub.New(hub.Options{HostName: HostName, DataDir: off})
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.DeviceThumbprint("offdev")
	h.Close()
	if err != nil || got != tp {
		t.Fatalf("offline registration: %q %v", got, err)
	}
}

// A server without TLS warns that an X.509 device cannot connect.
func TestDeviceAddX509PlainTCP(t *testing.T) {
	s := startServe(t, filepath.Join(t.TempDir(), "hub"), "--tls=false")
	tp := strings.Repeat("ab", 32)
	code, out, e := s.cli(t, "device", "add", "--x509-thumbprint", tp, "x")
	if code != 0 || !strings.Contains(out, "x509=true") || !strings.Contains(e, "warning: the server runs without TLS") {
		t.Fatalf("%d %q %q", code, out, e)
	}
}

// A device's key is shown once: adding it again is refused without the key, and renew-key
// gives it a new one, after which the old key no longer connects (online and offline).
func TestDeviceKeyShownOnce(t *testing.T) {
	s := startServe(t, filepath.Join(t.TempDir(), "hub"))
	var dev deviceAdded
	s.mustCLI(t, &dev, "device", "add", "--json", "dev1")
	key := dev.ConnectionString[strings.Index(dev.ConnectionString, "SharedAccessKey=")+len("SharedAccessKey="):]
	resp := s.request(t, http.MethodPost, "/api/devices", `{"deviceId":"dev1"}`)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusConflict || strings.Contains(string(b), key) || !strings.Contains(string(b), "renew-key") {
		t.Fatalf("add again: %d %s", resp.StatusCode, b)
	}

	cfg := deviceConfig(t, s, dev.ConnectionString, dev.CAFile)
	lost := make(chan struct{}, 10)
	cfg.OnConnectionChange = func(up bool, err error) {
		if !up {
			select {
			case lost <- struct{}{}:
			default:
			}
		}
	}
	c, err := dialConfig(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	iothubtest.NextDesired(t, c)

	var renewed deviceAdded
	s.mustCLI(t, &renewed, "device", "renew-key", "--json", "dev1")
	if renewed.ConnectionString == dev.ConnectionString || !strings.HasPrefix(renewed.ConnectionString, "HostName=localhost;DeviceId=dev1;SharedAccessKey=") ||
		renewed.Created || renewed.CAFile != dev.CAFile || renewed.MQTT != s.info.DeviceMQTT {
		t.Fatalf("renewed: %+v", renewed)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the device stayed connected with its old key")
	}
	c.Close()
	cfg.OnConnectionChange = nil
	if _, err := dialConfig(t, cfg); !errors.Is(err, iothub.ErrConnect) {
		t.Fatalf("the old key connected: %v", err)
	}
	if _, err := dialConfig(t, deviceConfig(t, s, renewed.ConnectionString, renewed.CAFile)); err != nil {
		t.Fatalf("the new key: %v", err)
	}
	out := s.mustCLI(t, nil, "device", "renew-key", "dev1")
	if !strings.Contains(out, "new key for device dev1") || !strings.Contains(out, "SharedAccessKey=") {
		t.Fatalf("text output:\n%s", out)
	}

	s.wantFail(t, exitcode.Invalid, `device "nope" is not registered`, "device", "renew-key", "nope")
	s.mustCLI(t, nil, "device", "add", "--x509-thumbprint", strings.Repeat("ab", 32), "xdev")
	s.wantFail(t, exitcode.Invalid, "no key to renew", "device", "renew-key", "xdev")

	// Offline: the same refusal and renewal on the data folder.
	s.stop(t)
	if code, _, e := runHub(t, "device", "add", "--data", s.dir, "dev1"); code != exitcode.Invalid || !strings.Contains(e, "renew-key") {
		t.Fatalf("offline add again: %d %q", code, e)
	}
	code, out, e := runHub(t, "device", "renew-key", "--data", s.dir, "--json", "dev1")
	var off deviceAdded
	if code != 0 || json.Unmarshal([]byte(out), &off) != nil || off.ConnectionString == renewed.ConnectionString || off.CAFile != dev.CAFile {
		t.Fatalf("offline renew: %d %s %s", code, out, e)
	}
	if code, _, e := runHub(t, "device", "renew-key", "--data", filepath.Join(t.TempDir(), "nope"), "dev1"); code != exitcode.IO {
		t.Fatalf("offline renew in a missing folder: %d %q", code, e)
	}
	s2 := startServe(t, s.dir)
	if _, err := dialConfig(t, deviceConfig(t, s2, off.ConnectionString, off.CAFile)); err != nil {
		t.Fatalf("the key renewed offline: %v", err)
	}
}
