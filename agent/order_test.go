package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/adu"
)

// ackOf returns the last writable-property ack of the desired $version v: its code (0: none
// yet) and description.
func ackOf(h *testHub, v int64) (code int, desc string) {
	for _, p := range h.all() {
		var m struct {
			DU struct {
				Service *struct {
					Code    int    `json:"ac"`
					Version int64  `json:"av"`
					Desc    string `json:"ad"`
				} `json:"service"`
			} `json:"deviceUpdate"`
		}
		if json.Unmarshal([]byte(p), &m) == nil && m.DU.Service != nil && m.DU.Service.Version == v {
			code, desc = m.DU.Service.Code, m.DU.Service.Desc
		}
	}
	return code, desc
}

// stateReports returns the reported patches that set deviceUpdate.agent.state.
func stateReports(h *testHub) []string {
	var out []string
	for _, p := range h.all() {
		if strings.Contains(p, `"state":`) {
			out = append(out, p)
		}
	}
	return out
}

// A deployment whose manifest is not authentic is rejected in the writable-property ack
// (406, the extended result code and why), before anything else: no state is reported (no
// DeploymentInProgress, no Failed), nothing is downloaded, nothing recorded or pending.
func TestRejected(t *testing.T) {
	raw := payload(2, 64<<10)
	good := makeImage(t, raw, "2.0", nil)
	for _, tc := range []struct {
		name string
		mod  func(u *update)
		erc  adu.ExtendedResultCode
	}{
		{"signed text changed", func(u *update) { u.manifest = strings.Replace(u.manifest, `"2.0"`, `"2.1"`, 1) }, adu.ERCManifestValidationFailed},
		{"unknown fields change the signed text", func(u *update) {
			u.manifest = strings.Replace(u.manifest, `{"updateId"`, `{"futureField":{"a":[1,2]},"updateId"`, 1)
		}, adu.ERCManifestValidationFailed},
		{"huge manifest", func(u *update) { u.manifest = `{"x":"` + strings.Repeat("A", 300<<10) + `"}` }, adu.ERCManifestValidationFailed},
		{"unknown root kid", func(u *update) {
			parts := strings.Split(u.sig, ".")
			parts[0] = b64url([]byte(`{"alg":"RS256","sjwk":"` + strings.Repeat("A", 10) + `"}`))
			u.sig = strings.Join(parts, ".")
		}, 0},
		{"no signature", func(u *update) { u.sig = "" }, adu.ERCManifestValidationFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDevice(t, payload(1, 64<<10))
			srv := newServer(t)
			u := newUpdate(t, srv, "2.0", raw, good, manifestOpts{})
			tc.mod(u)
			h := newHub(t)
			hub := h.deliver(u.service("wf", ""))
			v := int64(2)
			if hub == Hub(h) {
				v = h.version
			}
			if err := runAgent(t, d.agent(nil), hub, func() bool { code, _ := ackOf(h, v); return code != 0 }); err != nil {
				t.Fatalf("%v; reports %v", err, h.all())
			}
			code, desc := ackOf(h, v)
			if code != adu.AckRejected || desc == "" || (tc.erc != 0 && !strings.HasPrefix(desc, tc.erc.String()+": ")) {
				t.Errorf("ack %d %q, want 406 with %s", code, desc, tc.erc)
			}
			if s := stateReports(h); len(s) > 0 {
				t.Errorf("state reported for a rejected request: %s", s)
			}
			if srv.Hits.Load() != 0 {
				t.Errorf("%d downloads for a rejected request", srv.Hits.Load())
			}
			if st := d.bootState(); st.Pending != "" || st.Primary != "A" {
				t.Errorf("bootloader %+v", st)
			}
			if rec := d.agent(nil).Record(); rec.Deployment != nil || rec.Last != nil {
				t.Errorf("record %+v", rec)
			}
		})
	}
}

// A deployment that arrives while another is being installed is rejected (406, no state
// change, the running one goes on); when the running one ends without a reboot (here it
// fails), the rejected one is taken up: acknowledged 200, in progress, installed.
func TestBusyRejected(t *testing.T) {
	d := newDevice(t, payload(1, 64<<10))
	srv := newServer(t)
	raw := payload(2, 64<<10)
	slow := newUpdate(t, srv, "9.0", raw, makeImage(t, raw, "9.0", nil), manifestOpts{})
	slow.url = srv.put("slow.aduimg", slow.file)
	release := srv.stall("slow.aduimg")
	defer release()
	u2 := newUpdate(t, srv, "2.0", raw, makeImage(t, raw, "2.0", nil), manifestOpts{})

	h := newHub(t)
	h.full(json.RawMessage(`{}`))
	stop, done := runBackground(d.agent(nil), h)
	defer stop()
	h.setService(slow.service("wf-1", ""))
	waitFor(t, "wf-1 downloading", func() bool { return stateOf(lastState(h)) == 6 && srv.Hits.Load() > 0 })
	n := len(h.all())
	v2 := h.setService(u2.service("wf-2", ""))
	waitFor(t, "wf-2 rejected", func() bool { code, _ := ackOf(h, v2); return code != 0 })
	if code, desc := ackOf(h, v2); code != adu.AckRejected || !strings.Contains(desc, "deployment wf-1 is being installed") {
		t.Errorf("ack %d %q", code, desc)
	}
	for _, p := range h.all()[n:] {
		if strings.Contains(p, `"state"`) {
			t.Errorf("state reported for the rejected deployment: %s", p)
		}
	}
	srv.drop("slow.aduimg") // wf-1 fails (404) once released
	release()
	if err := waitDone(t, done); !errors.Is(err, ErrRebooting) {
		t.Fatalf("wf-2 did not run: %v; reports %v", err, h.all())
	}
	if code, _ := ackOf(h, v2); code != adu.AckAccepted {
		t.Errorf("wf-2 finally acked %d", code)
	}
	var order bytes.Buffer
	for _, p := range stateReports(h) {
		var m struct {
			DU struct {
				Agent struct {
					State    int          `json:"state"`
					Workflow adu.Workflow `json:"workflow"`
				} `json:"agent"`
			} `json:"deviceUpdate"`
		}
		json.Unmarshal([]byte(p), &m)
		fmt.Fprintf(&order, "%s:%d ", m.DU.Agent.Workflow.ID, m.DU.Agent.State)
	}
	if got := order.String(); !strings.HasSuffix(got, "wf-1:6 wf-1:255 wf-1:0 wf-2:6 ") {
		t.Errorf("state reports (workflow:state) %s", got)
	}
	if !d.slotHolds("B", raw) || d.bootState().Pending != "B" {
		t.Errorf("wf-2 not installed: %+v", d.bootState())
	}
}
