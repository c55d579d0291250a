package app

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/dps"
	"github.com/aduflash/aduflash/iothub"
)

// TestEnrollmentOnline: an enrollment group added with the CLI lets a device register with
// its derived key over the server's TLS MQTT port; the device is then registered; list
// shows the group without its key; after remove the device can no longer register.
func TestEnrollmentOnline(t *testing.T) {
	s := startServe(t, filepath.Join(t.TempDir(), "hub"))
	var added enrollmentInfo
	s.mustCLI(t, &added, "enrollment", "add", "--json", "--group", "toasters")
	if !added.Group || added.Key == "" || added.IDScope == "" {
		t.Fatalf("added %+v", added)
	}
	pool, err := iothub.LoadCAFile(s.info.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := dps.DeriveKey(added.Key, "toaster-1")
	cfg := dps.Config{IDScope: added.IDScope, RegistrationID: "toaster-1", SymmetricKey: key,
		Endpoint: s.info.MQTT, TLSConfig: &tls.Config{RootCAs: pool}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := dps.Register(ctx, cfg)
	if err != nil || a.DeviceID != "toaster-1" {
		t.Fatalf("register: %+v, %v", a, err)
	}
	if d := listDevices(t, s); !slices.Contains(d, "toaster-1") {
		t.Errorf("devices %v lack the registered toaster-1", d)
	}
	out := s.mustCLI(t, nil, "enrollment", "list")
	if !strings.Contains(out, "toasters") || !strings.Contains(out, "group") || strings.Contains(out, added.Key) {
		t.Errorf("list:\n%s", out)
	}
	if out := s.mustCLI(t, nil, "enrollment", "remove", "toasters"); out != "removed enrollment toasters\n" {
		t.Errorf("remove: %q", out)
	}
	cfg.RegistrationID, cfg.SymmetricKey = "toaster-2", mustDerive(t, added.Key, "toaster-2")
	if _, err := dps.Register(ctx, cfg); err == nil {
		t.Error("registered after the enrollment was removed")
	}
	if code, _, _ := runHub(t, "enrollment", "remove", "--data", s.dir, "toasters"); code != 1 {
		t.Errorf("removing a missing enrollment: exit %d, want 1", code)
	}
}

// TestEnrollmentOffline: with --data and no server the enrollments are kept in the folder.
func TestEnrollmentOffline(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hub")
	if code, out, e := runHub(t, "enrollment", "add", "--data", dir, "dev-9"); code != 0 || !strings.Contains(out, "added individual enrollment dev-9") {
		t.Fatalf("exit %d %q %q", code, out, e)
	}
	if code, out, _ := runHub(t, "enrollment", "list", "--data", dir); code != 0 || !strings.Contains(out, "dev-9") {
		t.Errorf("list: exit %d %q", code, out)
	}
	if code, _, _ := runHub(t, "enrollment", "add", "--data", dir, "bad/id"); code != 1 {
		t.Errorf("a bad id: exit %d, want 1", code)
	}
}

func mustDerive(t *testing.T, group, id string) string {
	t.Helper()
	k, err := dps.DeriveKey(group, id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
