package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// asVersion3 rewrites the journal's record in the layout of version 3: a step's progress
// kept the download's offset, file-hash state and validators in members of its own.
func asVersion3(t *testing.T, d *device, mangle func(progress map[string]any)) {
	t.Helper()
	a := d.agent(nil)
	defer a.Close()
	var rec map[string]any
	if _, err := a.j.Load(&rec); err != nil {
		t.Fatal(err)
	}
	rec["version"] = 3
	for _, s := range rec["deployment"].(map[string]any)["steps"].([]any) {
		p := s.(map[string]any)["progress"].(map[string]any)
		dl := p["download"].(map[string]any)
		p["file_offset"], p["file_hash"] = dl["offset"], dl["hashState"]
		p["etag"], p["last_modified"] = dl["etag"], dl["lastModified"]
		delete(p, "download")
		if mangle != nil {
			mangle(p)
		}
	}
	if err := a.j.Save(rec); err != nil {
		t.Fatal(err)
	}
}

// An install that an agent of journal version 3 started and a power cut stopped resumes
// under this agent where it stopped: the download continues with a Range from the old
// record's file offset, with the file hash carried over (a file that differs is still
// refused), and the slot ends up whole and pending. A version-3 record whose hash state does
// not fit starts the install over cleanly.
func TestResumeJournalVersion3(t *testing.T) {
	raw := payload(40, 700<<10)
	img := makeImage(t, raw, "2.0", nil)
	sum := sha256.Sum256(img)
	for _, tc := range []struct {
		name   string
		mangle func(map[string]any)
		resume bool
	}{
		{"resumes", nil, true},
		{"starts over", func(p map[string]any) { p["file_hash"] = "AAAA" }, false},
	} {
		d := newDevice(t, payload(1, 64<<10))
		srv := newServer(t)
		var mu sync.Mutex
		var ranges []string
		srv.Hook = func(w http.ResponseWriter, r *http.Request) bool {
			mu.Lock()
			ranges = append(ranges, r.Header.Get("Range"))
			mu.Unlock()
			return false
		}
		src := Source{URL: srv.put("rootfs.aduimg", img), Size: int64(len(img)), SHA256: sum[:]}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var written int64
		a := d.agent(func(o *Options) {
			o.OnBytes = func(n int64) {
				if written += n; written > 400<<10 {
					cancel() // the power goes half way
				}
			}
		})
		if _, err := a.InstallLocal(ctx, LocalInstall{Source: src, NoReboot: true}); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: first start: %v", tc.name, err)
		}
		a.Close()
		cancel()
		rec, _ := loadRecord(t, d)
		at := rec.Deployment.Steps[0].Progress.Download.Offset
		if at == 0 {
			t.Fatalf("%s: the first start left no resume point", tc.name)
		}
		asVersion3(t, d, tc.mangle)

		sent := srv.Sent.Load()
		mu.Lock()
		ranges = nil
		mu.Unlock()
		dep, err := d.agent(nil).InstallLocal(context.Background(), LocalInstall{Source: src, NoReboot: true})
		if err != nil || dep.Phase != PhasePending || !d.slotHolds("B", raw) {
			t.Fatalf("%s: second start: %v, phase %v, slot whole %v", tc.name, err, dep, d.slotHolds("B", raw))
		}
		want, fetched := "", int64(len(img))
		if tc.resume {
			want, fetched = "bytes="+strconv.FormatInt(at, 10)+"-", int64(len(img))-at
		}
		mu.Lock()
		first := ranges[0]
		mu.Unlock()
		if first != want || srv.Sent.Load()-sent != fetched {
			t.Errorf("%s: second start began with Range %q and fetched %d bytes; want %q and %d", tc.name, first, srv.Sent.Load()-sent, want, fetched)
		}
		if r, _ := loadRecord(t, d); r.Version != StateVersion {
			t.Errorf("%s: journal version %d", tc.name, r.Version)
		}
	}
}
