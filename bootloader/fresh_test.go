package bootloader_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/aduflash/aduflash/bootloader"
)

// TestFreshVars: the variables a recovery writes over U-Boot's default environment make the
// asked bank primary with nothing on trial, the boot side boots it, and the next update can
// put the other bank on trial from there.
func TestFreshVars(t *testing.T) {
	want := map[bootloader.Preset]map[bootloader.Bank]map[string]string{
		bootloader.PresetAduflash: {
			"A": {"adu_slot": "A", "upgrade_available": "0", "bootcount": "0"},
			"B": {"adu_slot": "B", "upgrade_available": "0", "bootcount": "0"},
		},
		bootloader.PresetMender: {
			"A": {"mender_boot_part": "2", "mender_boot_part_hex": "2", "upgrade_available": "0", "bootcount": "0"},
			"B": {"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "0", "bootcount": "0"},
		},
		bootloader.PresetRAUC: {
			"A": {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
			"B": {"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
		},
	}
	for _, p := range presets {
		for _, bank := range []bootloader.Bank{"A", "B"} {
			t.Run(string(p)+"/"+string(bank), func(t *testing.T) {
				vars, err := bootloader.FreshVars(bootloader.UBootConfig{Preset: p}, bank)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(vars, want[p][bank]) {
					t.Fatalf("FreshVars = %v, want %v", vars, want[p][bank])
				}
				b := newBoard(t, p, vars, 3)
				if st := b.state(t); st.Primary != bank || st.Pending != "" || len(st.Bad) > 0 {
					t.Fatalf("state of the fresh env = %+v", st)
				}
				if r := b.reset(t); r.Bank != bank || r.Rollback {
					t.Fatalf("the fresh env boots %+v, want bank %s", r, bank)
				}
				other := bootloader.Bank("A")
				if bank == "A" {
					other = "B"
				}
				if err := b.bl.MarkPending(other); err != nil {
					t.Fatalf("MarkPending(%s) after the recovery: %v", other, err)
				}
			})
		}
	}
}

func TestFreshVarsOfConfig(t *testing.T) {
	c := bootloader.Config{Type: bootloader.TypeUBoot, Preset: "mender", MenderParts: map[string]int{"A": 5, "B": 7}}
	vars, err := c.FreshVars("B")
	if err != nil || vars["mender_boot_part"] != "7" {
		t.Fatalf("FreshVars(B) = %v, %v", vars, err)
	}
	if _, err := c.FreshVars("C"); !errors.Is(err, bootloader.ErrUnknownBank) {
		t.Fatalf("FreshVars(C) = %v, want ErrUnknownBank", err)
	}
	if _, err := (bootloader.Config{Type: bootloader.TypeGRUB}).FreshVars("A"); !errors.Is(err, bootloader.ErrConfig) {
		t.Fatalf("FreshVars of a grub section = %v, want ErrConfig", err)
	}
}
