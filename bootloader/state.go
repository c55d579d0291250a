// Package bootloader owns the one bank state model every boot backend maps onto (DESIGN.md §4)
// and the U-Boot environment presets that express it: aduflash's own variables, Mender's and
// RAUC's, so that existing boot scripts keep working.
//
// Every bank has four facts: active (what booted; told by the slots layer, not by the
// bootloader), primary (what the bootloader boots by default), pending (booted next with a
// number of attempts, reverted by the bootloader unless confirmed) and bad. The operations
// MarkPending, Confirm and MarkBad each compute the whole transition first and then make
// exactly one atomic write to the bootloader's storage; State reads without writing.
//
// The U-Boot and GRUB backends also keep the agent's anti-rollback floors (FloorKeeper,
// VarSecFloor), where a wipe of the agent's data does not reach them: ConfirmRaising raises
// them in the same write that confirms a bank.
//
// The byte formats live in sub-packages: bootloader/ubootenv (U-Boot environment),
// bootloader/grubenv (GRUB environment block) and bootloader/mcuboottrailer (MCUboot trailer).
package bootloader

import (
	"fmt"
	"sort"
	"strings"

	"github.com/aduflash/aduflash/internal/errkind"
)

// Bank names a bank: the slots that switch together, e.g. "A" or "B".
type Bank string

// State is what the bootloader will do at the next reset.
type State struct {
	// Primary is the bank the bootloader boots by default (during a trial: the bank on trial).
	Primary Bank `json:"primary"`
	// Pending is the bank on trial, or "" when none is. While a bank is pending the
	// bootloader falls back to Fallback once AttemptsLeft reaches zero.
	Pending Bank `json:"pending,omitempty"`
	// AttemptsLeft counts the boots the pending bank still gets.
	AttemptsLeft int `json:"attempts_left,omitempty"`
	// Fallback is the bank the bootloader returns to if the pending bank is not confirmed.
	Fallback Bank `json:"fallback,omitempty"`
	// Bad lists the banks marked bad (by MarkBad, or by the bootloader's rollback), sorted.
	Bad []Bank `json:"bad,omitempty"`
}

// IsBad reports whether s is marked bad.
func (st State) IsBad(s Bank) bool {
	for _, b := range st.Bad {
		if b == s {
			return true
		}
	}
	return false
}

// Backend is a bootloader's side of the state model.
type Backend interface {
	State() (State, error)
	// MarkPending makes s the bank booted next, on trial: if it is not confirmed within the
	// configured attempts the bootloader returns to the current primary bank.
	MarkPending(s Bank) error
	// Confirm makes the pending bank s, which must be the one that booted, permanent.
	Confirm(s Bank) error
	// MarkBad records that s must not be booted; if s is pending, the trial is cancelled and
	// the fallback bank becomes primary again.
	MarkBad(s Bank) error
}

// Banks adapts a Backend to the question the slots layer asks of it to tell the running bank
// (slots.BootState): BootBanks returns the primary and the pending bank of State.
type Banks struct{ Backend Backend }

// BootBanks returns the bank booted by default and the bank on trial ("" when none).
func (b Banks) BootBanks() (primary, pending string, err error) {
	st, err := b.Backend.State()
	return string(st.Primary), string(st.Pending), err
}

// Errors of the state model. Callers test them with errors.Is.
var (
	// ErrUnknownBank: the bank is not one of the configured banks.
	ErrUnknownBank = errkind.New(errkind.Usage, "unknown bank")
	// ErrPrimaryBank: the operation would make no sense on the bank the bootloader boots
	// now (marking it pending, or marking the confirmed primary bad with no fallback).
	ErrPrimaryBank = errkind.New(errkind.Input, "bank is the primary bank")
	// ErrNotPrimary: Confirm of a bank the bootloader does not boot (it rolled back).
	ErrNotPrimary = errkind.New(errkind.Input, "bank is not the primary bank")
	// ErrNoFallback: no other bank is left that is not bad.
	ErrNoFallback = errkind.New(errkind.Input, "no good bank to fall back to")
	// ErrBadState: the bootloader variables are inconsistent or malformed.
	ErrBadState = errkind.New(errkind.Input, "bootloader state is invalid")
)

// EnvStore is what a U-Boot backend needs from the environment: a fresh read of all variables,
// and one atomic write that sets and deletes variables together (a redundant U-Boot env copy,
// a GRUB env file rename). The ubootenv package provides one.
type EnvStore interface {
	Vars() (map[string]string, error)
	Update(set map[string]string, unset []string) error
}

// bankList is the configured banks.
type bankList []Bank

func (l bankList) check(s Bank) error {
	for _, x := range l {
		if x == s {
			return nil
		}
	}
	return fmt.Errorf("%w: %q (configured: %s)", ErrUnknownBank, s, l)
}

func (l bankList) String() string {
	parts := make([]string, len(l))
	for i, s := range l {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

// parse reads a space-separated list of banks (e.g. adu_bad, BOOT_ORDER), keeping only
// configured banks, without duplicates, in the given order.
func (l bankList) parse(v string) []Bank {
	var out []Bank
	seen := map[Bank]bool{}
	for _, f := range strings.Fields(v) {
		s := Bank(f)
		if l.check(s) == nil && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func joinBanks(s []Bank) string {
	parts := make([]string, len(s))
	for i, x := range s {
		parts[i] = string(x)
	}
	return strings.Join(parts, " ")
}

func sortedBanks(set map[Bank]bool) []Bank {
	var out []Bank
	for s, ok := range set {
		if ok {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// trialFallback returns the bank that a trial of s returns to: the fallback of the trial
// running now, else the primary. s itself cannot be it (loader names the bootloader in the
// error): a trial needs a way back.
func (st State) trialFallback(s Bank, loader string) (Bank, error) {
	fallback := st.Primary
	if st.Pending != "" {
		fallback = st.Fallback
	}
	if fallback == s {
		return "", fmt.Errorf("%w: %s is the bank %s returns to; it cannot be put on trial", ErrPrimaryBank, s, loader)
	}
	return fallback, nil
}
