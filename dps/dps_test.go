package dps

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/iothub"
)

const groupKey = "6CLK6It9jOiABpFVu11CQDv9O49ebAneK3KbsvaoU1o="

// TestDeriveKey checks the group key derivation against a value computed independently
// (Python's hmac module: base64(HMAC-SHA256(b64decode(groupKey), "toaster-0001"))).
func TestDeriveKey(t *testing.T) {
	got, err := DeriveKey(groupKey, "toaster-0001")
	if err != nil {
		t.Fatal(err)
	}
	if want := "GKbGBj3e1kJLi7AgqWnzUXbqpdpUpPBmlw/juhTl7hY="; got != want {
		t.Errorf("DeriveKey = %s, want %s", got, want)
	}
	if _, err := DeriveKey("not base64!", "x"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad group key: %v, want ErrInvalidConfig", err)
	}
}

func TestCredentials(t *testing.T) {
	if got, want := Username("0ne00000A0A", "dev-1"), "0ne00000A0A/registrations/dev-1/api-version=2019-03-31"; got != want {
		t.Errorf("Username = %q, want %q", got, want)
	}
	tok, err := SASToken(groupKey, "0ne00000A0A", "dev-1", time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	st, err := iothub.ParseSASToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if st.ResourceURI != "0ne00000A0A%2Fregistrations%2Fdev-1" || st.KeyName != "registration" || st.Expiry != 1700000000 {
		t.Errorf("token %q: sr %q skn %q se %d", tok, st.ResourceURI, st.KeyName, st.Expiry)
	}
	if err := st.Verify(groupKey, ResourceURI("0ne00000A0A", "dev-1"), time.Unix(1600000000, 0)); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestParseReply(t *testing.T) {
	assigned := `{"operationId":"4.abc","status":"assigned","registrationState":{"registrationId":"dev-1","assignedHub":"contoso.azure-devices.net","deviceId":"dev-1","status":"assigned","substatus":"initialAssignment"}}`
	r, err := ParseReply("$dps/registrations/res/200/?$rid=7", []byte(assigned))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || r.RequestID != "7" || r.OperationStatus != StatusAssigned || r.State.AssignedHub != "contoso.azure-devices.net" || r.State.DeviceID != "dev-1" {
		t.Errorf("assigned reply: %+v %+v", r, r.State)
	}
	r, err = ParseReply("$dps/registrations/res/202/?$rid=1&retry-after=3", []byte(`{"operationId":"4.abc","status":"assigning"}`))
	if err != nil || r.RetryAfter != 3*time.Second || r.OperationID != "4.abc" {
		t.Errorf("assigning reply: %+v, %v", r, err)
	}
	r, err = ParseReply("$dps/registrations/res/429/?$rid=2&retry-after=99999", nil)
	if err != nil || r.RetryAfter != MaxRetryAfter {
		t.Errorf("throttled reply: %+v, %v (retry-after capped at %v)", r, err, MaxRetryAfter)
	}
	r, err = ParseReply("$dps/registrations/res/401/?$rid=3", []byte(`{"errorCode":401002,"trackingId":"t","message":"unauthorized"}`))
	if err != nil || r.ErrorCode != 401002 || r.Message != "unauthorized" {
		t.Errorf("error reply: %+v, %v", r, err)
	}
	for _, tc := range []struct{ topic, payload, want string }{
		{"$iothub/twin/res/200/?$rid=1", `{}`, "not a reply"},
		{"$dps/registrations/res/2000/?$rid=1", `{}`, "bad status"},
		{"$dps/registrations/res/200?$rid=1", `{}`, "bad status"},
		{"$dps/registrations/res/200/", `{}`, "$rid"},
		{"$dps/registrations/res/202/?$rid=1&retry-after=-1", `{}`, "retry-after"},
		{"$dps/registrations/res/200/?$rid=1", ``, "without a body"},
		{"$dps/registrations/res/202/?$rid=1", `{"status":"assigning"}`, "operationId"},
		{"$dps/registrations/res/202/?$rid=1", `{"operationId":"a&b=c","status":"assigning"}`, "operationId"},
		{"$dps/registrations/res/200/?$rid=1", `{"operationId":"x","status":"assigned"}`, "without a registrationState"},
		{"$dps/registrations/res/200/?$rid=1", `{"operationId":"x","status":"assigned","registrationState":{"assignedHub":"evil.example/x","deviceId":"d"}}`, "assignedHub"},
		{"$dps/registrations/res/200/?$rid=1", `{"operationId":"x","status":"assigned","registrationState":{"assignedHub":"h.example","deviceId":""}}`, "deviceId"},
		{"$dps/registrations/res/200/?$rid=1", `{"operationId":"x","status":"assigned","registrationState":{"assignedHub":"h.example:1@x","deviceId":"d"}}`, "assignedHub"},
		{"$dps/registrations/res/200/?$rid=1", "{" + strings.Repeat(" ", MaxReply) + "}", "at most"},
	} {
		_, err := ParseReply(tc.topic, []byte(tc.payload))
		if !errors.Is(err, ErrMalformedReply) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseReply(%q, %.40q) = %v, want ErrMalformedReply saying %q", tc.topic, tc.payload, err, tc.want)
		}
	}
}

// FuzzParseReply: no reply panics, and an accepted assignment names a hub and a device.
func FuzzParseReply(f *testing.F) {
	f.Add("$dps/registrations/res/202/?$rid=1&retry-after=3", []byte(`{"operationId":"4.abc","status":"assigning"}`))
	f.Add("$dps/registrations/res/200/?$rid=1", []byte(`{"operationId":"4.abc","status":"assigned","registrationState":{"assignedHub":"h.example","deviceId":"d"}}`))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		r, err := ParseReply(topic, payload)
		if err != nil {
			return
		}
		if r.Status < 300 && r.OperationStatus == StatusAssigned && (r.State == nil || r.State.AssignedHub == "" || r.State.DeviceID == "") {
			t.Fatalf("accepted an assignment without hub or device: %+v", r)
		}
	})
}

func TestAssignmentCache(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dps.json")
	if _, ok, err := LoadAssignment(p, "s", "r"); ok || err != nil {
		t.Fatalf("no file: ok %v err %v", ok, err)
	}
	a := Assignment{IDScope: "s", RegistrationID: "r", AssignedHub: "h.example", DeviceID: "r"}
	if err := SaveAssignment(p, a); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := LoadAssignment(p, "s", "r"); !ok || err != nil || got != a {
		t.Errorf("LoadAssignment = %+v %v %v, want %+v", got, ok, err, a)
	}
	if _, ok, err := LoadAssignment(p, "s", "other"); ok || err != nil {
		t.Errorf("another registration id: ok %v err %v, want a miss", ok, err)
	}
	if err := os.WriteFile(p, []byte(`{"idScope":"s","registrationId":"r","assignedHub":"h/x","deviceId":"r"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadAssignment(p, "s", "r"); !errors.Is(err, ErrInvalidCache) {
		t.Errorf("a stored hub that is no host name: %v, want ErrInvalidCache", err)
	}
	if err := RemoveAssignment(p); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAssignment(p); err != nil {
		t.Errorf("removing twice: %v", err)
	}
}
