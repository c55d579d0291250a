package powercut

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aduflash/aduflash/agent"
	simboard "github.com/aduflash/aduflash/devicesim/board"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/internal/httpcount"
	"github.com/aduflash/aduflash/iothub"
)

// twin is the service's side of a board's device twin: the deployment in the desired
// properties, and what the device reported. Each boot connects anew and gets the whole twin,
// as from IoT Hub after a reconnect.
type twin struct {
	power   *simboard.Power
	service json.RawMessage

	mu       sync.Mutex
	version  int64
	reported map[string]any
	agent    []map[string]any // the reported deviceUpdate.agent objects, in order
	changed  func()           // called after every report
}

var errPowerOff = errors.New("powercut: the device has no power")

// connect opens the connection of one boot.
func (t *twin) connect(ctx context.Context) (agent.Hub, func(), error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.version++
	desired, _ := json.Marshal(map[string]any{"$version": t.version, "deviceUpdate": map[string]any{"__t": "c", "service": t.service}})
	reported, _ := json.Marshal(t.reported)
	ch := make(chan iothub.DesiredUpdate, 1)
	ch <- iothub.DesiredUpdate{Full: true, Version: t.version, Twin: iothub.Twin{Desired: desired, Reported: reported, DesiredVersion: t.version}}
	return conn{t, ch}, func() {}, nil
}

// onReport sets what is called after every report (nil: nothing).
func (t *twin) onReport(fn func()) { t.mu.Lock(); t.changed = fn; t.mu.Unlock() }

// lastAgent returns the last reported agent object that has a state.
func (t *twin) lastAgent() map[string]any {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(t.agent) - 1; i >= 0; i-- {
		if _, ok := t.agent[i]["state"]; ok {
			return t.agent[i]
		}
	}
	return nil
}

// reportedState tells whether the device ever reported state for the deployment.
func (t *twin) reportedState(state int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, a := range t.agent {
		if stateOf(a) == state && workflowOf(a) == workflowID {
			return true
		}
	}
	return false
}

func stateOf(a map[string]any) int {
	s, ok := a["state"].(float64)
	if !ok {
		return -1
	}
	return int(s)
}

func workflowOf(a map[string]any) string {
	w, _ := a["workflow"].(map[string]any)
	id, _ := w["id"].(string)
	return id
}

type conn struct {
	t  *twin
	ch chan iothub.DesiredUpdate
}

func (c conn) Desired() <-chan iothub.DesiredUpdate { return c.ch }

func (c conn) UpdateReported(ctx context.Context, patch json.RawMessage) (int64, error) {
	if c.t.power.IsOff() {
		return 0, errPowerOff
	}
	var m map[string]any
	if err := json.Unmarshal(patch, &m); err != nil {
		return 0, err
	}
	c.t.mu.Lock()
	if c.t.reported == nil {
		c.t.reported = map[string]any{}
	}
	hub.MergePatch(c.t.reported, m)
	if du, ok := m["deviceUpdate"].(map[string]any); ok {
		if a, ok := du["agent"].(map[string]any); ok {
			c.t.agent = append(c.t.agent, a)
		}
	}
	n, fn := int64(len(c.t.agent)), c.t.changed
	c.t.mu.Unlock()
	if fn != nil {
		fn()
	}
	return n, nil
}

// files serves the update files to every board, at /<board>/<file id>, with Range support,
// and counts the body bytes sent to each board in each of its boots.
type files struct {
	byID map[string][]byte

	mu     sync.Mutex
	idle   *sync.Cond
	boards map[string]*account
}

// account is one board's downloads.
type account struct {
	boot   int
	sent   map[int]map[string]int64 // body bytes of the requests each boot's agent sent, by file id
	active int                      // requests being served
}

func newFiles(byID map[string][]byte) *files {
	f := &files{byID: byID, boards: map[string]*account{}}
	f.idle = sync.NewCond(&f.mu)
	return f
}

// startBoot opens the account of a board's boot.
func (f *files) startBoot(board string, boot int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.boards[board]
	if a == nil {
		a = &account{sent: map[int]map[string]int64{}}
		f.boards[board] = a
	}
	a.boot = boot
	if a.sent[boot] == nil {
		a.sent[boot] = map[string]int64{}
	}
}

// sentIn waits until no request of the board is being served and returns the bytes sent in
// a boot, by file id.
func (f *files) sentIn(board string, boot int) map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.boards[board]
	for a != nil && a.active > 0 {
		f.idle.Wait()
	}
	if a == nil {
		return nil
	}
	return maps.Clone(a.sent[boot])
}

// forget drops a board's account.
func (f *files) forget(board string) { f.mu.Lock(); delete(f.boards, board); f.mu.Unlock() }

func (f *files) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	board, id, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	data, ok := f.byID[id]
	f.mu.Lock()
	a := f.boards[board]
	if a == nil || !ok {
		f.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	boot := a.boot
	if n, err := strconv.Atoi(r.Header.Get(bootHeader)); err == nil && a.sent[n] != nil {
		boot = n // sent by that boot's agent, however late it comes
	}
	a.active++
	f.mu.Unlock()
	var n atomic.Int64
	http.ServeContent(httpcount.Writer{ResponseWriter: w, N: &n}, r, id, time.Unix(1.7e9, 0), bytes.NewReader(data))
	f.mu.Lock()
	a.sent[boot][id] += n.Load()
	a.active--
	f.idle.Broadcast()
	f.mu.Unlock()
}
