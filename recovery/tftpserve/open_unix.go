//go:build unix

package tftpserve

import (
	"os"
	"syscall"
)

// openFlags open a file to serve without blocking: a file replaced by a named pipe since the
// catalog was made must not hang the transfer in open (it is then refused as not regular).
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK
