//go:build !unix

package hub

// openNonblock: no FIFOs to wait on here.
const openNonblock = 0
