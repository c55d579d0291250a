package app

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/internal/peers"
)

// tinyproxy is Debian's tinyproxy running on 127.0.0.1 with a config this test wrote; its
// log shows each request it carried.
type tinyproxy struct {
	url, log string
}

func startTinyproxy(t *testing.T) *tinyproxy {
	t.Helper()
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		peers.Missing(t, "tinyproxy (Debian package tinyproxy): %v", err)
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p := &tinyproxy{url: "http://127.0.0.1:" + strconv.Itoa(port), log: filepath.Join(dir, "tinyproxy.log")}
	// No ConnectPort line: CONNECT to any port (the hub's WebSocket port is not 443).
	conf := "Port " + strconv.Itoa(port) + "\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\n" +
		"LogFile \"" + p.log + "\"\nLogLevel Info\nMaxClients 20\nDisableViaHeader Yes\n"
	mustWrite(t, filepath.Join(dir, "tinyproxy.conf"), []byte(conf))
	cmd := exec.Command(bin, "-d", "-c", filepath.Join(dir, "tinyproxy.conf"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("tinyproxy does not listen on %d: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logged returns the proxy's log.
func (p *tinyproxy) logged(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRunThroughProxy: with agent.proxy the agent reaches the hub through a real HTTP proxy
// (tinyproxy): MQTT over WebSockets in a CONNECT tunnel, TLS end to end; the proxy's log
// shows the tunnel to the hub's WebSocket port. The hub's MQTT port is not the address
// given, so a direct connection would not reach it.
func TestRunThroughProxy(t *testing.T) {
	px := startTinyproxy(t)
	dir := t.TempDir()
	ca, err := hub.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.New(hub.Options{Address: "127.0.0.1:0", WebSocketAddress: "127.0.0.1:0", TLSConfig: ca.ServerTLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if err := h.RegisterDevice("dev1", testDeviceKey); err != nil {
		t.Fatal(err)
	}
	th := &testHub{Hub: h}
	wsAddr := h.WebSocketAddr().String()
	fx := newAgentFixture(t, hubConnection+"hub_address = "+strconv.Quote(wsAddr)+"\nca_file = "+
		strconv.Quote(filepath.ToSlash(filepath.Join(dir, hub.CACertFile)))+"\nproxy = "+strconv.Quote(px.url)+"\n")
	ra := startRun(t, fx)
	waitReported(t, th, func(a *reportedAgent) bool { return a.State != nil })
	code, logs := ra.stop()
	if code != 0 || !strings.Contains(logs, "connecting through a proxy, MQTT over WebSockets") {
		t.Errorf("exit %d, logs:\n%s", code, logs)
	}
	if l := px.logged(t); !strings.Contains(l, "CONNECT "+wsAddr) {
		t.Errorf("the proxy did not carry the connection to %s; its log:\n%s", wsAddr, l)
	}
}

// TestInstallThroughProxy: downloads go through agent.proxy too.
func TestInstallThroughProxy(t *testing.T) {
	px := startTinyproxy(t)
	fx := newAgentFixture(t, "proxy = "+strconv.Quote(px.url)+"\n")
	srv := httptest.NewServer(http.FileServer(http.Dir(fx.dir)))
	defer srv.Close()
	url := srv.URL + "/" + filepath.Base(fx.img)
	code, out, errOut := fx.run(t, "install", "--no-reboot", url)
	if code != 0 || !strings.Contains(out, "bank B is pending") {
		t.Fatalf("exit %d %q %q", code, out, errOut)
	}
	l := px.logged(t)
	for _, want := range []string{"HEAD " + url, "GET " + url} {
		if !strings.Contains(l, want) {
			t.Errorf("the proxy's log lacks %q:\n%s", want, l)
		}
	}
}
