package adu

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseDesiredCancel(t *testing.T) {
	for _, doc := range []string{
		"{\"deviceUpdate\":{\"service\":{\"workflow\":{\"action\":255,\t\"id\":\"nodeployment\"}},\"__t\":\"c\"},\"$version\":6}",
		`{"deviceUpdate":{"service":{"workflow":{"action":255,"id":"nodeployment"},"updateManifest":null,"updateManifestSignature":null,"fileUrls":null},"__t":"c"},"$version":6}`,
		`{"desired":{"deviceUpdate":{"__t":"c","service":{"workflow":{"action":255.0,"id":"nodeployment"}}},"$version":6,"$metadata":{"x":1}},"reported":{"deviceUpdate":{"agent":{"state":0}}}}`,
		`{"properties":{"desired":{"deviceUpdate":{"service":{"workflow":{"action":2.55e2,"id":"nodeployment"},"unknown":[1,2]}},"$version":6}}}`,
	} {
		d, err := ParseDesired([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		s := d.Service
		if !d.HasVersion || d.Version != 6 || s == nil || !s.IsCancel() || s.Workflow.ID != NoDeployment ||
			s.UpdateManifest != "" || s.UpdateManifestSignature != "" || s.FileURLs != nil {
			t.Errorf("%s: %+v %+v", doc, d, s)
		}
	}
}

func TestParseDesiredDeployment(t *testing.T) {
	m, jws := realCapture(t)
	svc := map[string]any{
		"workflow":                map[string]any{"action": 3, "id": "6409ddb9d8ce39ade510df4a-202428102525", "retryTimestamp": "2024-01-01T00:00:00Z"},
		"updateManifest":          string(m),
		"updateManifestSignature": jws,
		"fileUrls":                map[string]any{"fc3558477982e3235": "http://x.b.nlu.dl.adu.microsoft.com/a/b", "gone": nil},
		"rootKeyPackageUrl":       "http://x/rootkeypackage-2.json",
		"future":                  map[string]any{"n": 1e300},
	}
	b, _ := json.Marshal(map[string]any{"deviceUpdate": map[string]any{"service": svc, "__t": "c"}, "$version": 42})
	d, err := ParseDesired(b)
	if err != nil {
		t.Fatal(err)
	}
	s := d.Service
	if d.Version != 42 || s.Workflow.Action != ActionProcessDeployment || s.Workflow.RetryTimestamp == "" || s.IsCancel() ||
		len(s.FileURLs) != 1 || s.RootKeyPackageURL == "" {
		t.Fatalf("%+v %+v", d, s)
	}
	// json.Marshal escaped <>& and the manifest went through a string: the bytes still verify.
	if s.UpdateManifest != string(m) {
		t.Fatal("manifest string changed")
	}
	if _, _, err := VerifyManifest([]byte(s.UpdateManifest), s.UpdateManifestSignature, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	// Another component's patch: no service.
	d, err = ParseDesired([]byte(`{"other":{"x":1},"$version":3}`))
	if err != nil || d.Service != nil || d.Version != 3 {
		t.Errorf("%+v %v", d, err)
	}
}

func TestParseDesiredErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`[]`, "want an object"},
		{`{"deviceUpdate":{"service":{"workflow":{"action":"3"}}}}`, "deviceUpdate.service.workflow.action: want a number, got a string"},
		{`{"deviceUpdate":{"service":{"workflow":{"action":3.5}}}}`, "deviceUpdate.service.workflow.action: 3.5 is not a whole number"},
		{`{"deviceUpdate":{"service":{"workflow":{"action":1e400}}}}`, "deviceUpdate.service.workflow.action"},
		{`{"deviceUpdate":{"service":{"workflow":{"action":99999999999999999999}}}}`, "deviceUpdate.service.workflow.action"},
		{`{"deviceUpdate":{"service":{"workflow":{"id":"x"}}}}`, "deviceUpdate.service.workflow.action: missing"},
		{`{"deviceUpdate":{"service":{"workflow":{"action":3,"id":7}}}}`, "deviceUpdate.service.workflow.id: want a string, got a number"},
		{`{"deviceUpdate":{"service":{"updateManifest":{"manifestVersion":"4"}}}}`, "deviceUpdate.service.updateManifest: want a string holding the manifest JSON, got an object"},
		{`{"deviceUpdate":{"service":{"fileUrls":{"a":1}}}}`, "deviceUpdate.service.fileUrls.a: want a string"},
		{`{"deviceUpdate":{"service":{"fileUrls":[]}}}`, "deviceUpdate.service.fileUrls: want an object"},
		{`{"deviceUpdate":{"service":"x"}}`, "deviceUpdate.service: want an object"},
		{`{"deviceUpdate":7}`, "deviceUpdate: want an object"},
		{`{"desired":{"$version":-1}}`, "desired.$version: -1 out of range"},
		{`{"$version":1e999}`, "$version"},
		{`{"deviceUpdate":{"service":{"workflow":{"action":3}}}`, "unexpected end"},
	} {
		_, err := ParseDesired([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want %q", tc.doc, err, tc.want)
		}
	}
	// Huge but valid values.
	big := `{"deviceUpdate":{"service":{"workflow":{"action":3,"id":"` + strings.Repeat("x", 1<<20) + `"}}},"$version":9223372036854775807}`
	d, err := ParseDesired([]byte(big))
	if err != nil || len(d.Service.Workflow.ID) != 1<<20 || d.Version != 1<<63-1 {
		t.Errorf("huge: %v", err)
	}
	s, err := ParseServiceProperties([]byte(`{"workflow":{"action":3e0,"id":"w"}}`))
	if err != nil || s.Workflow.Action != 3 {
		t.Errorf("%+v %v", s, err)
	}
}

func TestAckPatch(t *testing.T) {
	got, err := Ack{Code: AckAccepted, Version: 1}.Patch()
	if err != nil || string(got) != `{"deviceUpdate":{"__t":"c","service":{"ac":200,"av":1,"value":{}}}}` {
		t.Errorf("%s %v", got, err)
	}
	got, _ = Ack{Code: AckRejected, Version: 7, Description: "bad signature", Value: json.RawMessage(` {"a": 1} `)}.Patch()
	if string(got) != `{"deviceUpdate":{"__t":"c","service":{"ac":406,"av":7,"ad":"bad signature","value":{"a":1}}}}` {
		t.Errorf("%s", got)
	}
	if _, err := (Ack{Value: json.RawMessage(`{`)}).Patch(); err == nil {
		t.Error("invalid value accepted")
	}
}

func state(s State) *State { return &s }

func TestAgentPatch(t *testing.T) {
	// NetX Duo success capture (interface ;1), byte for byte.
	a := &AgentProperties{
		State:             state(StateIdle),
		Workflow:          &Workflow{Action: ActionProcessDeployment, ID: "6b83…"},
		InstalledUpdateID: UpdateID{"Contoso", "IoTDevice", "7.0.1"}.InstalledUpdateID(),
		LastInstallResult: &InstallResult{ResultCode: ResultApplySuccess, StepResults: []InstallResult{{ResultCode: 700}, {ResultCode: 700}}},
	}
	got, err := a.Patch(ModelContractV2)
	want := `{"deviceUpdate":{"__t":"c","agent":{"state":0,"workflow":{"action":3,"id":"6b83…"},"installedUpdateId":"{\"provider\":\"Contoso\",\"name\":\"IoTDevice\",\"version\":\"7.0.1\"}","lastInstallResult":{"resultCode":700,"extendedResultCode":0,"resultDetails":"","stepResults":{"step_0":{"resultCode":700,"extendedResultCode":0,"resultDetails":""},"step_1":{"resultCode":700,"extendedResultCode":0,"resultDetails":""}}}}}}`
	if err != nil || string(got) != want {
		t.Errorf("got  %s\nwant %s (%v)", got, want, err)
	}
	// Embedded startup capture, byte for byte.
	a = &AgentProperties{
		DeviceProperties:    []DeviceProperty{{"manufacturer", "Contoso"}, {"model", "Foobar"}, {"contractModelId", ModelContractV2}, {"aduVer", "DU;agent/1.0.0"}, {"doVer", "…"}},
		CompatPropertyNames: "manufacturer,model", State: state(StateIdle),
		InstalledUpdateID: UpdateID{"Contoso", "Foobar", "1.0"}.InstalledUpdateID(),
	}
	got, _ = a.Patch(InterfaceV1)
	want = `{"deviceUpdate":{"__t":"c","agent":{"deviceProperties":{"manufacturer":"Contoso","model":"Foobar","contractModelId":"dtmi:azure:iot:deviceUpdateContractModel;2","aduVer":"DU;agent/1.0.0","doVer":"…"},"compatPropertyNames":"manufacturer,model","state":0,"installedUpdateId":"{\"provider\":\"Contoso\",\"name\":\"Foobar\",\"version\":\"1.0\"}"}}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// Interface ;2: the string form (Linux 1.1.0 failure capture's codes) and null stepResults.
	r := &InstallResult{ResultCode: ResultFailure, ExtendedResultCodes: []ExtendedResultCode{0x30501028, ERCRootKeyPackageUnchanged}, ResultDetails: "InstallUpdate: installation failed.",
		StepResults: []InstallResult{{ResultCode: 0, ExtendedResultCodes: []ExtendedResultCode{0x30501028}, ResultDetails: "InstallUpdate: installation failed."}}}
	got, _ = r.JSON(ModelV3)
	want = `{"resultCode":0,"extendedResultCodes":"30501028,A0000FFF","resultDetails":"InstallUpdate: installation failed.","stepResults":{"step_0":{"resultCode":0,"extendedResultCodes":"30501028","resultDetails":"InstallUpdate: installation failed."}}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	got, _ = (&InstallResult{ResultCode: ResultSuccess, NullStepResults: true}).JSON(InterfaceV2)
	if string(got) != `{"resultCode":1,"extendedResultCodes":"00000000","resultDetails":"","stepResults":null}` {
		t.Errorf("%s", got)
	}
	got, _ = (&InstallResult{ResultCode: ResultFailure, ExtendedResultCodes: []ExtendedResultCode{ERCManifestValidationFailed}}).JSON(InterfaceV1)
	if string(got) != `{"resultCode":0,"extendedResultCode":-2144337919,"resultDetails":""}` {
		t.Errorf("%s", got)
	}
	if _, err := a.Patch("dtmi:other;1"); err == nil {
		t.Error("unknown model accepted")
	}
}

func TestExtendedResultCodes(t *testing.T) {
	c := NewExtendedResultCode(FacilityUpdateContentHandler, 5, 0x01028)
	if c != 0x30501028 || c.Facility() != 3 || c.Component() != 5 || c.Value() != 0x1028 || c.String() != "30501028" {
		t.Errorf("%v", c)
	}
	if ERCJWSMissingRootKid.Facility() != FacilityInfraMgmt || ERCJWSMissingRootKid.Component() != 2 {
		t.Error("JWS facility")
	}
	codes, err := ParseExtendedResultCodes("30501028, a0000fff,0x80300001")
	if err != nil || FormatExtendedResultCodes(codes) != "30501028,A0000FFF,80300001" {
		t.Errorf("%v %v", codes, err)
	}
	if _, err := ParseExtendedResultCodes("xyz"); err == nil {
		t.Error("bad code accepted")
	}
	if !ResultApplySuccess.Succeeded() || ResultFailureCancelled.Succeeded() {
		t.Error("Succeeded")
	}
}
