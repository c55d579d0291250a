package ubootscript

import "github.com/aduflash/aduflash/internal/errkind"

// Errors of Generate and the [uboot] section. Callers test them with errors.Is.
var (
	// ErrConfig: the [uboot] section is missing, malformed or inconsistent.
	ErrConfig = errkind.New(errkind.Input, "ubootscript: invalid [uboot] configuration")
	// ErrUnreachable: U-Boot cannot reach the slot as configured (a file slot, a device path
	// U-Boot has no name for, a NAND slot inside a partition, a NOR slot without mtdparts).
	ErrUnreachable = errkind.New(errkind.Input, "ubootscript: slot not reachable from U-Boot")
	// ErrNeedGPT: a slot is a GPT partition, and no partition table was given to place it.
	ErrNeedGPT = errkind.New(errkind.Usage, "ubootscript: the slot's place comes from a GPT, and none was given")
	// ErrTooLarge: an image does not fit its slot, or the RAM the board loads it into.
	ErrTooLarge = errkind.New(errkind.Input, "ubootscript: image too large")
	// ErrCommand: a command cannot be written for U-Boot: a name with characters its shell
	// would interpret, or a line longer than its console takes.
	ErrCommand = errkind.New(errkind.Input, "ubootscript: cannot write the command for U-Boot")
)
