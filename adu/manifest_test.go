package adu

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRealManifest(t *testing.T) {
	m, err := ParseManifest(readTestdata(t, "manifest_v4.json"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 4 || m.ManifestVersion != "4" || m.UpdateID != (UpdateID{"ESPRESSIF", "ESP32-Azure-IoT-Kit", "1.1"}) ||
		m.CreatedDateTime != "2022-06-03T00:20:33.8421122Z" || m.IsDetached() {
		t.Errorf("%+v", m)
	}
	if len(m.Compatibility) != 1 || m.Compatibility[0]["deviceModel"] != "ESP32-Azure-IoT-Kit" {
		t.Errorf("compatibility %v", m.Compatibility)
	}
	if len(m.Steps) != 1 || m.Steps[0].Type != StepInline || m.Steps[0].Handler != "microsoft/swupdate:1" ||
		string(m.Steps[0].HandlerProperties) != `{"installedCriteria":"1.0"}` || m.Steps[0].Files[0] != "fc3558477982e3235" {
		t.Errorf("steps %+v", m.Steps)
	}
	f := m.Files["fc3558477982e3235"]
	alg, d, ok := StrongestHash(f.Hashes)
	if f.FileName != "azure_iot_freertos_esp32.bin" || f.SizeInBytes != 866128 || !ok || alg != "sha256" || len(d) != 32 || d[0] != 0x7b {
		t.Errorf("file %+v", f)
	}
	if got := m.UpdateID.InstalledUpdateID(); got != `{"provider":"ESPRESSIF","name":"ESP32-Azure-IoT-Kit","version":"1.1"}` {
		t.Errorf("installedUpdateId %s", got)
	}
}

const v5Example = `{"manifestVersion":"5.0","updateId":{"provider":"Contoso","name":"Virtual-Vacuum","version":"20.0"},
"compatibility":[{"deviceManufacturer":"contoso","deviceModel":"virtual-vacuum-v1"}],
"instructions":{"steps":[
 {"handler":"microsoft/swupdate:2","files":["f483750ebb885d32c"],"handlerProperties":{"InstalledCriteria": "20.0", "x":[1, {"y":null}]},"futureMember":1},
 {"type":"reference","detachedManifestFileId":"f222222222222222b"}]},
"files":{"f483750ebb885d32c":{"fileName":"full.swu","sizeInBytes":123,"hashes":{"sha256":"exKJAqfEo69Ok6C6SWy9+Hhp051JbRsXsnMjGSbbJ6o="},
  "relatedFiles":{"f111111111111111a":{"fileName":"delta.diff","sizeInBytes":"45","hashes":{"SHA256":"exKJAqfEo69Ok6C6SWy9-Hhp051JbRsXsnMjGSbbJ6o"},
    "properties":{"microsoft.sourceFileHashAlgorithm":"sha256","microsoft.sourceFileHash":"YmFzZQ=="}}},
  "downloadHandler":{"id":"microsoft/delta:1"}},
 "f222222222222222b":{"fileName":"child.importmanifest.json","sizeInBytes":601,"hashes":{"sha256":"exKJAqfEo69Ok6C6SWy9+Hhp051JbRsXsnMjGSbbJ6o="}}},
"createdDateTime":"2022-01-27T13:45:05.8993329Z"}`

func TestParseV5(t *testing.T) {
	m, err := ParseManifest([]byte(v5Example))
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 5 || len(m.Steps) != 2 || m.Steps[1].Type != StepReference || m.Steps[1].DetachedManifestFileID != "f222222222222222b" {
		t.Fatalf("%+v", m)
	}
	if string(m.Steps[0].HandlerProperties) != `{"InstalledCriteria": "20.0", "x":[1, {"y":null}]}` {
		t.Errorf("handlerProperties not passed through: %s", m.Steps[0].HandlerProperties)
	}
	f := m.Files["f483750ebb885d32c"]
	r, ok := f.RelatedFiles["f111111111111111a"]
	if f.DownloadHandler != "microsoft/delta:1" || !ok || r.FileName != "delta.diff" || r.SizeInBytes != 45 ||
		r.Properties["microsoft.sourceFileHash"] != "YmFzZQ==" || len(r.Hashes["SHA256"]) != 32 {
		t.Errorf("%+v", f)
	}
}

func TestParseDetachedManifest(t *testing.T) {
	mini := `{"manifestVersion":"4","updateId":{"provider":"Contoso","name":"Toaster","version":"1.0"},"detachedManifestFileId":"fileId1",
"files":{"fileId1":{"fileName":"contoso.toaster.1.0.updatemanifest.json","sizeInBytes":2048,"hashes":{"sha256":"exKJAqfEo69Ok6C6SWy9+Hhp051JbRsXsnMjGSbbJ6o="}}}}`
	m, err := ParseManifest([]byte(mini))
	if err != nil || !m.IsDetached() || m.DetachedManifestFileID != "fileId1" || len(m.Steps) != 0 {
		t.Fatalf("%+v %v", m, err)
	}
	inner, err := ParseDetachedManifestFile([]byte(`{"updateManifest":` + jsonQuote(v5Example) + `,"other":1}`))
	if err != nil || string(inner) != v5Example {
		t.Fatalf("detached file: %v", err)
	}
}

func jsonQuote(s string) string { b, _ := marshalCompact(s); return string(b) }

func TestParseManifestErrors(t *testing.T) {
	good := string(readTestdata(t, "manifest_v4.json"))
	for _, tc := range []struct{ in, path string }{
		{`[]`, "want an object"},
		{strings.Replace(good, `"manifestVersion":"4"`, `"manifestVersion":"3"`, 1), "unsupported manifest version"},
		{strings.Replace(good, `"manifestVersion":"4"`, `"manifestVersion":"6.0"`, 1), "unsupported manifest version"},
		{strings.Replace(good, `"manifestVersion":"4"`, `"manifestVersion":"4.5"`, 1), "unsupported manifest version"},
		{strings.Replace(good, `"manifestVersion":"4"`, `"manifestVersion":true`, 1), "manifestVersion: want a string"},
		{strings.Replace(good, `"manifestVersion":"4",`, ``, 1), "manifestVersion: missing"},
		{strings.Replace(good, `"provider":"ESPRESSIF"`, `"provider":1`, 1), "updateId.provider: want a string"},
		{strings.Replace(good, `"sizeInBytes":866128`, `"sizeInBytes":-1`, 1), "files.fc3558477982e3235.sizeInBytes: -1 out of range"},
		{strings.Replace(good, `"sizeInBytes":866128`, `"sizeInBytes":1e400`, 1), "sizeInBytes"},
		{strings.Replace(good, `"sizeInBytes":866128`, `"sizeInBytes":99999999999999999999999`, 1), "sizeInBytes"},
		{strings.Replace(good, `"sha256":"exKJ`, `"sha256":"!xKJ`, 1), "hashes.sha256: not base64"},
		{strings.Replace(good, `"sha256":"exKJAqfEo69Ok6C6SWy9+Hhp051JbRsXsnMjGSbbJ6o="`, `"sha1":"AAAAAAAAAAAAAAAAAAAAAAAAAAA="`, 1), "no sha256"},
		{strings.Replace(good, `"files":["fc3558477982e3235"]`, `"files":["nope"]`, 1), `instructions.steps[0].files[0]: file id "nope" is not in files`},
		{strings.Replace(good, `"handler":"microsoft/swupdate:1",`, ``, 1), "instructions.steps[0].handler: missing"},
		{strings.Replace(good, `"steps":[`, `"steps":[{"type":"reference","detachedManifestFileId":"x"},`, 1), "instructions.steps[0].detachedManifestFileId"},
		{strings.Replace(good, `"handlerProperties":{"installedCriteria":"1.0"}`, `"handlerProperties":"x"`, 1), "instructions.steps[0].handlerProperties: want an object"},
		{strings.Replace(good, `"deviceModel":"ESP32-Azure-IoT-Kit"`, `"deviceModel":5`, 1), "compatibility[0].deviceModel: want a string"},
	} {
		_, err := ParseManifest([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("want error containing %q, got %v", tc.path, err)
		}
	}
	if _, err := ParseManifest([]byte(strings.Replace(good, `"4"`, `"5.0"`, 1))); err != nil {
		t.Errorf("5.0: %v", err)
	}
	_, err := ParseManifest([]byte(strings.Replace(good, `"manifestVersion":"4"`, `"manifestVersion":"2"`, 1)))
	if !errors.Is(err, ErrUnsupportedManifestVersion) {
		t.Errorf("not ErrUnsupportedManifestVersion: %v", err)
	}
	_, err = ParseManifest([]byte(strings.Replace(good, `"provider":"ESPRESSIF"`, `"provider":1`, 1)))
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("not ErrMalformed: %v", err)
	}
}

func TestInstalledUpdateID(t *testing.T) {
	u := UpdateID{Provider: "Contoso", Name: "Virtual-Vacuum", Version: "20.0"}
	if got := u.InstalledUpdateID(); got != `{"provider":"Contoso","name":"Virtual-Vacuum","version":"20.0"}` {
		t.Errorf("%s", got)
	}
	if got := (UpdateID{"a<b>&", `q"`, "1"}).InstalledUpdateID(); got != `{"provider":"a<b>&","name":"q\"","version":"1"}` {
		t.Errorf("escaping: %s", got)
	}
	back, err := ParseInstalledUpdateID(`{"version":"20.0","name":"Virtual-Vacuum","provider":"Contoso"}`)
	if err != nil || back != u {
		t.Errorf("%+v %v", back, err)
	}
}
