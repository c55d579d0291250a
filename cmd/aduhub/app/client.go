package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
)

// apiClient talks to a running serve over its JSON API, with its API token.
type apiClient struct {
	base      string
	token     string
	tokenFrom string // where the token came from, for errors
	http      *http.Client
}

func newClient(base, token, tokenFrom string) *apiClient {
	return &apiClient{base: strings.TrimRight(base, "/"), token: token, tokenFrom: tokenFrom, http: &http.Client{}}
}

func serverFlag() cli.Flag {
	return &cli.StringFlag{Name: "server", Value: DefaultServer, EnvVars: []string{"ADUHUB_SERVER"},
		DefaultText: "the server of --data, else " + DefaultServer, Usage: "`URL` of the running aduhub serve"}
}

// clientFlags are the flags of every command that talks to serve: where it is and its token.
func clientFlags() []cli.Flag {
	return []cli.Flag{
		serverFlag(),
		&cli.StringFlag{Name: "data", Value: DefaultDataDir, TakesFile: true, Usage: "the data `DIR` of the server: its API token, and its address unless --server"},
		tokenFileFlag(),
	}
}

// clientOf makes the client of a command: --server (or the server serving --data, or the
// default address) with the API token (see clientToken).
func clientOf(c *cli.Context) (*apiClient, error) {
	s := c.String("server")
	if !c.IsSet("server") {
		if info, ok := readServeInfo(dataDirOf(c)); ok {
			s = info.HTTP
		}
	}
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		return nil, exitcode.Usagef("--server %q: want an http:// URL", s)
	}
	tok, from, err := clientToken(c)
	if err != nil {
		return nil, err
	}
	return newClient(s, tok, from), nil
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
	return a.send(req, out)
}

// send sends req with the token and decodes a 2xx answer into out (see do).
func (a *apiClient) send(req *http.Request, out any) error {
	ctx, method, u := req.Context(), req.Method, req.URL.String()
	req.Header.Set("Authorization", "Bearer "+a.token)
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
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("%w: aduhub at %s does not take the token from %s (its own is in the api-token file of its data folder; give that folder with --data, or --token-file)", errTokenRefused, a.base, a.tokenFrom)
	}
	if resp.StatusCode/100 != 2 {
		var ae apiError
		if json.Unmarshal(b, &ae) != nil || ae.Error == "" {
			return fmt.Errorf("%s %s: %s (is %s an aduhub server?)", method, u, resp.Status, a.base)
		}
		code := ae.ExitCode
		if code != exitcode.Invalid {
			code = exitcode.IO
		}
		return exitcode.WithCode(code, errors.New(ae.Error))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: answer: %w (is %s an aduhub server?)", method, u, err, a.base)
		}
	}
	return nil
}

// upload posts an import's upload (multipart/form-data, streamed): the import manifest, then
// the files.
func (a *apiClient) upload(ctx context.Context, path string, manifest []byte, files []*os.File, out any) error {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writeUpload(mw, manifest, files))
	}()
	defer func() {
		pr.Close()
		<-done
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+path, pr)
	if err != nil {
		return exitcode.Usagef("--server %q: %v", a.base, err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return a.send(req, out)
}

func writeUpload(mw *multipart.Writer, manifest []byte, files []*os.File) error {
	w, err := mw.CreateFormField(uploadManifestPart)
	if err != nil {
		return err
	}
	if _, err := w.Write(manifest); err != nil {
		return err
	}
	for _, f := range files {
		w, err := mw.CreateFormFile(uploadFilePart, filepath.Base(f.Name()))
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
	}
	return mw.Close()
}
