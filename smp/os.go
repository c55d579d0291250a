package smp

import "context"

// Params is the device's answer to "mcumgr params".
type Params struct {
	BufSize  int `cbor:"buf_size" json:"buf_size"`
	BufCount int `cbor:"buf_count" json:"buf_count"`
}

// Echo sends s and returns what the device echoes.
func (c *Client) Echo(ctx context.Context, s string) (string, error) {
	var rsp struct {
		R string `cbor:"r"`
	}
	err := c.do(ctx, call{name: "echo", op: OpWrite, group: GroupOS, id: IDEcho}, map[string]string{"d": s}, &rsp)
	return rsp.R, err
}

// Reset asks the device to reset. It is sent once: a reset whose reply was lost may still
// have happened, and a second one would make MCUboot revert an image on test.
func (c *Client) Reset(ctx context.Context) error {
	return c.do(ctx, call{name: "reset", op: OpWrite, group: GroupOS, id: IDReset, once: true}, nil, nil)
}

// Params asks the device for its SMP buffer size and count (ErrNotSupported where it does
// not answer, as MCUboot's serial recovery).
func (c *Client) Params(ctx context.Context) (Params, error) {
	var p Params
	err := c.do(ctx, call{name: "mcumgr params", op: OpRead, group: GroupOS, id: IDParams}, nil, &p)
	return p, err
}

// OSInfo returns the device's OS/application info for format (uname-like letters such as
// "a" for all, "s" kernel name, "v" version; "" the device's default).
func (c *Client) OSInfo(ctx context.Context, format string) (string, error) {
	var req struct {
		Format string `cbor:"format,omitempty"`
	}
	req.Format = format
	var rsp struct {
		Output string `cbor:"output"`
	}
	err := c.do(ctx, call{name: "os info", op: OpRead, group: GroupOS, id: IDInfo}, req, &rsp)
	return rsp.Output, err
}
