package agent

import (
	"context"
	"encoding/json"
)

// BanksProperty is the name of the agent's own reported property (beside the Device Update
// component): the device's banks as the bootloader sees them, so that a dashboard (aduhub's
// page) can tell "rebooting into B" from "offline". The service ignores it.
const BanksProperty = "aduflashBanks"

// BanksReport is the value of BanksProperty.
type BanksReport struct {
	Running      string   `json:"running,omitempty"` // the bank that booted ("" unknown)
	Primary      string   `json:"primary"`           // what the bootloader boots by default
	Pending      string   `json:"pending,omitempty"` // the bank on trial next, if any
	AttemptsLeft int      `json:"attemptsLeft,omitempty"`
	Fallback     string   `json:"fallback,omitempty"`
	Bad          []string `json:"bad,omitempty"`
}

// banksPatch renders the reported patch of the banks, or nil when the bootloader cannot be
// read (nothing is reported then).
func (a *Agent) banksPatch() []byte {
	st, err := a.o.Bootloader.State()
	if err != nil {
		return nil
	}
	r := BanksReport{Primary: string(st.Primary), Pending: string(st.Pending), AttemptsLeft: st.AttemptsLeft, Fallback: string(st.Fallback)}
	if active, err := a.activeBank(); err == nil {
		r.Running = active
	}
	for _, b := range st.Bad {
		r.Bad = append(r.Bad, string(b))
	}
	patch, err := json.Marshal(map[string]BanksReport{BanksProperty: r})
	if err != nil {
		return nil
	}
	return patch
}

// reportBanks sends the banks: at startup, and before a reboot into a pending bank.
func (a *Agent) reportBanks(ctx context.Context) {
	if patch := a.banksPatch(); patch != nil {
		a.send(ctx, patch)
	}
}
