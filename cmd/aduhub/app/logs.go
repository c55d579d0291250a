package app

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/hub"
)

// Remote log collection: POST /api/devices/{id}/logs writes a request into the device's
// desired diagnosticInformation.service with a SAS URL of serve's own blob stand-in (/blobs/,
// one container per collection, files in the data folder's logs/); GET
// /api/devices/{id}/logs/{op} tells what the device reported and which blobs arrived.

const logsDir = "logs" // in the data folder: <operation id>/<device>/<operation id>/...

// logCollection is the API's view of one collection.
type logCollection struct {
	DeviceID    string        `json:"deviceId"`
	OperationID string        `json:"operationId"`
	ResultCode  *int          `json:"resultCode"` // nil: the device has not reported it yet
	Blobs       []hub.LogBlob `json:"blobs"`
	Folder      string        `json:"folder"` // where serve keeps them
}

// logStore opens serve's blob stand-in (once).
func (s *server) logStore() (*hub.LogStore, error) {
	s.logsOnce.Do(func() { s.logs, s.logsErr = hub.NewLogStore(filepath.Join(s.info.DataDir, logsDir)) })
	return s.logs, s.logsErr
}

// blobs serves the uploads: authorised by each container's SAS token, not the API token.
func (s *server) blobs(w http.ResponseWriter, r *http.Request) {
	st, err := s.logStore()
	if err != nil {
		writeAPIError(w, err)
		return
	}
	http.StripPrefix("/blobs", st).ServeHTTP(w, r)
}

func (s *server) startLogs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st, err := s.logStore()
	if err != nil {
		writeAPIError(w, err)
		return
	}
	b := make([]byte, 8)
	rand.Read(b)
	op := time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
	sas, err := st.SASURL(strings.TrimSuffix(s.info.FileBaseURL, "/files")+"/blobs", op)
	if err == nil {
		_, err = s.hub.StartLogCollection(id, op, sas)
	}
	if err != nil {
		writeAPIError(w, &httpError{status: http.StatusNotFound, err: fmt.Errorf("device %s: %w", id, err)})
		return
	}
	writeAPI(w, http.StatusCreated, logCollection{DeviceID: id, OperationID: op, Folder: filepath.Join(s.info.DataDir, logsDir, op)})
}

func (s *server) showLogs(w http.ResponseWriter, r *http.Request) {
	id, op := r.PathValue("id"), r.PathValue("op")
	st, err := s.logStore()
	if err != nil {
		writeAPIError(w, err)
		return
	}
	res, err := s.hub.LogCollection(id)
	if err != nil {
		writeAPIError(w, &httpError{status: http.StatusNotFound, err: fmt.Errorf("device %s: %w", id, err)})
		return
	}
	out := logCollection{DeviceID: id, OperationID: op, Folder: filepath.Join(s.info.DataDir, logsDir, op)}
	if res.OperationID == op {
		out.ResultCode = res.ResultCode
	}
	if out.Blobs, err = st.Blobs(op, ""); err != nil {
		writeAPIError(w, &httpError{status: http.StatusBadRequest, err: err})
		return
	}
	writeAPI(w, http.StatusOK, out)
}

func (e *env) logsCommand() *cli.Command {
	return &cli.Command{
		Name:  "logs",
		Usage: "collect a device's logs (the diagnosticInformation component)",
		Description: `EXAMPLE:
   aduhub logs collect board-1`,
		Subcommands: []*cli.Command{{
			Name:      "collect",
			Usage:     "ask a device to upload its logs, wait for them and list them",
			ArgsUsage: "DEVICE",
			Description: `Writes a log collection request into the device's desired diagnosticInformation.service
(as the Device Update service does) with a SAS URL of aduhub's own blob store (/blobs/ on
its HTTP address), waits up to --timeout for the device's result and lists the files it
uploaded (kept in the data folder's logs/<operation id>/). The device uploads what its
[agent.diagnostics] names; it sends logs over plain http only to a loopback address, so a
device on another machine needs aduhub behind https.

Exit codes: 0 uploaded (resultCode 200); 1 the device reported a failure (its resultCode),
or no result within --timeout, or an unknown device; 2 usage error; 3 the server cannot be
reached.

EXAMPLE:
   aduhub logs collect board-1
   aduhub logs collect --timeout 5m --json board-1`,
			Flags: append(clientFlags(), cliapp.JSONFlag("the collection"),
				&cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "how long to wait for the device's result"}),
			Action: e.logsCollect,
		}},
	}
}

func (e *env) logsCollect(c *cli.Context) error {
	cl, err := deviceClient(c)
	if err != nil {
		return err
	}
	dev := url.PathEscape(c.Args().First())
	var lc logCollection
	if err := cl.do(c.Context, http.MethodPost, "/api/devices/"+dev+"/logs", struct{}{}, &lc); err != nil {
		return err
	}
	deadline := time.Now().Add(c.Duration("timeout"))
	for lc.ResultCode == nil && time.Now().Before(deadline) {
		select {
		case <-c.Context.Done():
			return c.Context.Err()
		case <-time.After(500 * time.Millisecond):
		}
		if err := cl.do(c.Context, http.MethodGet, "/api/devices/"+dev+"/logs/"+url.PathEscape(lc.OperationID), nil, &lc); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		if err := cliapp.WriteJSON(e.stdout, lc); err != nil {
			return err
		}
	} else {
		for _, b := range lc.Blobs {
			fmt.Fprintf(e.stdout, "%10d  %s\n", b.Size, filepath.Join(lc.Folder, filepath.FromSlash(b.Name)))
		}
	}
	switch {
	case lc.ResultCode == nil:
		return exitcode.InvalidInput(fmt.Errorf("%s: no result for log collection %s within %v", lc.DeviceID, lc.OperationID, c.Duration("timeout")))
	case *lc.ResultCode != 200:
		return exitcode.InvalidInput(fmt.Errorf("%s: log collection %s failed: resultCode %d (docs/agent.md lists them)", lc.DeviceID, lc.OperationID, *lc.ResultCode))
	}
	if !c.Bool("json") {
		fmt.Fprintf(e.stdout, "%s: %d files uploaded (log collection %s)\n", lc.DeviceID, len(lc.Blobs), lc.OperationID)
	}
	return nil
}

// deviceClient checks that the command has one argument, DEVICE, and returns the client of
// the server.
func deviceClient(c *cli.Context) (*apiClient, error) {
	if err := cliapp.Args(c, 1, 1, "DEVICE"); err != nil {
		return nil, err
	}
	return clientOf(c)
}
