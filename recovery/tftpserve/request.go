package tftpserve

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
)

// TFTP opcodes (RFC 1350) and error codes.
const (
	opRRQ   = 1
	opWRQ   = 2
	opERROR = 5

	codeNotFound     = 1
	codeAccess       = 2
	codeIllegal      = 4
	maxErrorPacket   = 512 // an ERROR packet we send, NUL included
	requestMaxFields = 64  // name, mode and 31 options: more is not a request anyone sends
)

// Request is one request a client sent to the server's port, as the log shows it.
type Request struct {
	Remote  net.Addr
	Write   bool              // a write request (always refused)
	Name    string            // as the client sent it
	Mode    string            // as the client sent it
	Options map[string]string // the options asked for (RFC 2347), names in lower case
	// File is what an accepted read request is served; Err says why a request was refused
	// (ErrOutside, ErrNotFound, ErrReadOnly, ErrMode, ErrMalformed).
	File *File
	Err  error
}

// parseRequest reads an RRQ or WRQ: opcode, name, NUL, mode, NUL, then option name, NUL,
// value, NUL pairs. ok is false for a packet that is no request at all (another opcode): it
// gets no answer. A request whose fields are not all NUL-terminated, or with an odd number
// of option fields, is returned with Err set to ErrMalformed.
func parseRequest(p []byte) (req Request, ok bool) {
	if len(p) < 2 {
		return req, false
	}
	switch binary.BigEndian.Uint16(p) {
	case opRRQ:
	case opWRQ:
		req.Write = true
	default:
		return req, false
	}
	fields := bytes.SplitN(p[2:], []byte{0}, requestMaxFields+1)
	last := len(fields) - 1
	if len(fields[last]) != 0 || last > requestMaxFields || last < 2 || last%2 != 0 {
		// Not NUL-terminated, too many fields, no mode, or an option without a value. Keep
		// what there is of the name and mode for the log.
		req.Name = string(fields[0])
		if last >= 1 {
			req.Mode = string(fields[1])
		}
		req.Err = ErrMalformed
		return req, true
	}
	req.Name, req.Mode = string(fields[0]), string(fields[1])
	for i := 2; i+1 < last; i += 2 {
		if req.Options == nil {
			req.Options = map[string]string{}
		}
		req.Options[strings.ToLower(string(fields[i]))] = string(fields[i+1])
	}
	return req, true
}

// check decides a parsed request: the catalog's file for a read request in octet mode of a
// name it holds, or why not.
func (req *Request) check(c *Catalog) {
	switch {
	case req.Err != nil:
	case req.Write:
		req.Err = ErrReadOnly
	case !strings.EqualFold(req.Mode, "octet"):
		req.Err = fmt.Errorf("%w: mode %q", ErrMode, req.Mode)
	default:
		f, err := c.Lookup(req.Name)
		if err != nil {
			req.Err = err
			return
		}
		req.File = &f
	}
}

// errorPacket is the TFTP ERROR packet that refuses a request with err.
func errorPacket(err error) []byte {
	code := uint16(codeIllegal)
	switch {
	case errors.Is(err, ErrNotFound):
		code = codeNotFound
	case errors.Is(err, ErrOutside), errors.Is(err, ErrReadOnly):
		code = codeAccess
	}
	msg := err.Error()
	if len(msg) > maxErrorPacket-5 {
		msg = msg[:maxErrorPacket-5]
	}
	p := binary.BigEndian.AppendUint16(nil, opERROR)
	p = binary.BigEndian.AppendUint16(p, code)
	p = append(p, msg...)
	return append(p, 0)
}
