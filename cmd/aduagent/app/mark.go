package app

import (
	"fmt"
	"reflect"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
)

func (e *env) markGoodCommand() *cli.Command {
	return &cli.Command{
		Name:      "mark-good",
		Usage:     "confirm the running bank (the manual counterpart of the agent's Confirm)",
		ArgsUsage: "[BANK]",
		Description: `Confirms BANK in the bootloader: a bank on trial becomes permanent, and a bank that runs
healthy outside a trial loses any bad mark (nothing is written when there is nothing to
change, except that RAUC's variables and GRUB reset their boot attempts).
Without BANK the running bank is confirmed. Only the running bank can be confirmed: a BANK
that is not the one that booted is refused before anything is written, as is any BANK when
the running bank cannot be told. Prints the bootloader state afterwards.

Exit codes: 0 confirmed (or already good); 1 BANK is not the running bank, the bootloader
does not boot it (it rolled back) or its state is invalid; 2 usage error or unknown bank;
3 the running bank cannot be told, or the bootloader storage cannot be read or written.

EXAMPLE:
   aduagent mark-good
   aduagent mark-good A
   aduagent mark-good --json`,
		Flags:  []cli.Flag{cliapp.JSONFlag("the result")},
		Action: e.markGood,
	}
}

func (e *env) markBadCommand() *cli.Command {
	return &cli.Command{
		Name:      "mark-bad",
		Usage:     "mark a bank bad so it is not booted (the manual counterpart of the agent's MarkBad)",
		ArgsUsage: "BANK",
		Description: `Records in the bootloader that BANK must not be booted. If BANK is on trial (pending), the
trial is cancelled and the bootloader boots its fallback bank again. The running bank is
refused before anything is written (put another bank on trial instead), as is any BANK when
the running bank cannot be told. Prints the bootloader state afterwards.

Exit codes: 0 marked (or already bad); 1 BANK is the running bank, or the bootloader
refuses (BANK is its confirmed primary bank, no good bank would be left, invalid state);
2 usage error or unknown bank; 3 the running bank cannot be told, or the bootloader storage
cannot be read or written.

EXAMPLE:
   aduagent mark-bad B
   aduagent mark-bad --json B`,
		Flags:  []cli.Flag{cliapp.JSONFlag("the result")},
		Action: e.markBad,
	}
}

type markResult struct {
	Action    string            `json:"action"` // "mark-good" or "mark-bad"
	Bank      string            `json:"bank"`
	Active    string            `json:"active"`
	Unchanged bool              `json:"unchanged"` // the state reads the same as before
	State     *bootloader.State `json:"state"`
}

func (e *env) markGood(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 1, "[BANK]"); err != nil {
		return err
	}
	return e.mark(c, "mark-good", c.Args().First())
}

func (e *env) markBad(c *cli.Context) error {
	if err := cliapp.Args(c, 1, 1, "BANK"); err != nil {
		return err
	}
	return e.mark(c, "mark-bad", c.Args().First())
}

// mark runs both commands: every check first, then one backend operation, then the state.
func (e *env) mark(c *cli.Context, action, bank string) error {
	d, err := loadDevice(c)
	if err != nil {
		return err
	}
	defer d.close()
	if bank != "" {
		if err := d.checkBank(bank); err != nil {
			return err
		}
	}
	if d.bootErr != nil {
		return d.bootErr
	}
	active, err := d.layout.ActiveBank()
	if err == nil && active == "" {
		err = fmt.Errorf("no slots configured")
	}
	if err != nil {
		return exitcode.WithCode(exitcode.IO, fmt.Errorf("%s: cannot tell which bank is running, nothing written: %w", action, err))
	}
	before, err := d.backend.State()
	if err != nil {
		return fmt.Errorf("reading the bootloader state: %w", err)
	}
	var op func(bootloader.Bank) error
	switch action {
	case "mark-good":
		if bank == "" {
			bank = active
		}
		if bank != active {
			return exitcode.InvalidInput(fmt.Errorf("mark-good: refusing to confirm bank %s: the running bank is %s; only the bank that booted can be marked good (nothing written)", bank, active))
		}
		op = d.backend.Confirm
	case "mark-bad":
		if bank == active {
			return exitcode.InvalidInput(fmt.Errorf("mark-bad: refusing to mark bank %s bad: it is the running bank; put another bank on trial instead (nothing written)", bank))
		}
		op = d.backend.MarkBad
	}
	if err := op(bootloader.Bank(bank)); err != nil {
		return fmt.Errorf("%s %s: %w", action, bank, err)
	}
	after, err := d.backend.State()
	if err != nil {
		return fmt.Errorf("%s %s done, but reading the state back failed: %w", action, bank, err)
	}
	res := &markResult{Action: action, Bank: bank, Active: active, Unchanged: reflect.DeepEqual(before, after), State: &after}
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, res)
	}
	verb := map[string]string{"mark-good": "marked good", "mark-bad": "marked bad"}[action]
	note := ""
	if res.Unchanged {
		note = " (bootloader state unchanged)"
	}
	fmt.Fprintf(e.stdout, "bank %s %s%s; running bank %s\n", bank, verb, note, active)
	printState(e.stdout, after)
	return nil
}
