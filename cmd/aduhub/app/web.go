package app

import (
	"bytes"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/aduflash/aduflash/hub"
)

// The web page at /: server-rendered, refreshed by the browser every 2 s.
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
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(k + "=" + m[k])
		}
		return b.String()
	},
	"group": groupText,
	"when":  func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
	"dash": func(s string) string {
		if s == "" {
			return "—"
		}
		return s
	},
	"agentState": func(st *int) string {
		if n := stateName(st); n != "" {
			return n
		}
		return "—"
	},
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>aduhub</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.92em}
th{background:#f3f3f3}
.ok{color:#18794e}.bad{color:#c62828}.run{color:#1565c0}.off{color:#888}
code{font-size:.9em}
</style></head><body>
<h1>aduhub</h1>
<p>IoT Hub (MQTT) <code>{{.Info.MQTT}}</code>{{if .Info.TLS}} over TLS (CA <code>{{.Info.CAFile}}</code>){{end}},
host name <code>{{.Info.HostName}}</code>; data <code>{{.Info.DataDir}}</code>. Updated {{when .Now}}.</p>

<h2>Devices ({{len .Devices}})</h2>
{{if .Devices}}<table><tr><th>device</th><th>connected</th><th>device properties</th><th>state</th><th>installed update</th><th>deployment</th></tr>
{{range .Devices}}<tr><td>{{.DeviceID}}</td><td>{{if .Connected}}<span class="ok">yes</span>{{else}}<span class="off">no</span>{{end}}</td>
<td>{{props .DeviceProperties}}</td><td>{{state .State}}</td><td>{{installed .InstalledUpdateID}}</td><td>{{dash .Deployment}}</td></tr>
{{end}}</table>{{else}}<p>None yet: <code>aduhub device add ID</code>.</p>{{end}}

<h2>Updates ({{len .Updates}})</h2>
{{if .Updates}}<table><tr><th>update</th><th>deployable</th><th>compatibility</th><th>files</th><th>imported</th></tr>
{{range .Updates}}<tr><td>{{update .UpdateID}}</td><td>{{if .Deployable}}yes{{else}}no{{end}}</td>
<td>{{range $i, $c := .Compatibility}}{{if $i}}; {{end}}{{props $c}}{{end}}</td>
<td>{{range $i, $f := .Files}}{{if $i}}, {{end}}{{$f.FileName}} ({{$f.SizeInBytes}} B){{end}}</td><td>{{when .ImportedAt}}</td></tr>
{{end}}</table>{{else}}<p>None yet: <code>aduhub import --manifest M.importmanifest.json FILE...</code>.</p>{{end}}

<h2>Deployments ({{len .Deployments}})</h2>
{{range .Deployments}}<h3><code>{{.ID}}</code> {{update .UpdateID}}{{if .Cancelled}} <span class="off">(cancelled)</span>{{end}}</h3>
<p>group {{group .Group}}; created {{when .CreatedAt}}{{if .RetryTimestamp}}; retried {{.RetryTimestamp}}{{end}}.
<span class="ok">{{.Counts.Succeeded}} succeeded</span>, <span class="bad">{{.Counts.Failed}} failed</span>,
<span class="run">{{.Counts.InProgress}} in progress</span>, <span class="off">{{.Counts.Cancelled}} cancelled</span>.</p>
<table><tr><th>device</th><th>result</th><th>agent state</th><th>result code</th><th>extended result codes</th><th>details</th><th>installed update</th></tr>
{{range .Results}}<tr><td>{{.DeviceID}}</td>
<td class="{{if eq .State "Succeeded"}}ok{{else if eq .State "Failed"}}bad{{else if eq .State "InProgress"}}run{{else}}off{{end}}">{{.State}}{{if .SupersededBy}} (by {{.SupersededBy}}){{end}}{{if .Removed}} (device removed){{end}}</td>
<td>{{agentState .AgentState}}</td><td>{{.ResultCode}}</td><td>{{dash .ExtendedResultCodes}}</td><td>{{dash .ResultDetails}}</td><td>{{installed .InstalledUpdateID}}</td></tr>
{{end}}</table>
{{else}}<p>None yet: <code>aduhub deploy --update provider/name/version</code>.</p>{{end}}
</body></html>
`))

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
	keys := make([]string, 0, len(g))
	for k := range g {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + g[k]
	}
	return strings.Join(parts, ",")
}
