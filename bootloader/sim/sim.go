// Package sim models what U-Boot does with the environment at each reset, for the three
// variable presets of package bootloader, so that tests can run boot → reboot → rollback
// sequences against the real state-model code and a real environment store.
//
// The model follows U-Boot's CONFIG_BOOTCOUNT_LIMIT with CONFIG_BOOTCOUNT_ENV
// (common/autoboot.c, drivers/bootcount): while upgrade_available=1, bootcount is incremented
// and saved at every reset, and altbootcmd runs instead of bootcmd once bootcount exceeds
// bootlimit. altbootcmd is the preset's rollback as its boot script writes it
// (examples/u-boot/ for aduflash, Mender's mender_altbootcmd, RAUC's BOOT_ORDER loop).
// The real-U-Boot tests under QEMU check the same sequences against real U-Boot.
package sim

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/aduflash/aduflash/bootloader"
)

// Device is a board whose bootloader uses env.
type Device struct {
	Env    bootloader.EnvStore
	Preset bootloader.Preset
	Banks  []bootloader.Bank // default A, B
	// MenderParts maps banks to mender_boot_part numbers (default A=2, B=3).
	MenderParts map[bootloader.Bank]int
	// RAUCAttempts is what RAUC's script resets BOOT_x_LEFT to when no bank has attempts left.
	RAUCAttempts int
}

// Boot is what one reset did.
type Boot struct {
	Bank     bootloader.Bank // the bank the kernel was started from
	Rollback bool            // altbootcmd ran (or, for RAUC, a bank ran out of attempts)
	Saved    bool            // the bootloader wrote the environment
}

func (d *Device) banks() []bootloader.Bank {
	if len(d.Banks) > 0 {
		return d.Banks
	}
	return []bootloader.Bank{"A", "B"}
}

// Reset runs the bootloader once.
func (d *Device) Reset() (Boot, error) {
	vars, err := d.Env.Vars()
	if err != nil {
		return Boot{}, err
	}
	switch d.Preset {
	case bootloader.PresetAduflash, "":
		return d.bootcount(vars, d.aduflashAlt, func(v map[string]string) bootloader.Bank {
			if s := v["adu_slot"]; s != "" {
				return bootloader.Bank(s)
			}
			return d.banks()[0]
		})
	case bootloader.PresetMender:
		parts := d.MenderParts
		if parts == nil {
			parts = map[bootloader.Bank]int{d.banks()[0]: 2, d.banks()[1]: 3}
		}
		return d.bootcount(vars, func(v map[string]string, set map[string]string, unset *[]string) {
			// mender_altbootcmd: toggle the partition, stop the trial, save.
			next := d.banks()[0]
			if v["mender_boot_part"] == strconv.Itoa(parts[d.banks()[0]]) {
				next = d.banks()[1]
			}
			set["mender_boot_part"] = strconv.Itoa(parts[next])
			set["mender_boot_part_hex"] = strconv.FormatInt(int64(parts[next]), 16)
			set["upgrade_available"] = "0"
		}, func(v map[string]string) bootloader.Bank {
			for s, p := range parts {
				if v["mender_boot_part"] == strconv.Itoa(p) {
					return s
				}
			}
			return d.banks()[0]
		})
	case bootloader.PresetRAUC:
		return d.rauc(vars)
	}
	return Boot{}, fmt.Errorf("sim: unknown preset %q", d.Preset)
}

// bootcount is U-Boot's bootcount_inc + bootdelay_process choice of bootcmd or altbootcmd.
func (d *Device) bootcount(vars map[string]string,
	alt func(v map[string]string, set map[string]string, unset *[]string),
	bankOf func(map[string]string) bootloader.Bank) (Boot, error) {
	if vars["upgrade_available"] != "1" {
		return Boot{Bank: bankOf(vars)}, nil
	}
	count, _ := strconv.Atoi(vars["bootcount"])
	count++
	limit, _ := strconv.Atoi(vars["bootlimit"])
	set := map[string]string{"bootcount": strconv.Itoa(count)}
	var unset []string
	b := Boot{Saved: true}
	if limit > 0 && count > limit {
		alt(vars, set, &unset)
		b.Rollback = true
	}
	if err := d.Env.Update(set, unset); err != nil {
		return Boot{}, err
	}
	after, err := d.Env.Vars()
	if err != nil {
		return Boot{}, err
	}
	b.Bank = bankOf(after)
	return b, nil
}

// aduflashAlt is altbootcmd of examples/u-boot/boot.cmd: record the bank as bad, go back.
func (d *Device) aduflashAlt(v map[string]string, set map[string]string, unset *[]string) {
	bad := strings.TrimSpace(v["adu_bad"] + " " + v["adu_slot"])
	set["adu_bad"] = bad
	set["adu_slot"] = v["adu_prev_slot"]
	set["upgrade_available"] = "0"
	set["bootcount"] = "0"
	*unset = append(*unset, "adu_prev_slot")
}

// rauc is RAUC's boot script: the first bank in BOOT_ORDER with attempts left is booted and
// its BOOT_x_LEFT decremented (setexpr writes hex); with none left, all are reset.
func (d *Device) rauc(vars map[string]string) (Boot, error) {
	order := strings.Fields(vars["BOOT_ORDER"])
	if len(order) == 0 {
		for _, s := range d.banks() {
			order = append(order, string(s))
		}
	}
	reset := d.RAUCAttempts
	if reset == 0 {
		reset = 3
	}
	b := Boot{Saved: true}
	for i, s := range order {
		left := reset
		if v, ok := vars["BOOT_"+s+"_LEFT"]; ok {
			n, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 16)
			if err != nil {
				return Boot{}, fmt.Errorf("sim: BOOT_%s_LEFT=%q", s, v)
			}
			left = int(n)
		}
		if left > 0 {
			b.Bank = bootloader.Bank(s)
			b.Rollback = i > 0 && vars["adu_pending"] == order[0]
			return b, d.Env.Update(map[string]string{"BOOT_" + s + "_LEFT": strconv.FormatInt(int64(left-1), 16)}, nil)
		}
	}
	set := map[string]string{}
	for _, s := range order {
		set["BOOT_"+s+"_LEFT"] = strconv.Itoa(reset)
	}
	if err := d.Env.Update(set, nil); err != nil {
		return Boot{}, err
	}
	return d.rauc(mergeVars(vars, set))
}

func mergeVars(a, b map[string]string) map[string]string {
	m := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}
