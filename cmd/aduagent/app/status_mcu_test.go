package app

import (
	"strings"
	"testing"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/agent"
)

// The status of a deployment updating its MCUs names each MCU and where it stands.
func TestStatusMCUPhase(t *testing.T) {
	d := &agent.Deployment{Phase: agent.PhaseMCU, Bank: "B", From: "A", UpdateID: adu.UpdateID{Provider: "C", Name: "T", Version: "2.0"},
		Steps: []agent.StepState{
			{Class: "rootfs"},
			{Class: "motor", MCU: &agent.MCUStep{Name: "motor", Result: &agent.StepOutcome{ResultCode: 700}}},
			{Class: "radio", MCU: &agent.MCUStep{Name: "radio", Phase: agent.MCUPhaseCheck}},
			{Class: "fan", MCU: &agent.MCUStep{Name: "fan", Result: &agent.StepOutcome{ExtendedResultCode: agent.ERCMCUUnreachable + 2}}},
		}}
	got := deploymentString(d)
	if want := "updating the attached MCUs: motor (done) radio (check) fan (failed 32000102)"; !strings.HasSuffix(got, want) {
		t.Fatalf("%q, want it to end with %q", got, want)
	}
}
