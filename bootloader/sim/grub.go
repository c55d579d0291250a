package sim

import (
	"strings"

	"github.com/aduflash/aduflash/bootloader"
)

// GRUB models examples/grub/grub.cfg: boot the first bank in ORDER that is OK and untried,
// setting its TRY; if none, the first OK bank. A missing variable takes the script's default
// (ORDER "A B", <bank>_OK 1, <bank>_TRY 0).
type GRUB struct {
	Env bootloader.EnvStore
}

// Reset runs GRUB once and returns the bank it boots ("" when every bank is bad).
func (g *GRUB) Reset() (Boot, error) {
	vars, err := g.Env.Vars()
	if err != nil {
		return Boot{}, err
	}
	get := func(name, def string) string {
		if v, ok := vars[name]; ok {
			return v
		}
		return def
	}
	order := strings.Fields(get("ORDER", "A B"))
	b := Boot{}
	for i, s := range order {
		if get(s+"_OK", "1") == "1" && get(s+"_TRY", "0") == "0" {
			b.Bank = bootloader.Bank(s)
			b.Rollback = i > 0
			break
		}
	}
	if b.Bank == "" {
		for _, s := range order {
			if get(s+"_OK", "1") == "1" {
				b.Bank = bootloader.Bank(s)
				break
			}
		}
	}
	set := map[string]string{}
	for _, s := range order {
		set[s+"_TRY"] = get(s+"_TRY", "0")
	}
	if b.Bank != "" {
		set[string(b.Bank)+"_TRY"] = "1"
	}
	b.Saved = true
	return b, g.Env.Update(set, nil)
}
