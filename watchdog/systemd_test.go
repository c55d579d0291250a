//go:build !windows

package watchdog

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// listen creates a unixgram socket the way systemd's notify socket is.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %q: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, _, err := conn.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return string(buf[:n])
}

func shortTempDir(t *testing.T) string {
	t.Helper()
	// sun_path is limited to ~104-108 bytes; t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "wd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func exerciseNotify(t *testing.T, s *Systemd, conn *net.UnixConn) {
	t.Helper()
	steps := []struct {
		send func() error
		want string
	}{
		{s.Ready, "READY=1"},
		{func() error { return s.Status("checking health\nstep 2") }, "STATUS=checking health step 2"},
		{s.Keepalive, "WATCHDOG=1"},
		{s.Trigger, "WATCHDOG=trigger"},
		{s.Stopping, "STOPPING=1"},
		{func() error { return s.Notify("READY=1", "STATUS=up", "MAINPID=12") }, "READY=1\nSTATUS=up\nMAINPID=12"},
		{func() error { _, err := s.SetTimeout(2500 * time.Millisecond); return err }, "WATCHDOG_USEC=2500000"},
	}
	for _, st := range steps {
		if err := st.send(); err != nil {
			t.Fatalf("send %q: %v", st.want, err)
		}
		if got := recv(t, conn); got != st.want {
			t.Errorf("received %q, want %q", got, st.want)
		}
	}
	if d, err := s.Timeout(); d != 2500*time.Millisecond || err != nil {
		t.Errorf("Timeout after SetTimeout = %v, %v", d, err)
	}
}

func TestSystemdNotifyPath(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "notify")
	conn := listen(t, path)
	s, err := SystemdFromEnv(envLookup(map[string]string{"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}), 1)
	if err != nil {
		t.Fatal(err)
	}
	exerciseNotify(t, s, conn)
}

func TestSystemdNotifyNoListener(t *testing.T) {
	s, err := NewSystemd(filepath.Join(shortTempDir(t), "absent"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(); err == nil {
		t.Fatal("Ready to a missing socket succeeded")
	}
}

func TestFeederWithSystemd(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "notify")
	conn := listen(t, path)
	s, err := NewSystemd(path, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock()
	ctx, cancel := context.WithCancel(context.Background())
	done := startFeeder(ctx, NewFeeder(s, Interval(2*time.Second), func() bool { return true }, clk))
	if got := recv(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("first feed %q", got)
	}
	clk.waitWaiters(t, 1)
	clk.Advance(time.Second)
	if got := recv(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("second feed %q", got)
	}
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
}
