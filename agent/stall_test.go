package agent

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A request that stops delivering bytes is abandoned after Options.StallTimeout and the
// download resumes with a Range request: without the option reaching the download, the
// first request would hang for download's default minute.
func TestDownloadStallTimeout(t *testing.T) {
	srv := newServer(t)
	raw := payload(31, 300<<10)
	img := makeImage(t, raw, "2.0", nil)
	url := srv.put("stall.aduimg", img)
	var requests atomic.Int32
	var resumedAt atomic.Value
	srv.Hook = func(w http.ResponseWriter, r *http.Request) bool {
		if requests.Add(1) > 1 {
			resumedAt.Store(r.Header.Get("Range"))
			return false
		}
		// The first request: half of the file, then nothing until the client gives up.
		w.Header().Set("Content-Length", strconv.Itoa(len(img)))
		w.WriteHeader(http.StatusOK)
		w.Write(img[:len(img)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return true
	}
	d := newDevice(t, payload(1, 64<<10))
	a := d.agent(func(o *Options) { o.StallTimeout = 300 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := a.InstallLocal(ctx, LocalInstall{Source: Source{URL: url, Size: int64(len(img))}, NoReboot: true}); err != nil {
		t.Fatalf("install: %v (after %d requests)", err, requests.Load())
	}
	rng, _ := resumedAt.Load().(string)
	if requests.Load() < 2 || !strings.HasPrefix(rng, "bytes=") || rng == "bytes=0-" {
		t.Fatalf("%d requests, resumed with Range %q", requests.Load(), rng)
	}
	if !d.slotHolds("B", raw) {
		t.Fatal("bank B does not hold the payload")
	}
}
