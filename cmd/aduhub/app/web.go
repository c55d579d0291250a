package app

import (
	"bytes"
	"encoding/json"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aduflash/aduflash/hub"
)

// The web page at /: server-rendered; its script refreshes the parts marked "live" every 2 s
// and drives the deploy form and the cancel and retry buttons through the JSON API (the
// session cookie of the browser, never a token in the page). Without script the page reloads
// itself every 2 s and is read-only.
var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"update": updateIDText,
	"installed": func(s string) string {
		if t := updateText(s); t != "" {
			return t
		}
		return "—"
	},
	"state": func(st *int) string {
		if n := stateName(st); n != "" {
			return n
		}
		return "—"
	},
	"props": func(m map[string]string) string {
		if len(m) == 0 {
			return "—"
		}
		return strings.Join(keyValues(m), ", ") // a space to wrap at
	},
	"group":  groupText,
	"when":   timeText,
	"iso":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"result": resultText,
	"retried": func(ts string) string {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			return timeText(t)
		}
		return ts
	},
	"dash": func(s string) string {
		if s == "" {
			return "—"
		}
		return s
	},
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<noscript><meta http-equiv="refresh" content="2"></noscript>
<title>aduhub</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.92em;vertical-align:top}
th{background:#f3f3f3;white-space:nowrap}
.id,time,.nowrap{white-space:nowrap}
.id{font-family:ui-monospace,monospace;font-size:.9em}
td.props{min-width:14em;max-width:30em;overflow-wrap:break-word}
.ok{color:#18794e}.bad{color:#c62828}.run{color:#1565c0}.off{color:#888}
.note{color:#666;font-size:.9em}
code{font-size:.9em}
h3 button,td button{margin-left:.6em;font-size:.8em}
form{margin:.5em 0 1.5em}
#msg{padding:.4em .6em;border:1px solid currentColor;display:inline-block;margin:0 0 1em}
</style></head><body>
<h1>aduhub</h1>
<p>IoT Hub (MQTT) <code>{{.Info.MQTT}}</code>{{if .Info.TLS}} over TLS (CA <code>{{.Info.CAFile}}</code>){{end}},
host name <code>{{.Info.HostName}}</code>; data <code>{{.Info.DataDir}}</code>.
<span class="live" id="updated">Updated <time datetime="{{iso .Now}}">{{when .Now}}</time>.</span></p>
<p id="msg" role="status" hidden></p>

<section class="live" id="devices">
<h2>Devices ({{len .Devices}})</h2>
{{if .Devices}}<table><tr><th>device</th><th>connected</th><th>device properties</th><th>state</th><th>installed update</th><th>deployment</th></tr>
{{range .Devices}}<tr><td class="id">{{.DeviceID}}</td>
<td class="nowrap">{{if .Connected}}<span class="ok">yes</span>{{else}}<span class="off">no</span>{{end}}{{with .Activity}} <span class="run">{{.}}</span>{{end}}{{if not .ConnectionSince.IsZero}}<br><span class="note">since <time datetime="{{iso .ConnectionSince}}">{{when .ConnectionSince}}</time></span>{{end}}</td>
<td class="props">{{props .DeviceProperties}}</td><td class="nowrap">{{state .State}}</td><td class="nowrap">{{installed .InstalledUpdateID}}</td>
<td class="id">{{with .Deployment}}<a href="#dep-{{.}}">{{.}}</a>{{else}}—{{end}}</td></tr>
{{end}}</table>{{else}}<p>None yet: <code>aduhub device add ID</code>.</p>{{end}}
</section>

<section class="live" id="updates">
<h2>Updates ({{len .Updates}})</h2>
{{if .Updates}}<table><tr><th>update</th><th>deployable</th><th>compatibility</th><th>files</th><th>imported</th></tr>
{{range .Updates}}<tr><td class="nowrap">{{update .UpdateID}}</td><td>{{if .Deployable}}yes{{else}}no{{end}}</td>
<td class="props">{{range $i, $c := .Compatibility}}{{if $i}}; {{end}}{{props $c}}{{end}}</td>
<td>{{range $i, $f := .Files}}{{if $i}}, {{end}}{{$f.FileName}} ({{$f.SizeInBytes}} B){{end}}</td><td><time datetime="{{iso .ImportedAt}}">{{when .ImportedAt}}</time></td></tr>
{{end}}</table>{{else}}<p>None yet: <code>aduhub import --manifest M.importmanifest.json FILE...</code>.</p>{{end}}
</section>

<h2>Deploy</h2>
<form id="deploy" autocomplete="off"><label>update <select name="update" id="deploy-update" required>
{{range .Updates}}{{if .Deployable}}<option value="{{json .UpdateID}}">{{update .UpdateID}}</option>{{end}}{{end}}</select></label>
<label>to devices with <input name="group" size="28" placeholder="ring=canary,hwrev=2 (empty: all)"></label>
<button type="submit">Deploy</button></form>

<section class="live" id="deployments">
<h2>Deployments ({{len .Deployments}})</h2>
{{range .Deployments}}<h3 id="dep-{{.ID}}"><span class="id">{{.ID}}</span> {{update .UpdateID}}{{if .Cancelled}} <span class="off">(cancelled)</span>{{else}}
<button type="button" data-action="cancel" data-deployment="{{.ID}}">Cancel</button>{{if .Counts.Failed}}
<button type="button" data-action="retry" data-deployment="{{.ID}}">Retry failed devices</button>{{end}}{{end}}</h3>
<p>group {{group .Group}}; created <time datetime="{{iso .CreatedAt}}">{{when .CreatedAt}}</time>{{if .RetryTimestamp}}; retried {{retried .RetryTimestamp}}{{end}}{{if .Cancelled}}; cancelled <time datetime="{{iso .CancelledAt}}">{{when .CancelledAt}}</time>{{end}}.
<span class="ok">{{.Counts.Succeeded}} succeeded</span>, <span class="bad">{{.Counts.Failed}} failed</span>,
<span class="run">{{.Counts.InProgress}} in progress</span>, <span class="off">{{.Counts.Cancelled}} cancelled</span>.</p>
<table><tr><th>device</th><th>result</th><th>agent state</th><th>result code</th><th>extended result codes</th><th>details</th><th>installed update</th><th>updated</th></tr>
{{range .Results}}<tr><td class="id">{{.DeviceID}}</td>
<td class="nowrap {{if eq .State "Succeeded"}}ok{{else if eq .State "Failed"}}bad{{else if eq .State "InProgress"}}run{{else}}off{{end}}">{{result .}}</td>
<td>{{state .AgentState}}</td><td>{{.ResultCode}}</td><td class="id">{{dash .ExtendedResultCodes}}</td><td>{{dash .ResultDetails}}</td><td class="nowrap">{{installed .InstalledUpdateID}}</td>
<td><time datetime="{{iso .UpdatedAt}}">{{when .UpdatedAt}}</time></td></tr>
{{end}}</table>
{{else}}<p>None yet: deploy an update above, or <code>aduhub deploy --update provider/name/version</code>.</p>{{end}}
</section>
<script>` + pageScript + `</script>
</body></html>
`))

// pageScript refreshes the live parts and posts the page's actions to the API. Actions use
// the browser's session (credentials: same-origin) and show the API's {"error": …}. Nothing
// is refreshed while an action runs, a mouse button is down or a cancel waits for its
// confirmation, and the deploy form keeps what is being typed.
const pageScript = `
'use strict';
(function () {
  const msg = document.getElementById('msg');
  let busy = 0;
  function say(text, ok) {
    msg.textContent = text;
    msg.className = ok ? 'ok' : 'bad';
    msg.hidden = false;
  }
  async function refresh() {
    if (busy > 0) return;
    let doc;
    try {
      const r = await fetch(location.pathname, {credentials: 'same-origin', cache: 'no-store'});
      if (!r.ok) throw new Error('HTTP ' + r.status);
      doc = new DOMParser().parseFromString(await r.text(), 'text/html');
    } catch (e) {
      say('refreshing the page failed: ' + e.message, false);
      return;
    }
    if (busy > 0) return;
    for (const el of document.querySelectorAll('.live[id]')) {
      const fresh = doc.getElementById(el.id);
      if (fresh) el.replaceWith(fresh);
    }
    const sel = document.getElementById('deploy-update'), fresh = doc.getElementById('deploy-update');
    if (fresh && document.activeElement !== sel) {
      const v = sel.value;
      sel.innerHTML = fresh.innerHTML;
      if ([...sel.options].some(o => o.value === v)) sel.value = v;
    }
  }
  async function post(url, body) {
    const r = await fetch(url, {method: 'POST', credentials: 'same-origin',
      headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
    let j = null;
    try { j = await r.json(); } catch (e) {}
    if (!r.ok) throw new Error(j && j.error ? j.error : 'HTTP ' + r.status + ' ' + r.statusText);
    return j;
  }
  async function act(btn, url, body, done) {
    busy++;
    btn.disabled = true;
    try {
      say(done(await post(url, body)), true);
    } catch (e) {
      say(e.message, false);
    } finally {
      btn.disabled = false;
      busy--;
      refresh();
    }
  }
  function counts(c) {
    return c.succeeded + ' succeeded, ' + c.failed + ' failed, ' + c.inProgress + ' in progress, ' + c.cancelled + ' cancelled';
  }
  function parseGroup(s) {
    s = s.trim();
    if (s === '') return null;
    const g = {};
    for (const kv of s.split(',')) {
      const i = kv.indexOf('=');
      const k = i < 0 ? '' : kv.slice(0, i).trim();
      if (k === '') throw new Error('group: ' + JSON.stringify(kv) + ': want k=v[,k=v...]');
      if (k in g) throw new Error('group: ' + k + ' given twice');
      g[k] = kv.slice(i + 1).trim();
    }
    return g;
  }
  function disarm(b) {
    if (b.dataset.armed !== '1') return;
    b.dataset.armed = '';
    b.textContent = 'Cancel';
    busy--;
  }
  // No refresh between a button's press and its release: the click would land on nothing.
  let pressed = false;
  const release = () => { if (pressed) { pressed = false; busy--; } };
  document.addEventListener('mousedown', () => { if (!pressed) { pressed = true; busy++; } }, true);
  window.addEventListener('mouseup', release, true);
  window.addEventListener('blur', release);
  document.addEventListener('click', ev => {
    const b = ev.target.closest('button[data-action]');
    if (!b || b.disabled) return;
    const id = b.dataset.deployment, base = '/api/deployments/' + encodeURIComponent(id);
    if (b.dataset.action === 'cancel') {
      if (b.dataset.armed !== '1') {
        b.dataset.armed = '1';
        b.textContent = 'Cancel deployment ' + id + '? Click again';
        busy++;
        setTimeout(() => disarm(b), 5000);
        return;
      }
      disarm(b);
      act(b, base + '/cancel', {}, st => 'deployment ' + st.id + ' cancelled: ' + counts(st.counts));
    } else if (b.dataset.action === 'retry') {
      act(b, base + '/retry', {}, r => 'deployment ' + id + ': retrying ' + r.retried.length + ' device(s): ' + r.retried.join(', '));
    }
  });
  document.getElementById('deploy').addEventListener('submit', ev => {
    ev.preventDefault();
    const f = ev.target;
    let group;
    try {
      group = parseGroup(f.group.value);
    } catch (e) {
      say(e.message, false);
      return;
    }
    if (!f.update.value) {
      say('no deployable update: import one first', false);
      return;
    }
    act(f.querySelector('button'), '/api/deployments', {updateId: JSON.parse(f.update.value), group: group}, r => {
      const d = r.deployment;
      return 'deployment ' + d.id + ': ' + d.updateId.provider + '/' + d.updateId.name + '/' + d.updateId.version +
        ' to ' + d.devices.length + ' device(s): ' + d.devices.join(', ') + (r.warning ? ' (warning: ' + r.warning + ')' : '');
    });
  });
  setInterval(refresh, 2000);
})();
`

type pageData struct {
	Info        serveInfo
	Now         time.Time
	Devices     []deviceInfo
	Updates     []hub.Update
	Deployments []hub.DeploymentStatus // newest first
}

func (s *server) page(w http.ResponseWriter, r *http.Request) {
	deps := s.svc.Deployments()
	for i, j := 0, len(deps)-1; i < j; i, j = i+1, j-1 {
		deps[i], deps[j] = deps[j], deps[i]
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, pageData{Info: s.info, Now: time.Now(), Devices: s.devices(), Updates: s.svc.Updates(), Deployments: deps}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// groupText is k=v,k=v (sorted), or "all devices".
func groupText(g map[string]string) string {
	if len(g) == 0 {
		return "all devices"
	}
	return strings.Join(keyValues(g), ",")
}

// keyValues is m as k=v texts, sorted by key.
func keyValues(m map[string]string) []string {
	keys := slices.Sorted(maps.Keys(m))
	kv := make([]string, len(keys))
	for i, k := range keys {
		kv[i] = k + "=" + m[k]
	}
	return kv
}

// timeText is a time as the page and the commands show it: local, to the second, with the
// zone ("—" for none).
func timeText(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}

// resultText is a device's result in a deployment with what else happened to it, in the
// words of the page and of aduhub status.
func resultText(r hub.DeviceStatus) string {
	s := string(r.State)
	if r.SupersededBy != "" {
		s += " (superseded by " + r.SupersededBy + ")"
	}
	if r.Removed {
		s += " (device removed)"
	}
	return s
}

// deploymentsByID indexes deployments by id.
func deploymentsByID(deps []hub.DeploymentStatus) map[string]*hub.DeploymentStatus {
	m := make(map[string]*hub.DeploymentStatus, len(deps))
	for i := range deps {
		m[deps[i].ID] = &deps[i]
	}
	return m
}

// activity is what a device is doing as far as the hub can tell, from its connection and its
// result in the deployment it follows (dep, nil if none): after its state 6, "installing U"
// while connected; "rebooting into U" once it left with its DISCONNECT, since an agent
// disconnects before it reboots (docs/agent.md) — "rebooting into bank B (U)" when its last
// aduflashBanks report names the pending bank; "connection lost while installing U" when it
// left otherwise.
func activity(d deviceInfo, dep *hub.DeploymentStatus) string {
	if dep == nil || dep.Cancelled {
		return ""
	}
	i := sort.SearchStrings(dep.Devices, d.DeviceID)
	if i == len(dep.Results) || dep.Results[i].DeviceID != d.DeviceID {
		return ""
	}
	if r := dep.Results[i]; r.State != hub.DeviceInProgress || !r.Started {
		return ""
	}
	u := updateIDText(dep.UpdateID)
	switch {
	case d.Connected:
		return "installing " + u
	case d.LeftCleanly && d.Banks != nil && d.Banks.Pending != "":
		return "rebooting into bank " + d.Banks.Pending + " (" + u + ")"
	case d.LeftCleanly:
		return "rebooting into " + u
	}
	return "connection lost while installing " + u
}
