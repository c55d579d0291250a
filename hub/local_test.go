package hub

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/iothub/iothubtest"
)

// URLs the stack hands out carry no default port: a client that takes everything between //
// and / for the host name would dial "HOST:80".
func TestURLsWithoutDefaultPorts(t *testing.T) {
	for _, c := range []struct {
		scheme, host string
		port         int
		want         string
	}{
		{"http", "bench", 80, "http://bench"},
		{"http", "bench", 8080, "http://bench:8080"},
		{"https", "bench", 443, "https://bench"},
		{"https", "bench", 80, "https://bench:80"},
		{"http", "::1", 80, "http://[::1]"},
		{"http", "::1", 8080, "http://[::1]:8080"},
	} {
		if got := hostURL(c.scheme, c.host, c.port); got != c.want {
			t.Errorf("hostURL(%s, %s, %d) = %s, want %s", c.scheme, c.host, c.port, got, c.want)
		}
	}
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The local stack over TLS for a host name: the addresses for this machine and for devices,
// the CA's server certificate for the name, a device that connects with the CA, a file served
// at its URL; after Close both listeners are gone.
func TestLocal(t *testing.T) {
	dir := t.TempDir()
	st, err := Local(LocalOptions{DataDir: dir, HostName: "bench.example", TLS: true, SignerBits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mp, hp := port(t, st.MQTTAddr), port(t, st.HTTPAddr().String())
	if st.MQTTAddr != "127.0.0.1:"+mp || st.DeviceMQTT != "bench.example:"+mp || st.HTTPURL != "http://127.0.0.1:"+hp ||
		st.FileBaseURL != "http://bench.example:"+hp+"/files" || st.Service.opts.FileBaseURL != st.FileBaseURL {
		t.Fatalf("addresses %+v", st)
	}
	if st.CAFile != filepath.Join(dir, LocalCADir, CACertFile) || st.RootKeysFile != filepath.Join(dir, LocalSignerDir, RootKeysJSONFile) {
		t.Fatalf("files %s %s", st.CAFile, st.RootKeysFile)
	}
	for _, f := range []string{st.CAFile, st.RootKeysFile} {
		if _, err := os.Stat(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CA.Server.Leaf.VerifyHostname("bench.example"); err != nil {
		t.Fatalf("server certificate: %v", err)
	}
	if st.Signer.RootKey().KID != DefaultLocalRootKID {
		t.Fatalf("root key %s", st.Signer.RootKey().KID)
	}

	// A device over TLS, trusting the local CA.
	if err := st.Hub.RegisterDevice("dev1", key1); err != nil {
		t.Fatal(err)
	}
	cfg := cfgFor(st.Hub, "dev1", key1)
	cfg.InsecurePlainTCP, cfg.Address, cfg.TLSConfig = false, st.MQTTAddr, st.CA.ClientTLSConfig()
	cfg.TLSConfig.ServerName = "bench.example"
	iothubtest.Dial(t, cfg).Close()

	// A file at its URL on this machine.
	im, files := buildImport(t, "1.0", nil, payload(1000, 1))
	u, err := st.Service.Import(im, files)
	if err != nil {
		t.Fatal(err)
	}
	url := strings.Replace(st.Service.FileURL(st.FileBaseURL, u.Files[0].ID), "bench.example", "127.0.0.1", 1)
	if code, body, _ := get(t, url); code != 200 || len(body) != 1000 {
		t.Fatalf("GET %s: %d, %d bytes", url, code, len(body))
	}
	if code, _, _ := get(t, st.HTTPURL+"/api/"); code != 404 {
		t.Fatalf("GET /api/ of the file server: %d", code)
	}

	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{st.MQTTAddr, st.HTTPAddr().String()} {
		if c, err := net.Dial("tcp", a); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Close", a)
		}
	}
}

// For localhost, devices download from the HTTP listener's IP address; FileURL replaces the
// default; without TLS there is no CA.
func TestLocalFileURL(t *testing.T) {
	st, err := Local(LocalOptions{DataDir: t.TempDir(), SignerBits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if want := st.HTTPURL + "/files"; st.FileBaseURL != want || st.CA != nil || st.CAFile != "" {
		t.Fatalf("FileBaseURL %s, want %s; CA %v %q", st.FileBaseURL, want, st.CA, st.CAFile)
	}
	st2, err := Local(LocalOptions{DataDir: t.TempDir(), SignerBits: 2048, FileURL: "https://cache.example/adu"})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if st2.FileBaseURL != "https://cache.example/adu" || st2.Service.opts.FileBaseURL != st2.FileBaseURL {
		t.Fatalf("FileBaseURL %s", st2.FileBaseURL)
	}
}

// A stack that cannot start leaves nothing open: here the MQTT address is taken, and the
// HTTP address Local had opened is free again.
func TestLocalFailsClean(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := free.Addr().String()
	free.Close()
	if _, err := Local(LocalOptions{DataDir: t.TempDir(), SignerBits: 2048, MQTTAddr: taken.Addr().String(), HTTPAddr: httpAddr}); err == nil {
		t.Fatal("Local on a taken MQTT address")
	}
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		t.Fatalf("the HTTP address stays taken: %v", err)
	}
	ln.Close()
	if _, err := Local(LocalOptions{}); err == nil {
		t.Fatal("Local without DataDir")
	}
}
