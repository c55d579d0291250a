package hub

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/aduflash/aduflash/dps"
	"github.com/aduflash/aduflash/iothub"
	"github.com/aduflash/aduflash/iothub/iothubtest"
)

func dpsConfig(h *Hub, regID, key string) dps.Config {
	return dps.Config{IDScope: h.IDScope(), RegistrationID: regID, SymmetricKey: key,
		Endpoint: h.Addr().String(), InsecurePlainTCP: true}
}

func register(t *testing.T, cfg dps.Config) (dps.Assignment, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return dps.Register(ctx, cfg)
}

// TestDPSGroupEnrollment: a device of an enrollment group registers with its derived key,
// is assigned to the hub under its registration id, and then connects as a device with
// that key; the hub registered it.
func TestDPSGroupEnrollment(t *testing.T) {
	h := newHub(t, Options{DataDir: t.TempDir()})
	if err := h.AddEnrollment(Enrollment{ID: "toasters", Group: true, Key: key1}); err != nil {
		t.Fatal(err)
	}
	devKey, err := dps.DeriveKey(key1, "toaster-7")
	if err != nil {
		t.Fatal(err)
	}
	a, err := register(t, dpsConfig(h, "toaster-7", devKey))
	if err != nil {
		t.Fatal(err)
	}
	if a.AssignedHub != testHost || a.DeviceID != "toaster-7" {
		t.Fatalf("assignment %+v, want hub %s, device toaster-7", a, testHost)
	}
	if !slices.Contains(h.Devices(), "toaster-7") {
		t.Fatalf("devices %v: the assignment did not register toaster-7", h.Devices())
	}
	c := iothubtest.Dial(t, cfgFor(h, a.DeviceID, devKey))
	c.Close()

	// The group key itself is not the device's key.
	if _, err := register(t, dpsConfig(h, "toaster-8", key1)); !errors.Is(err, dps.ErrConnect) {
		t.Errorf("registering with the group key itself: %v, want ErrConnect (refused)", err)
	}
	if slices.Contains(h.Devices(), "toaster-8") {
		t.Error("a refused registration registered its device")
	}
}

// TestDPSIndividualEnrollment: an individual enrollment's key registers; after the
// enrollment is removed the same key is refused; the enrollments survive a restart.
func TestDPSIndividualEnrollment(t *testing.T) {
	dir := t.TempDir()
	h := newHub(t, Options{DataDir: dir})
	for _, e := range []Enrollment{{ID: "dev-a", Key: key2}, {ID: "dev-b", Key: key1}} {
		if err := h.AddEnrollment(e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := register(t, dpsConfig(h, "dev-a", key1)); !errors.Is(err, dps.ErrConnect) {
		t.Errorf("dev-a with dev-b's key: %v, want ErrConnect", err)
	}
	if a, err := register(t, dpsConfig(h, "dev-a", key2)); err != nil || a.DeviceID != "dev-a" {
		t.Fatalf("dev-a: %+v, %v", a, err)
	}
	if err := h.RemoveEnrollment("dev-a"); err != nil {
		t.Fatal(err)
	}
	if err := h.RemoveEnrollment("dev-a"); !errors.Is(err, ErrUnknownEnrollment) {
		t.Errorf("removing twice: %v, want ErrUnknownEnrollment", err)
	}
	if _, err := register(t, dpsConfig(h, "dev-a", key2)); !errors.Is(err, dps.ErrConnect) {
		t.Errorf("after removing the enrollment: %v, want ErrConnect", err)
	}
	h2 := newHub(t, Options{DataDir: dir})
	if got := h2.Enrollments(); len(got) != 1 || got[0].ID != "dev-b" {
		t.Errorf("enrollments after a restart: %+v, want dev-b only", got)
	}
}

func TestDPSEnrollmentValidation(t *testing.T) {
	h := newHub(t, Options{})
	for _, e := range []Enrollment{
		{ID: "", Key: key1},
		{ID: "a/b", Key: key1},
		{ID: "a", Key: "not base64!"},
		{ID: "a"},
		{ID: "a", Group: true, Thumbprint: "00"},
	} {
		if err := h.AddEnrollment(e); err == nil {
			t.Errorf("AddEnrollment(%+v) accepted", e)
		}
	}
}

// TestModuleIdentity: a module connects with its own key as "{deviceId}/{moduleId}"; the
// device's key is not the module's; removing the device removes its modules.
func TestModuleIdentity(t *testing.T) {
	h := newHub(t, Options{})
	if err := h.RegisterModule("dev1", "mod", key2); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("a module of an unknown device: %v", err)
	}
	_ = h.RegisterDevice("dev1", key1)
	if err := h.RegisterModule("dev1", "mod", key2); err != nil {
		t.Fatal(err)
	}
	cfg := cfgFor(h, "dev1", key2)
	cfg.Identity.ModuleID = "mod"
	c := iothubtest.Dial(t, cfg)
	c.Close()
	cfg.Identity.SharedAccessKey = key1
	if _, err := iothub.Dial(context.Background(), cfg); !errors.Is(err, iothub.ErrUnauthorized) {
		t.Errorf("the module with the device's key: %v, want ErrUnauthorized", err)
	}
	if err := h.RemoveDevice("dev1"); err != nil {
		t.Fatal(err)
	}
	if d := h.Devices(); len(d) != 0 {
		t.Errorf("after removing the device: %v", d)
	}
}

// TestDPSX509Enrollment: a device with an individual X.509 enrollment registers over TLS with
// its client certificate (no SAS token), is assigned, and connects to the hub with the same
// certificate; another certificate of the same name is refused by DPS.
func TestDPSX509Enrollment(t *testing.T) {
	pki := newTestPKI(t)
	h := newHub(t, Options{TLSConfig: pki.serverTLS()})
	dev := pki.leaf("dev-x509", false)
	if err := h.AddEnrollment(Enrollment{ID: "dev-x509", Thumbprint: Thumbprint(dev.Certificate[0])}); err != nil {
		t.Fatal(err)
	}
	cfg := dps.Config{IDScope: h.IDScope(), RegistrationID: "dev-x509", ClientCertificate: &dev,
		Endpoint: h.Addr().String(), TLSConfig: pki.clientTLS()}
	a, err := register(t, cfg)
	if err != nil || a.DeviceID != "dev-x509" {
		t.Fatalf("registration: %+v, %v", a, err)
	}
	x := iothubtest.Dial(t, iothub.Config{
		ConnectionString: "HostName=" + testHost + ";DeviceId=" + a.DeviceID + ";x509=true",
		Address:          h.Addr().String(), TLSConfig: pki.clientTLS(), ClientCertificate: &dev, ModelID: modelID,
	})
	if u := iothubtest.NextDesired(t, x); !u.Full {
		t.Fatal(u)
	}
	other := pki.leaf("dev-x509", false)
	cfg.ClientCertificate = &other
	if _, err := register(t, cfg); !errors.Is(err, dps.ErrConnect) {
		t.Errorf("another certificate of the same name: %v, want ErrConnect", err)
	}
}
