package agent

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
)

// A U-Boot env that has no valid copy by the time the bank is marked pending (here: torn
// while the image downloads) is not replaced by an empty one: MarkPending fails with
// ubootenv.ErrNoValidCopy, the env keeps its bytes, the deployment is reported Failed with
// the bootloader ERC, nothing is pending and the agent does not reboot.
func TestMarkPendingRefusesEnvWithNoValidCopy(t *testing.T) {
	v1 := payload(1, 100<<10)
	d := newDevice(t, v1)
	srv := newServer(t)
	v2raw := payload(2, 100<<10)
	u2 := newUpdate(t, srv, "2.0", v2raw, makeImage(t, v2raw, "2.0", nil), manifestOpts{})
	h := newHub(t)

	f := ubootenv.Format{Size: 0x4000}
	blob, err := ubootenv.Encode([]ubootenv.Var{{Name: "adu_slot", Value: "A"}}, f, 0)
	if err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(t.TempDir(), "uboot.env")
	if err := os.WriteFile(envFile, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	env, err := ubootenv.New(ubootenv.Options{Format: f}, &ubootenv.FileStorage{Path: envFile})
	if err != nil {
		t.Fatal(err)
	}
	bl, err := bootloader.NewUBoot(env, bootloader.UBootConfig{})
	if err != nil {
		t.Fatal(err)
	}
	torn := bytes.Clone(blob)
	torn[100] ^= 0xff
	var tear sync.Once
	tearEnv := func(int64) {
		tear.Do(func() {
			if err := os.WriteFile(envFile, torn, 0o644); err != nil {
				t.Error(err)
			}
		})
	}

	h.full(u2.service("wf-2", ""))
	a := d.agent(func(o *Options) { o.Bootloader, o.OnBytes = bl, tearEnv })
	done := func() bool { ag := lastState(h); return stateOf(ag) == 0 && wfID(ag) == "wf-2" }
	if err := runAgent(t, a, h, done); err != nil {
		t.Fatalf("run: %v (the agent must fail the deployment, not reboot)", err)
	}
	if now, _ := os.ReadFile(envFile); !bytes.Equal(now, torn) {
		t.Fatal("the env was written")
	}
	lir, _ := lastState(h)["lastInstallResult"].(map[string]any)
	details := fmt.Sprint(lir["resultDetails"])
	if lir["extendedResultCode"] != float64(ERCBootloader.Int32()) || !strings.Contains(details, "marking bank B pending") ||
		!strings.Contains(details, "no valid environment copy") {
		t.Fatalf("last install result %v", lir)
	}
	if rec := a.Record(); rec.Deployment != nil {
		t.Fatalf("a deployment is still open: %+v", rec.Deployment)
	}
}
