package ubootenv

import "github.com/aduflash/aduflash/internal/errkind"

// Sentinel errors. Returned errors wrap one of these (test with errors.Is) and name the
// place: the config file and line, the env copy (1 or 2) or the offset.
var (
	// ErrNoValidCopy: no env copy has a valid CRC and no default env was given.
	ErrNoValidCopy = errkind.New(errkind.Input, "ubootenv: no valid environment copy")
	// ErrNotBlank: a write was refused because no copy is valid and a copy is not blank
	// (all 0xff or all 0x00): the area holds something the config does not describe, such as
	// an env of another size, at another offset or with the other header. The error also
	// wraps ErrNoValidCopy.
	ErrNotBlank = errkind.New(errkind.Input, "ubootenv: refusing to write over an area that holds data but no valid environment copy")
	// ErrBadCRC: a copy's stored CRC does not match its data area.
	ErrBadCRC = errkind.New(errkind.Input, "ubootenv: bad CRC")
	// ErrTooLarge: the variables do not fit into the env size.
	ErrTooLarge = errkind.New(errkind.Input, "ubootenv: environment does not fit")
	// ErrCorrupt: the data area is not a NUL-terminated list of name=value strings.
	ErrCorrupt = errkind.New(errkind.Input, "ubootenv: corrupt environment data")
	// ErrConfig: fw_env.config (legacy or YAML) is malformed or describes an unusable layout.
	ErrConfig = errkind.New(errkind.Input, "ubootenv: bad fw_env.config")
	// ErrInvalidVar: a variable name or value cannot be stored (empty name, '=' or NUL in
	// the name, NUL in the value).
	ErrInvalidVar = errkind.New(errkind.Input, "ubootenv: invalid variable")
	// ErrNotWritable: the config's writelist does not allow changing the variable.
	ErrNotWritable = errkind.New(errkind.Input, "ubootenv: variable not in writelist")
	// ErrStorage: a storage backend failed or does not fit the layout (bad blocks
	// everywhere, misaligned geometry, short device).
	ErrStorage = errkind.New(errkind.Environment, "ubootenv: storage error")
	// ErrLock: the lock file could not be created or locked.
	ErrLock = errkind.New(errkind.Environment, "ubootenv: lock failed")
	// ErrUnsupported: the device type cannot be opened on this platform or by this package.
	ErrUnsupported = errkind.New(errkind.Environment, "ubootenv: unsupported")
)
