package bootloader

import (
	"fmt"
	"strconv"
	"strings"
)

// Preset names a set of U-Boot variables and the boot-script semantics behind them.
type Preset string

// The U-Boot variable presets.
const (
	// PresetAduflash: adu_slot (the bank bootcmd boots), adu_prev_slot (where altbootcmd
	// returns), adu_bad (banks marked bad), and U-Boot's own bootcount, bootlimit and
	// upgrade_available (CONFIG_BOOTCOUNT_ENV counts only while upgrade_available=1).
	// examples/u-boot/boot.cmd is the boot side.
	PresetAduflash Preset = "aduflash"
	// PresetMender: mender_boot_part, mender_boot_part_hex, upgrade_available, bootcount,
	// bootlimit, with Mender's altbootcmd toggling mender_boot_part. Banks map to partition
	// numbers (UBootConfig.MenderParts); adu_bad records banks marked bad.
	PresetMender Preset = "mender"
	// PresetRAUC: BOOT_ORDER and BOOT_<bank>_LEFT as RAUC's U-Boot scripts use them
	// (the scripts decrement LEFT with setexpr, which writes hex); adu_pending marks the bank
	// on trial and adu_bad the banks marked bad, since RAUC's variables cannot tell a trial
	// from a confirmed bank, nor a bad bank from one whose attempts were spent.
	PresetRAUC Preset = "rauc"
)

// ParsePreset parses a preset name.
func ParsePreset(s string) (Preset, error) {
	switch p := Preset(s); p {
	case PresetAduflash, PresetMender, PresetRAUC:
		return p, nil
	}
	return "", fmt.Errorf("unknown U-Boot variable preset %q (want aduflash, mender or rauc)", s)
}

// UBootConfig configures a U-Boot backend.
type UBootConfig struct {
	Preset Preset // default PresetAduflash
	Banks  []Bank // the banks, in order; default A, B
	// Attempts is how many boots a pending bank gets (bootlimit, BOOT_x_LEFT). Default 3;
	// Mender's default env has bootlimit=1 and this preset keeps an existing bootlimit.
	Attempts int
	// MenderParts maps banks to mender_boot_part numbers; default A=2, B=3.
	MenderParts map[Bank]int
}

// UBoot is the state model over a U-Boot environment.
type UBoot struct {
	store    EnvStore
	banks    bankList
	attempts int
	p        preset
}

// NewUBoot returns a U-Boot backend that reads and writes through store.
func NewUBoot(store EnvStore, cfg UBootConfig) (*UBoot, error) {
	u := &UBoot{store: store, banks: bankList(cfg.Banks), attempts: cfg.Attempts}
	if len(u.banks) == 0 {
		u.banks = bankList{"A", "B"}
	}
	seen := map[Bank]bool{}
	for _, s := range u.banks {
		if s == "" || strings.ContainsAny(string(s), " \t\n=") || seen[s] {
			return nil, fmt.Errorf("%w: bank name %q is empty, repeated or contains a space or '='", ErrUnknownBank, s)
		}
		seen[s] = true
	}
	if len(u.banks) < 2 {
		return nil, fmt.Errorf("%w: need at least two banks, have %s", ErrUnknownBank, u.banks)
	}
	if u.attempts == 0 {
		u.attempts = 3
	}
	if u.attempts < 1 || u.attempts > 255 {
		return nil, fmt.Errorf("boot attempts %d: want 1..255", u.attempts)
	}
	switch cfg.Preset {
	case PresetAduflash, "":
		u.p = &aduflashPreset{badListed{u}}
	case PresetMender:
		if len(u.banks) != 2 {
			return nil, fmt.Errorf("the mender preset has exactly two banks, not %d", len(u.banks))
		}
		parts := cfg.MenderParts
		if parts == nil {
			parts = map[Bank]int{u.banks[0]: 2, u.banks[1]: 3}
		}
		for _, s := range u.banks {
			if parts[s] <= 0 {
				return nil, fmt.Errorf("mender preset: no partition number for bank %q", s)
			}
		}
		if parts[u.banks[0]] == parts[u.banks[1]] {
			return nil, fmt.Errorf("mender preset: banks %s share partition %d", u.banks, parts[u.banks[0]])
		}
		u.p = &menderPreset{badListed: badListed{u}, parts: parts}
	case PresetRAUC:
		u.p = &raucPreset{u: u}
	default:
		_, err := ParsePreset(string(cfg.Preset))
		return nil, err
	}
	return u, nil
}

// FreshVars returns the variables a fresh environment (U-Boot's default one, which has none
// of the preset's) needs so that bank primary boots by default, nothing is on trial and no
// bank is bad. The preset reads them back as exactly that state.
func FreshVars(cfg UBootConfig, primary Bank) (map[string]string, error) {
	u, err := NewUBoot(nil, cfg)
	if err != nil {
		return nil, err
	}
	if err := u.banks.check(primary); err != nil {
		return nil, err
	}
	c := &changes{set: map[string]string{}}
	u.p.fresh(c, primary)
	st, err := u.p.state(c.set)
	if err != nil || st.Primary != primary || st.Pending != "" || len(st.Bad) > 0 {
		return nil, fmt.Errorf("bootloader: the %s preset's fresh variables read back as %+v (%v), not bank %s primary", cfg.Preset, st, err, primary)
	}
	return c.set, nil
}

// changes is one transaction on the environment.
type changes struct {
	set   map[string]string
	unset []string
}

func (c *changes) Set(k, v string) { c.set[k] = v }
func (c *changes) Unset(k string)  { c.unset = append(c.unset, k) }

// preset maps the state model onto one set of variables.
type preset interface {
	state(vars map[string]string) (State, error)
	pending(c *changes, st State, s, fallback Bank)
	confirm(c *changes, st State, s Bank)
	cancel(c *changes, st State, s, fallback Bank) // MarkBad of the pending bank
	setBad(c *changes, st State, s Bank, bad bool)
	// healthy is Confirm of the primary bank outside a trial: the booted bank is fine.
	healthy(c *changes, vars map[string]string, st State, s Bank)
	// fresh sets, over an environment without the preset's variables, s primary with
	// nothing pending.
	fresh(c *changes, s Bank)
}

// State reads the bootloader state.
func (u *UBoot) State() (State, error) {
	vars, err := u.store.Vars()
	if err != nil {
		return State{}, err
	}
	return u.p.state(vars)
}

func (u *UBoot) begin(s Bank) (map[string]string, State, *changes, error) {
	if err := u.banks.check(s); err != nil {
		return nil, State{}, nil, err
	}
	vars, err := u.store.Vars()
	if err != nil {
		return nil, State{}, nil, err
	}
	st, err := u.p.state(vars)
	if err != nil {
		return nil, State{}, nil, err
	}
	return vars, st, &changes{set: map[string]string{}}, nil
}

func (u *UBoot) commit(c *changes) error {
	if len(c.set) == 0 && len(c.unset) == 0 {
		return nil
	}
	return u.store.Update(c.set, c.unset)
}

// MarkPending makes s the bank booted next, on trial.
func (u *UBoot) MarkPending(s Bank) error {
	_, st, c, err := u.begin(s)
	if err != nil {
		return err
	}
	fallback, err := st.trialFallback(s, "the bootloader")
	if err != nil {
		return err
	}
	if fallback == "" {
		return fmt.Errorf("%w: every bank but %s is bad", ErrNoFallback, st.Primary)
	}
	u.p.pending(c, st, s, fallback)
	return u.commit(c)
}

// Confirm makes the booted bank s permanent. Called again on every healthy boot it writes
// nothing, except with RAUC's variables, whose boot script spends an attempt at every boot.
func (u *UBoot) Confirm(s Bank) error { return u.ConfirmRaising(s, nil) }

// ConfirmRaising is Confirm that also raises the anti-rollback floors (VarSecFloor) in the
// same environment write.
func (u *UBoot) ConfirmRaising(s Bank, raise Floors) error {
	vars, st, c, err := u.begin(s)
	if err != nil {
		return err
	}
	switch {
	case st.Pending == s:
		u.p.confirm(c, st, s)
	case st.Pending == "" && st.Primary == s:
		u.p.healthy(c, vars, st, s)
	default:
		return fmt.Errorf("%w: cannot confirm %s: the bootloader boots %s", ErrNotPrimary, s, st.Primary)
	}
	if err := raiseInto(c.set, vars, raise); err != nil {
		return err
	}
	return u.commit(c)
}

// Floors reads the anti-rollback floors (VarSecFloor).
func (u *UBoot) Floors() (Floors, error) { return storeFloors(u.store) }

// RaiseFloors raises the anti-rollback floors in one environment write; none when no floor
// rises.
func (u *UBoot) RaiseFloors(raise Floors) error { return raiseStoreFloors(u.store, raise) }

// MarkBad records that s must not be booted.
func (u *UBoot) MarkBad(s Bank) error {
	_, st, c, err := u.begin(s)
	if err != nil {
		return err
	}
	switch {
	case st.Pending == s:
		u.p.cancel(c, st, s, st.Fallback)
	case st.Primary == s:
		return fmt.Errorf("%w: %s is the confirmed bank the bootloader boots; put another bank on trial instead", ErrPrimaryBank, s)
	default:
		if st.IsBad(s) {
			return nil
		}
		u.p.setBad(c, st, s, true)
	}
	return u.commit(c)
}

// --- shared helpers -----------------------------------------------------------------------

// intVar reads a decimal variable (U-Boot's bootcount is decimal); def when unset.
func intVar(vars map[string]string, name string, def int) (int, error) {
	v, ok := vars[name]
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %s=%q is not a count", ErrBadState, name, v)
	}
	return n, nil
}

// hexVar reads a hex count as setexpr writes it ("a", "0x0a" and "3" all parse).
func hexVar(vars map[string]string, name string, def int) (int, error) {
	v, ok := vars[name]
	if !ok || v == "" {
		return def, nil
	}
	s := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(v), "0x"), "0X")
	n, err := strconv.ParseUint(s, 16, 16)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q is not a hex count", ErrBadState, name, v)
	}
	return int(n), nil
}

// badList keeps the adu_bad variable of the aduflash and mender presets.
type badList struct{ banks bankList }

const varBad = "adu_bad"

func (b badList) read(vars map[string]string) []Bank {
	set := map[Bank]bool{}
	for _, s := range b.banks.parse(vars[varBad]) {
		set[s] = true
	}
	return sortedBanks(set)
}

func (b badList) write(c *changes, st State, s Bank, bad bool) {
	set := map[Bank]bool{}
	for _, x := range st.Bad {
		set[x] = true
	}
	if set[s] == bad {
		return
	}
	set[s] = bad
	if l := sortedBanks(set); len(l) > 0 {
		c.Set(varBad, joinBanks(l))
	} else {
		c.Unset(varBad)
	}
}

// badListed is the bad-bank bookkeeping of the presets that keep it in varBad (aduflash and
// Mender): a bank is marked bad or, once healthy, good again in the list.
type badListed struct{ u *UBoot }

func (p badListed) setBad(c *changes, st State, s Bank, bad bool) {
	badList{p.u.banks}.write(c, st, s, bad)
}

func (p badListed) healthy(c *changes, _ map[string]string, st State, s Bank) {
	p.setBad(c, st, s, false)
}

// --- aduflash ----------------------------------------------------------------------------

type aduflashPreset struct{ badListed }

// AduflashAltBootCmd is the rollback PresetAduflash writes into altbootcmd with every
// MarkPending, so that a trial never starts without it: U-Boot runs it instead of bootcmd once
// bootcount exceeds bootlimit. It records the bank as bad, returns to adu_prev_slot, ends the
// trial, saves and boots (examples/u-boot/boot.cmd).
const AduflashAltBootCmd = `setenv adu_bad "${adu_bad} ${adu_slot}"; setenv adu_slot ${adu_prev_slot}; ` +
	`setenv adu_prev_slot; setenv upgrade_available 0; setenv bootcount 0; saveenv; run bootcmd`

const (
	varAltBootCmd = "altbootcmd"
	varSlot       = "adu_slot"
	varPrevSlot   = "adu_prev_slot"
	varUpgrade    = "upgrade_available"
	varBootcount  = "bootcount"
	varBootlimit  = "bootlimit"
)

func (p *aduflashPreset) state(vars map[string]string) (State, error) {
	st := State{Primary: p.u.banks[0], Bad: badList{p.u.banks}.read(vars)}
	if v, ok := vars[varSlot]; ok {
		st.Primary = Bank(v)
		if err := p.u.banks.check(st.Primary); err != nil {
			return State{}, fmt.Errorf("%w: %s=%q: %w", ErrBadState, varSlot, v, err)
		}
	}
	if vars[varUpgrade] != "1" {
		return st, nil
	}
	st.Pending = st.Primary
	st.Fallback = Bank(vars[varPrevSlot])
	if err := p.u.banks.check(st.Fallback); err != nil || st.Fallback == st.Primary {
		return State{}, fmt.Errorf("%w: %s=1 but %s=%q is not another bank", ErrBadState, varUpgrade, varPrevSlot, vars[varPrevSlot])
	}
	return withAttempts(st, vars, p.u.attempts)
}

// withAttempts fills AttemptsLeft from U-Boot's bootlimit and bootcount: bootcmd runs while
// bootcount ≤ bootlimit, and U-Boot increments bootcount before each boot.
func withAttempts(st State, vars map[string]string, defLimit int) (State, error) {
	limit, err := intVar(vars, varBootlimit, defLimit)
	if err != nil {
		return State{}, err
	}
	count, err := intVar(vars, varBootcount, 0)
	if err != nil {
		return State{}, err
	}
	st.AttemptsLeft = max(0, limit-count)
	return st, nil
}

func (p *aduflashPreset) pending(c *changes, st State, s, fallback Bank) {
	c.Set(varSlot, string(s))
	c.Set(varPrevSlot, string(fallback))
	c.Set(varUpgrade, "1")
	c.Set(varBootcount, "0")
	c.Set(varBootlimit, strconv.Itoa(p.u.attempts))
	c.Set(varAltBootCmd, AduflashAltBootCmd)
	p.setBad(c, st, s, false)
}

func (p *aduflashPreset) confirm(c *changes, st State, s Bank) {
	c.Set(varUpgrade, "0")
	c.Set(varBootcount, "0")
	c.Unset(varPrevSlot)
	p.setBad(c, st, s, false)
}

func (p *aduflashPreset) cancel(c *changes, st State, s, fallback Bank) {
	c.Set(varSlot, string(fallback))
	c.Set(varUpgrade, "0")
	c.Set(varBootcount, "0")
	c.Unset(varPrevSlot)
	p.setBad(c, st, s, true)
}

func (p *aduflashPreset) fresh(c *changes, s Bank) {
	c.Set(varSlot, string(s))
	c.Set(varUpgrade, "0")
	c.Set(varBootcount, "0")
}

// --- Mender ------------------------------------------------------------------------------

type menderPreset struct {
	badListed
	parts map[Bank]int
}

const (
	varMenderPart    = "mender_boot_part"
	varMenderPartHex = "mender_boot_part_hex"
)

func (p *menderPreset) other(s Bank) Bank {
	if p.u.banks[0] == s {
		return p.u.banks[1]
	}
	return p.u.banks[0]
}

func (p *menderPreset) state(vars map[string]string) (State, error) {
	st := State{Primary: p.u.banks[0], Bad: badList{p.u.banks}.read(vars)}
	if v, ok := vars[varMenderPart]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		found := false
		for s, part := range p.parts {
			if err == nil && part == n {
				st.Primary, found = s, true
			}
		}
		if !found {
			return State{}, fmt.Errorf("%w: %s=%q is not one of the configured partitions", ErrBadState, varMenderPart, v)
		}
	}
	if vars[varUpgrade] != "1" {
		return st, nil
	}
	st.Pending = st.Primary
	st.Fallback = p.other(st.Primary)
	return withAttempts(st, vars, 1)
}

func (p *menderPreset) boot(c *changes, s Bank) {
	c.Set(varMenderPart, strconv.Itoa(p.parts[s]))
	c.Set(varMenderPartHex, strconv.FormatInt(int64(p.parts[s]), 16))
}

func (p *menderPreset) pending(c *changes, st State, s, _ Bank) {
	p.boot(c, s)
	c.Set(varUpgrade, "1")
	c.Set(varBootcount, "0")
	p.setBad(c, st, s, false)
}

func (p *menderPreset) confirm(c *changes, st State, s Bank) {
	c.Set(varUpgrade, "0")
	c.Set(varBootcount, "0")
	p.setBad(c, st, s, false)
}

func (p *menderPreset) cancel(c *changes, st State, s, fallback Bank) {
	p.boot(c, fallback)
	c.Set(varUpgrade, "0")
	c.Set(varBootcount, "0")
	p.setBad(c, st, s, true)
}

func (p *menderPreset) fresh(c *changes, s Bank) {
	p.boot(c, s)
	c.Set(varUpgrade, "0")
	c.Set(varBootcount, "0")
}

// --- RAUC --------------------------------------------------------------------------------

type raucPreset struct{ u *UBoot }

const (
	varBootOrder = "BOOT_ORDER"
	varPending   = "adu_pending"
)

func leftVar(s Bank) string { return "BOOT_" + string(s) + "_LEFT" }

// order is BOOT_ORDER with every configured bank present: listed ones first, the rest after.
func (p *raucPreset) order(vars map[string]string) []Bank {
	order := p.u.banks.parse(vars[varBootOrder])
	if _, ok := vars[varBootOrder]; !ok {
		order = nil
	}
	seen := map[Bank]bool{}
	for _, s := range order {
		seen[s] = true
	}
	for _, s := range p.u.banks {
		if !seen[s] {
			order = append(order, s)
		}
	}
	return order
}

func (p *raucPreset) state(vars map[string]string) (State, error) {
	order := p.order(vars)
	left := map[Bank]int{}
	for _, s := range order {
		// The boot scripts set a missing BOOT_x_LEFT to the default attempts.
		n, err := hexVar(vars, leftVar(s), p.u.attempts)
		if err != nil {
			return State{}, err
		}
		left[s] = n
	}
	// Bad is what MarkBad recorded (adu_bad): a bank whose attempts the script has spent is
	// not bad by that alone — the booted bank spends one at every boot until it is confirmed.
	bad := badList{p.u.banks}.read(vars)
	isBad := func(s Bank) bool {
		for _, b := range bad {
			if b == s {
				return true
			}
		}
		return false
	}
	st := State{Primary: order[0], Bad: bad}
	if pend := Bank(vars[varPending]); pend != "" && pend == order[0] {
		// A trial: BOOT_ORDER starts with the bank on trial, whatever attempts it has left.
		// With none left the script boots the next bank at the next reset; the slots layer,
		// which knows the booted bank, tells a trial on its last boot from a rollback.
		st.Pending = pend
		st.AttemptsLeft = left[pend]
		for _, s := range order[1:] {
			if left[s] > 0 && !isBad(s) {
				st.Fallback = s
				break
			}
		}
		return st, nil
	}
	// The bank the script boots next: the first with attempts left; when every count is spent
	// (the script then resets them all), the first bank not marked bad.
	found := false
	for _, s := range order {
		if left[s] > 0 && !isBad(s) {
			st.Primary, found = s, true
			break
		}
	}
	if !found {
		for _, s := range order {
			if !isBad(s) {
				st.Primary = s
				break
			}
		}
	}
	return st, nil
}

func (p *raucPreset) attempts() string { return strconv.FormatInt(int64(p.u.attempts), 16) }

func (p *raucPreset) pending(c *changes, st State, s, fallback Bank) {
	order := []Bank{s, fallback}
	for _, x := range p.u.banks {
		if x != s && x != fallback {
			order = append(order, x)
		}
	}
	c.Set(varBootOrder, joinBanks(order))
	c.Set(leftVar(s), p.attempts())
	c.Set(varPending, string(s))
	badList{p.u.banks}.write(c, st, s, false)
}

func (p *raucPreset) confirm(c *changes, st State, s Bank) {
	c.Set(leftVar(s), p.attempts())
	c.Unset(varPending)
	badList{p.u.banks}.write(c, st, s, false)
}

func (p *raucPreset) cancel(c *changes, st State, s, fallback Bank) {
	c.Set(leftVar(s), "0")
	c.Unset(varPending)
	badList{p.u.banks}.write(c, st, s, true)
}

// healthy is RAUC's mark-good at every boot: the script spent an attempt, give it back.
func (p *raucPreset) healthy(c *changes, vars map[string]string, st State, s Bank) {
	if n, err := hexVar(vars, leftVar(s), -1); err != nil || n != p.u.attempts {
		c.Set(leftVar(s), p.attempts())
	}
	badList{p.u.banks}.write(c, st, s, false)
}

func (p *raucPreset) setBad(c *changes, st State, s Bank, bad bool) {
	if bad {
		c.Set(leftVar(s), "0")
	} else {
		c.Set(leftVar(s), p.attempts())
	}
	badList{p.u.banks}.write(c, st, s, bad)
}

// fresh puts s first in BOOT_ORDER, the other banks after it in their order, each with all
// its attempts.
func (p *raucPreset) fresh(c *changes, s Bank) {
	order := []Bank{s}
	for _, x := range p.u.banks {
		if x != s {
			order = append(order, x)
		}
	}
	c.Set(varBootOrder, joinBanks(order))
	for _, x := range p.u.banks {
		c.Set(leftVar(x), p.attempts())
	}
}
