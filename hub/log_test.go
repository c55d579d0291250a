package hub

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aduflash/aduflash/internal/syncbuf"
	"github.com/aduflash/aduflash/internal/testwait"
)

// logBuffer collects a text slog handler's lines; safe for the hub's goroutines.
type logBuffer struct{ syncbuf.Buffer }

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// line returns the first log line matching every pattern, or "".
func (l *logBuffer) line(patterns ...string) string {
next:
	for _, ln := range strings.Split(l.String(), "\n") {
		for _, p := range patterns {
			if !regexp.MustCompile(p).MatchString(ln) {
				continue next
			}
		}
		return ln
	}
	return ""
}

// wait waits for a log line matching every pattern and returns it.
func (l *logBuffer) wait(t *testing.T, patterns ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ln := l.line(patterns...); ln != "" {
			return ln
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line matching %q in:\n%s", patterns, l.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Each connection of a device is logged and kept: up since when, from where; how it ended
// (the device's DISCONNECT or not). A connection that a newer one replaced does not end the
// device's.
func TestConnectionsAreLoggedAndKept(t *testing.T) {
	var logs logBuffer
	h := newHub(t, Options{Logger: logs.logger()})
	if err := h.RegisterDevice("dev", key1); err != nil {
		t.Fatal(err)
	}
	if c := h.Connection("dev"); c != (Connection{}) {
		t.Fatalf("before any connection: %+v", c)
	}

	d1 := mustRaw(t, h, goodRaw(h, "dev", key1))
	logs.wait(t, `level=INFO msg="hub: device connected" device=dev remote=127\.0\.0\.1:\d+ modelId=dtmi:azure:iot:deviceUpdateContractModel;2`)
	c := h.Connection("dev")
	if !c.Connected || c.Since.IsZero() || !strings.HasPrefix(c.Remote, "127.0.0.1:") {
		t.Fatalf("connected: %+v", c)
	}

	// A second connection of the device takes over: the first one's end changes nothing.
	d2 := mustRaw(t, h, goodRaw(h, "dev", key1))
	d1.expectLost(t, "taken over")
	logs.wait(t, `msg="hub: an earlier connection of the device ended" device=dev`)
	if c := h.Connection("dev"); !c.Connected {
		t.Fatalf("after a takeover: %+v", c)
	}

	// The device disconnects (as an agent does before a reboot): clean.
	d2.c.Disconnect(250)
	logs.wait(t, `level=INFO msg="hub: device disconnected" device=dev .*clean=true why="the device sent DISCONNECT"`)
	if c := h.Connection("dev"); c.Connected || !c.Clean || c.Since.IsZero() {
		t.Fatalf("after DISCONNECT: %+v", c)
	}

	// Dropped by the hub: not clean.
	mustRaw(t, h, goodRaw(h, "dev", key1))
	logs.wait(t, `msg="hub: device connected" device=dev`)
	waitUntil(t, "connected again", func() bool { return h.Connection("dev").Connected })
	if err := h.Disconnect("dev"); err != nil {
		t.Fatal(err)
	}
	logs.wait(t, `msg="hub: device disconnected" device=dev .*clean=false`)
	if c := h.Connection("dev"); c.Connected || c.Clean {
		t.Fatalf("after a drop: %+v", c)
	}

	// Removed, it has no connection to show.
	if err := h.RemoveDevice("dev"); err != nil {
		t.Fatal(err)
	}
	if c := h.Connection("dev"); c != (Connection{}) {
		t.Fatalf("after the removal: %+v", c)
	}
}

// The broker stops a connection that a newer one of the device takes over before the newer
// one is recorded: its end must not be taken for the device's (it was, now and then, under
// load).
func TestTakenOverEndsBeforeTheNewConnectionIsRecorded(t *testing.T) {
	var logs logBuffer
	h := newHub(t, Options{Logger: logs.logger()})
	old := &mqtt.Client{ID: "dev"}
	old.Net.Remote = "127.0.0.1:1"
	h.connected(old)
	old.Stop(packets.ErrSessionTakenOver)
	h.disconnected(old, errors.New("read: use of closed network connection"))
	if c := h.Connection("dev"); !c.Connected {
		t.Errorf("after a takeover whose newer connection is not recorded yet: %+v", c)
	}
	if logs.line(`msg="hub: an earlier connection of the device ended" device=dev`) == "" ||
		logs.line(`msg="hub: device disconnected"`) != "" {
		t.Errorf("log:\n%s", logs.String())
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, 10*time.Second, what, cond)
}

// What a device reports, what the hub writes to it, its file requests and its results are
// logged, so that a person can follow a device.
func TestServiceLogsFollowADevice(t *testing.T) {
	var logs logBuffer
	e := &joinEnv{svcEnv: startEnvLogged(t, t.TempDir(), logs.logger())}
	im, files := buildImport(t, "1.0", nil, payload(1000, 1))
	u, err := e.svc.Import(im, files)
	if err != nil {
		t.Fatal(err)
	}
	e.reportVia(t, "dev", agentProps("a", "toaster", oldInstalled))
	logs.wait(t, `level=INFO msg="hub: device reported" device=dev state=0 installedUpdateId=.*0\.9.* deviceProperties="contractModelId=dtmi:azure:iot:deviceUpdateContractModel;2,manufacturer=contoso,model=toaster,ring=a"`)
	dep, err := e.svc.Deploy(u.UpdateID, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs.wait(t, `level=INFO msg="hub: wrote the device's desired deviceUpdate.service" device=dev action=3 workflow=`+dep.ID+` desiredVersion=\d+ connected=false`)
	logs.wait(t, `level=DEBUG msg="hub: desired properties" device=dev`)

	e.reportVia(t, "dev", `{"state":6,"workflow":{"action":3,"id":"`+dep.ID+`"}}`)
	logs.wait(t, `level=INFO msg="hub: device reported" device=dev state=6 workflow=`+dep.ID)
	logs.wait(t, `level=DEBUG msg="hub: reported properties" device=dev version=\d+ patch=`)

	// A download in three ranges: its start and its end at Info, the middle at Debug; a
	// request for a file that is not there at Warn.
	url := dep.FileURLs[u.Files[0].ID]
	for _, r := range []string{"bytes=0-399", "bytes=400-799", "bytes=800-"} {
		if code, _, _ := get(t, url, "Range", r); code != http.StatusPartialContent {
			t.Fatalf("%s: %d", r, code)
		}
	}
	logs.wait(t, `level=INFO msg="hub: file served" remote=127\.0\.0\.1:\d+ method=GET path=\S+ range="bytes=0-399" status=206 bytes=400 .*first=0 last=399 size=1000`)
	logs.wait(t, `level=DEBUG msg="hub: file served" .*range="bytes=400-799" status=206 bytes=400 .*first=400 last=799 size=1000`)
	logs.wait(t, `level=INFO msg="hub: file served" .*range="bytes=800-" status=206 bytes=200 .*first=800 last=999 size=1000`)
	get(t, url+"x")
	logs.wait(t, `level=WARN msg="hub: file request refused" .*status=404`)
	// A device that goes away in the middle of a response.
	req := httptest.NewRequest(http.MethodGet, url, nil)
	e.svc.FileHandler().ServeHTTP(&failingWriter{header: http.Header{}, limit: 300}, req)
	logs.wait(t, `level=INFO msg="hub: file request cut short" .*status=200 bytes=300 .*first=0 last=999 size=1000 wanted=1000`)

	e.reportVia(t, "dev", `{"state":255,"workflow":{"action":3,"id":"`+dep.ID+`"},"lastInstallResult":{"resultCode":0,"extendedResultCodes":"32000020","resultDetails":"health check failed"}}`)
	logs.wait(t, `level=INFO msg="hub: device result changed" deployment=`+dep.ID+` device=dev from=InProgress to=Failed resultCode=0 extendedResultCodes=32000020 resultDetails="health check failed"`)
}

// failingWriter fails every write after limit bytes, like a connection that went away.
type failingWriter struct {
	header http.Header
	limit  int
	n      int
}

func (w *failingWriter) Header() http.Header { return w.header }
func (w *failingWriter) WriteHeader(int)     {}
func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > w.limit {
		k := w.limit - w.n
		w.n = w.limit
		return k, errors.New("connection reset")
	}
	w.n += len(p)
	return len(p), nil
}
