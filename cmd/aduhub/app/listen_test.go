package app

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/iothub/iothubtest"
)

// URLs aduhub hands out carry no default port: a client that takes everything between //
// and / for the host name would dial "HOST:80" (the URLs of the listeners: hub's
// TestURLsWithoutDefaultPorts).
func TestURLsWithoutDefaultPorts(t *testing.T) {
	for in, want := range map[string]string{
		"http://cache.example:80/adu":   "http://cache.example/adu",
		"https://cache.example:443/adu": "https://cache.example/adu",
		"http://cache.example:8080/adu": "http://cache.example:8080/adu",
		"https://[::1]:443/":            "https://[::1]",
		"http://cache.example/adu/":     "http://cache.example/adu",
	} {
		if got, err := parseFileURL(in); err != nil || got != want {
			t.Errorf("parseFileURL(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	s := startServe(t, t.TempDir(), "--file-url", "http://cache.example:80/adu/")
	if s.info.FileBaseURL != "http://cache.example/adu" {
		t.Fatalf("file base URL %s", s.info.FileBaseURL)
	}
}

// --hostname goes into the connection strings, the server certificate, the file URLs and
// the Host names HTTP answers; it is remembered in the data folder.
func TestServeHostName(t *testing.T) {
	const name = "aduhub.test"
	s := startServe(t, filepath.Join(t.TempDir(), "hub"), "--hostname", name)
	port := s.info.HTTP[strings.LastIndex(s.info.HTTP, ":")+1:]
	mqttPort := s.info.MQTT[strings.LastIndex(s.info.MQTT, ":")+1:]
	if s.info.HostName != name || s.info.FileBaseURL != "http://"+name+":"+port+"/files" || s.info.DeviceMQTT != name+":"+mqttPort {
		t.Fatalf("%+v", s.info)
	}
	for _, want := range []string{"HostName=" + name, "they dial " + name + ":" + mqttPort, "http://" + name + ":" + port + "/files/"} {
		if !strings.Contains(s.out.String(), want) {
			t.Fatalf("serve does not say %q:\n%s", want, s.out.String())
		}
	}
	pemBytes, err := os.ReadFile(filepath.Join(s.dir, caDir, hub.ServerCertFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || cert.VerifyHostname(name) != nil || cert.VerifyHostname("localhost") != nil {
		t.Fatalf("server certificate for %v %v: %v", cert.DNSNames, cert.IPAddresses, err)
	}

	// A device with the connection string connects (TLS checks the name).
	var dev deviceAdded
	s.mustCLI(t, &dev, "device", "add", "--json", "dev1")
	if !strings.HasPrefix(dev.ConnectionString, "HostName="+name+";DeviceId=dev1;") || dev.MQTT != name+":"+mqttPort {
		t.Fatalf("%+v", dev)
	}
	if u := iothubtest.NextDesired(t, dialDevice(t, s, dev.ConnectionString, dev.CAFile)); !u.Full {
		t.Fatal("no full twin")
	}
	// HTTP answers requests for the name, not for others (DNS rebinding).
	for host, want := range map[string]int{name + ":" + port: http.StatusNotFound, "AduHub.Test": http.StatusNotFound, "evil.example:" + port: http.StatusForbidden} {
		req, _ := http.NewRequest(http.MethodGet, s.info.HTTP+"/files/f1/x", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, want)
		}
	}

	// Remembered: a restart without --hostname and an offline add use it.
	s.stop(t)
	code, out, e := runHub(t, "device", "add", "--data", s.dir, "--json", "dev2")
	var off deviceAdded
	if code != 0 || json.Unmarshal([]byte(out), &off) != nil || !strings.HasPrefix(off.ConnectionString, "HostName="+name+";") {
		t.Fatalf("offline add: %d %s %s", code, out, e)
	}
	s2 := startServe(t, s.dir)
	if s2.info.HostName != name {
		t.Fatalf("after a restart: host name %s", s2.info.HostName)
	}
	if u := iothubtest.NextDesired(t, dialDevice(t, s2, off.ConnectionString, off.CAFile)); !u.Full {
		t.Fatal("no full twin")
	}

	for _, bad := range []string{"bad name", "-x.example", "a..b", "x_y.example", strings.Repeat("a", 64) + ".example", "fe80::1%eth0"} {
		if code, _, e := runHub(t, "serve", "--data", t.TempDir(), "--hostname", bad); code != exitcode.Usage || !strings.Contains(e, "--hostname") {
			t.Errorf("--hostname %q: %d %q", bad, code, e)
		}
	}
}

// Listening beyond loopback needs --expose-to-network; then serve prints the URLs devices
// really use (the host name), never the wildcard address.
func TestServeExpose(t *testing.T) {
	for _, args := range [][]string{
		{"--http", "0.0.0.0:0"},
		{"--mqtt", "0.0.0.0:0"},
		{"--http", "[::]:0"},
		{"--http", ":0"},
		{"--mqtt", "bench.example:8883"},
	} {
		a := append([]string{"serve", "--data", t.TempDir(), "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"}, args...)
		if code, _, e := runHubFor(t, 5*time.Second, a...); code != exitcode.Usage || !strings.Contains(e, "--expose-to-network") {
			t.Errorf("%v: %d %q", args, code, e)
		}
	}
	s := startServe(t, t.TempDir(), "--http", "0.0.0.0:0", "--mqtt", "0.0.0.0:0", "--expose-to-network", "--hostname", "192.0.2.7")
	port := s.info.HTTP[strings.LastIndex(s.info.HTTP, ":")+1:]
	if !strings.HasPrefix(s.info.HTTP, "http://127.0.0.1:") || s.info.FileBaseURL != "http://192.0.2.7:"+port+"/files" ||
		!strings.HasPrefix(s.info.DeviceMQTT, "192.0.2.7:") {
		t.Fatalf("%+v", s.info)
	}
	if out := s.out.String(); strings.Contains(out, "0.0.0.0") || strings.Contains(out, "[::]") || !strings.Contains(out, "http://192.0.2.7:"+port+"/files/") {
		t.Fatalf("serve output:\n%s", out)
	}
	// Without a host name devices elsewhere could use, serve warns.
	s2 := startServe(t, t.TempDir(), "--http", "0.0.0.0:0", "--expose-to-network")
	if !strings.Contains(s2.err.String(), "give --hostname") {
		t.Fatalf("no warning:\n%s", s2.err.String())
	}
}

// serverFor starts a server in-process with cfg's limits on 127.0.0.1 ports.
func serverFor(t *testing.T, cfg serverConfig) *server {
	t.Helper()
	cfg.dir, cfg.mqtt, cfg.http = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	cfg.token, cfg.log = strings.Repeat("t", minTokenLen), slog.New(slog.DiscardHandler)
	s, err := startServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

// waitClosed reads conn until the server closes it; it fails if that takes longer than
// within (the server's limit is far shorter).
func waitClosed(t *testing.T, conn net.Conn, within time.Duration, what string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the connection is still open after %v", what, within)
	}
}

// A client that sends a body byte by byte, or keeps an idle connection, is cut off.
func TestHTTPTimeouts(t *testing.T) {
	s := serverFor(t, serverConfig{readTimeout: 300 * time.Millisecond, idleTimeout: 300 * time.Millisecond})
	addr := strings.TrimPrefix(s.info.HTTP, "http://")
	for _, auth := range []string{"", "Authorization: Bearer " + strings.Repeat("t", minTokenLen) + "\r\n"} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /api/devices HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n%s\r\n{", auth)
		stop := make(chan struct{})
		go func() { // one byte every 100 ms, as a slow-loris client
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
					if _, err := conn.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
		waitClosed(t, conn, 5*time.Second, "a slow body")
		close(stop)
	}

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /files/f1/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	waitClosed(t, conn, 5*time.Second, "an idle keep-alive connection")
}

// One client holds at most maxConnsPerClient connections; more are closed at once, and a
// closed one frees its place.
func TestHTTPConnsPerClient(t *testing.T) {
	s := serverFor(t, serverConfig{maxConnsPerClient: 3})
	addr := strings.TrimPrefix(s.info.HTTP, "http://")
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// The server accepts connections in order: a request on the last one is answered, so
	// all three are counted.
	fmt.Fprintf(held[2], "GET /files/f1/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(held[2]), nil); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("third connection: %v", err)
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	waitClosed(t, extra, 5*time.Second, "a fourth connection") // the header timeout is 10 s

	held[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(s.info.HTTP + "/files/f1/x")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no place after a connection closed: %v", err)
		}
		time.Sleep(40 * time.Millisecond)
	}
}

// A download may last longer than the read timeout: only reading the request is limited.
func TestHTTPLongDownload(t *testing.T) {
	s := serverFor(t, serverConfig{readTimeout: 200 * time.Millisecond, idleTimeout: 200 * time.Millisecond})
	dir := t.TempDir()
	raw := make([]byte, 16<<20) // random: the image stays as large
	rand.Read(raw)
	m, img := procSignedUpdate(t, dir, "1.0", raw, mustKey(t))
	mb, _ := os.ReadFile(m)
	u, err := s.svc.Import(mb, map[string]string{filepath.Base(img): img})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(s.info.HTTP + "/files/" + u.Files[0].ID + "/" + u.Files[0].FileName)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	want, _ := os.ReadFile(img)
	var got bytes.Buffer
	start := time.Now()
	for {
		n, err := io.CopyN(&got, resp.Body, 1<<20)
		if err != nil || n == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond) // a slow device
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("got %d of %d bytes in %v", got.Len(), len(want), time.Since(start))
	}
	t.Logf("%d bytes in %v", got.Len(), time.Since(start))
}

func mustKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := image.GenerateKey(image.Ed25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// slowReader pauses before each read.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(40 * time.Millisecond)
	return s.r.Read(p)
}

// An upload may last longer than the read timeout while its bytes keep coming.
func TestHTTPLongUpload(t *testing.T) {
	// 1 MiB in reads 40 ms apart takes over a second, well past the read timeout of 500 ms,
	// which the gap between two reads stays far from even on a loaded machine.
	s := serverFor(t, serverConfig{readTimeout: 500 * time.Millisecond, idleTimeout: 500 * time.Millisecond})
	raw := make([]byte, 1<<20)
	rand.Read(raw)
	m, img := procSignedUpdate(t, t.TempDir(), "1.0", raw, mustKey(t))
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	w, _ := mw.CreateFormField(uploadManifestPart)
	w.Write([]byte(mustRead(t, m)))
	w, _ = mw.CreateFormFile(uploadFilePart, filepath.Base(img))
	w.Write([]byte(mustRead(t, img)))
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, s.info.HTTP+"/api/updates", slowReader{&body})
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+strings.Repeat("t", minTokenLen))
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("after %v: %v", time.Since(start), err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("after %v: %d %s", time.Since(start), resp.StatusCode, b)
	}
	t.Logf("uploaded %d bytes in %v", body.Cap(), time.Since(start))
}
