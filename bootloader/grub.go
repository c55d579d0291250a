package bootloader

import (
	"fmt"
	"strings"
)

// GRUBConfig configures the GRUB backend.
type GRUBConfig struct {
	Banks []Bank // the banks, in order; default A, B
}

// GRUB is the state model over a GRUB environment block with RAUC's GRUB variables, which
// examples/grub/grub.cfg reads: ORDER (banks to try, in order), <bank>_OK (1: bootable) and
// <bank>_TRY (1: tried once since it was last confirmed). GRUB boots the first bank in ORDER
// that is OK and not yet tried, setting its TRY before it boots, so a pending bank gets one
// attempt; the agent's Confirm clears TRY at every healthy boot (RAUC's mark-good). As with
// RAUC's U-Boot variables, adu_pending marks the bank on trial.
type GRUB struct {
	store EnvStore
	banks bankList
}

// NewGRUB returns a GRUB backend reading and writing through store (grubenv.Store).
func NewGRUB(store EnvStore, cfg GRUBConfig) (*GRUB, error) {
	g := &GRUB{store: store, banks: bankList(cfg.Banks)}
	if len(g.banks) == 0 {
		g.banks = bankList{"A", "B"}
	}
	if len(g.banks) < 2 {
		return nil, fmt.Errorf("%w: need at least two banks, have %s", ErrUnknownBank, g.banks)
	}
	for _, s := range g.banks {
		if s == "" || strings.ContainsAny(string(s), " \t\n=") {
			return nil, fmt.Errorf("%w: bank name %q", ErrUnknownBank, s)
		}
	}
	return g, nil
}

func okVar(s Bank) string  { return string(s) + "_OK" }
func tryVar(s Bank) string { return string(s) + "_TRY" }

type grubBank struct{ ok, tried bool }

// grubEnv is the environment block as read: its variables, ORDER completed with every
// bank, each bank's flags, and the state they make.
type grubEnv struct {
	vars  map[string]string
	order []Bank
	banks map[Bank]grubBank
	State
}

// readFor checks that s is a configured bank and reads the environment.
func (g *GRUB) readFor(s Bank) (*grubEnv, error) {
	if err := g.banks.check(s); err != nil {
		return nil, err
	}
	return g.read()
}

func (g *GRUB) read() (*grubEnv, error) {
	vars, err := g.store.Vars()
	if err != nil {
		return nil, err
	}
	order := bankList(g.banks).parse(vars["ORDER"])
	seen := map[Bank]bool{}
	for _, s := range order {
		seen[s] = true
	}
	for _, s := range g.banks {
		if !seen[s] {
			order = append(order, s)
		}
	}
	banks := map[Bank]grubBank{}
	for _, s := range order {
		b := grubBank{ok: true}
		for name, dst := range map[string]*bool{okVar(s): &b.ok, tryVar(s): &b.tried} {
			switch v, set := vars[name]; {
			case !set:
			case v == "0":
				*dst = false
			case v == "1":
				*dst = true
			default:
				return nil, fmt.Errorf("%w: %s=%q is not 0 or 1", ErrBadState, name, v)
			}
		}
		banks[s] = b
	}
	return &grubEnv{vars: vars, order: order, banks: banks, State: grubState(vars, order, banks)}, nil
}

// State reads the GRUB environment.
func (g *GRUB) State() (State, error) {
	env, err := g.read()
	if err != nil {
		return State{}, err
	}
	return env.State, nil
}

func grubState(vars map[string]string, order []Bank, banks map[Bank]grubBank) State {
	bad := map[Bank]bool{}
	for s, b := range banks {
		bad[s] = !b.ok
	}
	st := State{Primary: order[0]}
	if p := Bank(vars[varPending]); p != "" && p == order[0] && banks[p].ok {
		st.Pending = p
		if !banks[p].tried {
			st.AttemptsLeft = 1
		}
	} else {
		for _, s := range order {
			if banks[s].ok {
				st.Primary = s
				break
			}
		}
	}
	for _, s := range order {
		if s != st.Primary && banks[s].ok {
			if st.Pending != "" {
				st.Fallback = s
			}
			break
		}
	}
	st.Bad = sortedBanks(bad)
	return st
}

// MarkPending puts s first in ORDER, bootable and untried.
func (g *GRUB) MarkPending(s Bank) error {
	env, err := g.readFor(s)
	if err != nil {
		return err
	}
	fallback, err := env.trialFallback(s, "GRUB")
	if err != nil {
		return err
	}
	if fallback == "" || !env.banks[fallback].ok {
		return fmt.Errorf("%w: every bank but %s is bad", ErrNoFallback, s)
	}
	newOrder := []Bank{s, fallback}
	for _, x := range env.order {
		if x != s && x != fallback {
			newOrder = append(newOrder, x)
		}
	}
	return g.store.Update(map[string]string{
		"ORDER": joinBanks(newOrder), okVar(s): "1", tryVar(s): "0", varPending: string(s),
	}, nil)
}

// Confirm clears the booted bank's TRY flag (at every healthy boot) and ends its trial.
func (g *GRUB) Confirm(s Bank) error { return g.ConfirmRaising(s, nil) }

// ConfirmRaising is Confirm that also raises the anti-rollback floors (VarSecFloor) in the
// same rewrite of the environment block.
func (g *GRUB) ConfirmRaising(s Bank, raise Floors) error {
	env, err := g.readFor(s)
	if err != nil {
		return err
	}
	if env.Pending != s && !(env.Pending == "" && env.Primary == s) {
		return fmt.Errorf("%w: cannot confirm %s: GRUB boots %s", ErrNotPrimary, s, env.Primary)
	}
	set := map[string]string{}
	var unset []string
	if env.vars[tryVar(s)] != "0" {
		set[tryVar(s)] = "0"
	}
	if env.vars[okVar(s)] != "1" {
		set[okVar(s)] = "1"
	}
	if _, ok := env.vars[varPending]; ok {
		unset = append(unset, varPending)
	}
	if err := raiseInto(set, env.vars, raise); err != nil {
		return err
	}
	if len(set) == 0 && len(unset) == 0 {
		return nil
	}
	return g.store.Update(set, unset)
}

// Floors reads the anti-rollback floors (VarSecFloor).
func (g *GRUB) Floors() (Floors, error) { return storeFloors(g.store) }

// RaiseFloors raises the anti-rollback floors in one rewrite of the environment block; none
// when no floor rises.
func (g *GRUB) RaiseFloors(raise Floors) error { return raiseStoreFloors(g.store, raise) }

// MarkBad clears s's OK flag; a pending s ends its trial.
func (g *GRUB) MarkBad(s Bank) error {
	env, err := g.readFor(s)
	if err != nil {
		return err
	}
	if env.Pending != s && env.Primary == s {
		return fmt.Errorf("%w: %s is the confirmed bank GRUB boots; put another bank on trial instead", ErrPrimaryBank, s)
	}
	set := map[string]string{okVar(s): "0"}
	var unset []string
	if env.vars[varPending] == string(s) {
		unset = append(unset, varPending)
	}
	if !env.banks[s].ok && len(unset) == 0 {
		return nil
	}
	return g.store.Update(set, unset)
}
