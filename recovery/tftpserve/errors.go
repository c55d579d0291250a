package tftpserve

import "github.com/aduflash/aduflash/internal/errkind"

// Errors of Open, of refused requests (Request.Err) and of transfers (Meter.End).
var (
	// ErrNoTrust: the folder holds a signed image and no trusted key was given to check it.
	ErrNoTrust = errkind.New(errkind.Usage, "tftpserve: a signed image needs a trusted key (--pub or --keyring)")
	// ErrOutside: a requested name that could leave the folder (absolute, "..", backslash,
	// not a clean relative name); TFTP code 2.
	ErrOutside = errkind.New(errkind.Input, "access violation: the name is not a clean relative name inside the served folder")
	// ErrNotFound: a name the catalog does not hold; TFTP code 1.
	ErrNotFound = errkind.New(errkind.Usage, "file not found")
	// ErrReadOnly: a write request; TFTP code 2.
	ErrReadOnly = errkind.New(errkind.Input, "access violation: this server is read-only")
	// ErrMode: a transfer mode other than octet; TFTP code 4.
	ErrMode = errkind.New(errkind.Input, "illegal TFTP operation: only octet (binary) mode is served")
	// ErrMalformed: a request that is not opcode, name, NUL, mode, NUL[, options]; TFTP code 4.
	ErrMalformed = errkind.New(errkind.Input, "illegal TFTP operation: malformed request")
	// ErrNotServable: a file given to OpenFiles that is not a regular file, or whose name
	// another file of the list already has.
	ErrNotServable = errkind.New(errkind.Usage, "tftpserve: cannot serve the file")
	// ErrChanged: a file no longer holds what the catalog recorded when it was opened; the
	// transfer ends with a TFTP error before its last byte.
	ErrChanged = errkind.New(errkind.Input, "the file changed since the catalog was made (restart the server)")
	// ErrNoAck: a client of a windowed transfer that acknowledged nothing new through
	// Timeout × (Retries+1).
	ErrNoAck = errkind.New(errkind.Environment, "no acknowledgement from the client")
)
