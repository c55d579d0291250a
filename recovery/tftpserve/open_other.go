//go:build !unix

package tftpserve

import "os"

// openFlags open a file to serve (no named pipes to guard against here).
const openFlags = os.O_RDONLY
