package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
)

// apiClient talks to a running serve over its JSON API.
type apiClient struct {
	base string
	http *http.Client
}

func newClient(base string) *apiClient {
	return &apiClient{base: strings.TrimRight(base, "/"), http: &http.Client{}}
}

func serverFlag() cli.Flag {
	return &cli.StringFlag{Name: "server", Value: DefaultServer, EnvVars: []string{"ADUHUB_SERVER"},
		Usage: "`URL` of the running aduhub serve (its --http address)"}
}

func jsonFlag(what string) cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print " + what + " as JSON"}
}

func clientOf(c *cli.Context) (*apiClient, error) {
	s := c.String("server")
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		return nil, exitcode.Usagef("--server %q: want an http:// URL", s)
	}
	return newClient(s), nil
}

// do sends a request (body marshalled as JSON unless nil) and decodes a 2xx answer into out.
// An API error comes back with the exit code the server chose (1: the request's fault, 3: the
// server's); a server that cannot be reached is an I/O error (3).
func (a *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return exitcode.Usagef("--server %q: %v", a.base, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("cannot reach aduhub at %s (is `aduhub serve` running? --server names another): %w", a.base, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, a.base+path, err)
	}
	if resp.StatusCode/100 != 2 {
		var ae apiError
		if json.Unmarshal(b, &ae) != nil || ae.Error == "" {
			return fmt.Errorf("%s %s: %s (is %s an aduhub server?)", method, a.base+path, resp.Status, a.base)
		}
		code := ae.ExitCode
		if code != exitcode.Invalid {
			code = exitcode.IO
		}
		return exitcode.WithCode(code, errors.New(ae.Error))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: answer: %w (is %s an aduhub server?)", method, a.base+path, err, a.base)
		}
	}
	return nil
}
