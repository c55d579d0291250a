package ubootenv

import "errors"

// Sentinel errors. Returned errors wrap one of these (test with errors.Is) and name the
// place: the config file and line, the env copy (1 or 2) or the offset.
var (
	// ErrNoValidCopy: no env copy has a valid CRC and no default env was given.
	ErrNoValidCopy = errors.New("ubootenv: no valid environment copy")
	// ErrNotBlank: a write was refused because no copy is valid and a copy is not blank
	// (all 0xff or all 0x00): the area holds something the config does not describe, such as
	// an env of another size, at another offset or with the other header. The error also
	// wraps ErrNoValidCopy.
	ErrNotBlank = errors.New("ubootenv: refusing to write over an area that holds data but no valid environment copy")
	// ErrBadCRC: a copy's stored CRC does not match its data area.
	ErrBadCRC = errors.New("ubootenv: bad CRC")
	// ErrTooLarge: the variables do not fit into the env size.
	ErrTooLarge = errors.New("ubootenv: environment does not fit")
	// ErrCorrupt: the data area is not a NUL-terminated list of name=value strings.
	ErrCorrupt = errors.New("ubootenv: corrupt environment data")
	// ErrConfig: fw_env.config (legacy or YAML) is malformed or describes an unusable layout.
	ErrConfig = errors.New("ubootenv: bad fw_env.config")
	// ErrInvalidVar: a variable name or value cannot be stored (empty name, '=' or NUL in
	// the name, NUL in the value).
	ErrInvalidVar = errors.New("ubootenv: invalid variable")
	// ErrNotWritable: the config's writelist does not allow changing the variable.
	ErrNotWritable = errors.New("ubootenv: variable not in writelist")
	// ErrStorage: a storage backend failed or does not fit the layout (bad blocks
	// everywhere, misaligned geometry, short device).
	ErrStorage = errors.New("ubootenv: storage error")
	// ErrLock: the lock file could not be created or locked.
	ErrLock = errors.New("ubootenv: lock failed")
	// ErrUnsupported: the device type cannot be opened on this platform or by this package.
	ErrUnsupported = errors.New("ubootenv: unsupported")
)
