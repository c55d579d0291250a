package agent

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aduflash/aduflash/image"
)

// A dry run of aduagent install checks the file as the install does and reaches the same
// verdict, but leaves the spare slot's bytes, the journal and the bootloader as they were:
// a good image passes with what it is, an image for another device or older than what runs
// is refused with the same error, and a pending bank still refuses it.
func TestInstallLocalDryRun(t *testing.T) {
	d := newDevice(t, payload(1, 64<<10))
	srv := newServer(t)
	spare := d.Slot("B", 1<<20)
	dry := func(name string, file []byte) (*Deployment, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		a := d.agent(nil)
		defer a.Close()
		return a.InstallLocal(ctx, LocalInstall{Source: Source{URL: srv.put(name, file), Size: int64(len(file))}, NoReboot: true, DryRun: true})
	}
	unchanged := func(what string) {
		t.Helper()
		if !bytes.Equal(d.Slot("B", 1<<20), spare) {
			t.Fatalf("%s: the dry run wrote the spare slot", what)
		}
		if st := d.bootState(); st.Pending != "" || st.Primary != "A" {
			t.Fatalf("%s: the dry run changed the bootloader: %+v", what, st)
		}
		if rec, _ := loadRecord(t, d); rec.Deployment != nil || rec.Last != nil {
			t.Fatalf("%s: the dry run wrote the journal: %+v", what, rec)
		}
	}

	dep, err := dry("ok.aduimg", makeImage(t, payload(2, 300<<10), "2.0", nil))
	if err != nil || dep.UpdateID.Version != "2.0" || dep.Phase != PhaseInstall || dep.Steps[0].Progress.Info == nil || dep.Steps[0].Slot != "rootfs-b" {
		t.Fatalf("good image: %v, %+v", err, dep)
	}
	unchanged("good image")
	_, err = dry("other.aduimg", makeImage(t, payload(3, 64<<10), "2.0", func(o *image.SignOptions) { o.Compatibility = map[string]string{"model": "Other"} }))
	if !errors.Is(err, ErrIncompatible) {
		t.Fatalf("another device's image: %v", err)
	}
	unchanged("another device's image")

	// Once 2.0 runs, 1.0 is a downgrade in a dry run as in an install; a pending bank
	// refuses a dry run as it refuses an install.
	installAndConfirm(t, d, srv, "v2.aduimg", makeImage(t, payload(4, 64<<10), "2.0", nil))
	if _, err := dry("old.aduimg", makeImage(t, payload(5, 64<<10), "1.0", nil)); !errors.Is(err, ErrDowngrade) {
		t.Fatalf("downgrade: %v", err)
	}
	if err := installLocal(t, d, srv, "v3.aduimg", makeImage(t, payload(6, 64<<10), "3.0", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := dry("v4.aduimg", makeImage(t, payload(7, 64<<10), "4.0", nil)); !errors.Is(err, ErrBusy) {
		t.Fatalf("a bank pending: %v", err)
	}
	if st := d.bootState(); st.Pending != "A" {
		t.Fatalf("the pending bank: %+v", st)
	}
}
