package app

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/hub"
)

func (e *env) enrollmentCommand() *cli.Command {
	return &cli.Command{
		Name:  "enrollment",
		Usage: "enroll devices in the hub's Device Provisioning Service (DPS): add, list, remove",
		Description: `The hub is also a Device Provisioning Service, on its MQTT port: a device enrolled here
registers (aduagent: provisioning = "dps") and is assigned to this hub, which registers it
under its registration id with the key or certificate it registered with.

An enrollment group (--group NAME) has a group key; each device's key is derived from it
and the device's registration id (HMAC-SHA256), so one key in the factory image enrolls
every device (agent.group_key_file). An individual enrollment (ID = the registration id)
has its own key (agent.symmetric_key_file) or an X.509 certificate (--x509-thumbprint).

EXAMPLE:
   aduhub enrollment add --group toasters
   aduhub enrollment add toaster-0001
   aduhub enrollment list
   aduhub enrollment remove toasters`,
		Subcommands: []*cli.Command{e.enrollmentAddCommand(), e.enrollmentListCommand(), e.enrollmentRemoveCommand()},
	}
}

func (e *env) enrollmentAddCommand() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "add an individual enrollment or an enrollment group and print its key",
		ArgsUsage: "ID",
		Description: `Adds enrollment ID with a new random key, shown this once: an individual enrollment (ID
is the device's registration id), or with --group an enrollment group (ID names it). With
--x509-thumbprint the individual enrollment authenticates with the device's client
certificate instead (its SHA-256 thumbprint; the certificate's common name is the
registration id). Adding an ID that exists replaces it: a new key for its next
registration; devices registered before keep their hub identity.

By default it asks the running server (--server). With --data it works on that data
folder instead, also when no server runs.

Exit codes: 0 added, 1 invalid ID or thumbprint, 2 usage error, 3 the server cannot be
reached or the data folder cannot be written.

EXAMPLE:
   aduhub enrollment add --group toasters
   aduhub enrollment add --json toaster-0001`,
		Flags: append(deviceFlags("enroll in"),
			&cli.BoolFlag{Name: "group", Usage: "an enrollment group: devices derive their keys from its key"},
			&cli.StringFlag{Name: "x509-thumbprint", Usage: "an individual X.509 enrollment: the SHA-256 `THUMBPRINT` (hex) of the device's certificate"},
			cliapp.JSONFlag("the enrollment with its key")),
		Action: e.enrollmentAdd,
	}
}

func (e *env) enrollmentListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list the enrollments (without their keys)",
		ArgsUsage: " ",
		Description: `EXAMPLE:
   aduhub enrollment list
   aduhub enrollment list --json`,
		Flags:  append(deviceFlags("list in"), cliapp.JSONFlag("the enrollments")),
		Action: e.enrollmentList,
	}
}

func (e *env) enrollmentRemoveCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "remove an enrollment: its devices can no longer register (those registered stay)",
		ArgsUsage: "ID",
		Description: `Removes enrollment ID. Devices it registered stay registered in the hub (remove them
with aduhub device remove to revoke them), as in DPS.

Exit codes: 0 removed, 1 no such enrollment, 2 usage error, 3 the server cannot be reached
or the data folder cannot be written.

EXAMPLE:
   aduhub enrollment remove toasters`,
		Flags:  append(deviceFlags("remove from"), cliapp.JSONFlag("the removed enrollment")),
		Action: e.enrollmentRemove,
	}
}

// enrollmentInfo is an enrollment as the API shows it: the key only when it was just made.
type enrollmentInfo struct {
	ID             string `json:"id"`
	Group          bool   `json:"group"`
	Authentication string `json:"authentication"` // "sas" or "x509"
	Key            string `json:"key,omitempty"`
	X509Thumbprint string `json:"x509Thumbprint,omitempty"`
	IDScope        string `json:"idScope"`
}

type enrollmentRequest struct {
	ID             string `json:"id"`
	Group          bool   `json:"group,omitempty"`
	X509Thumbprint string `json:"x509Thumbprint,omitempty"`
}

func infoOf(h *hub.Hub, en hub.Enrollment) enrollmentInfo {
	i := enrollmentInfo{ID: en.ID, Group: en.Group, Authentication: "sas", X509Thumbprint: en.Thumbprint, IDScope: h.IDScope()}
	if en.Thumbprint != "" {
		i.Authentication = "x509"
	}
	return i
}

// addEnrollment adds req with a new random key (or its thumbprint) and returns it with
// the key.
func addEnrollment(h *hub.Hub, req enrollmentRequest) (*enrollmentInfo, error) {
	en := hub.Enrollment{ID: req.ID, Group: req.Group, Thumbprint: req.X509Thumbprint}
	if en.Thumbprint == "" {
		en.Key = newKey()
	}
	if err := h.AddEnrollment(en); err != nil {
		return nil, &httpError{http.StatusBadRequest, err}
	}
	i := infoOf(h, en)
	i.Key = en.Key
	return &i, nil
}

func listEnrollments(h *hub.Hub) []enrollmentInfo {
	out := []enrollmentInfo{}
	for _, en := range h.Enrollments() {
		out = append(out, infoOf(h, en))
	}
	return out
}

func removeEnrollment(h *hub.Hub, id string) error {
	if err := h.RemoveEnrollment(id); err != nil {
		if errors.Is(err, hub.ErrUnknownEnrollment) {
			return &httpError{http.StatusNotFound, fmt.Errorf("no enrollment %q", id)}
		}
		return &httpError{http.StatusInternalServerError, err}
	}
	return nil
}

// newKey is a new random base64 SAS key (32 bytes).
func newKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// onEnrollments runs an enrollment command through the server's API (online) or on the
// data folder's hub (offline).
func onEnrollments(c *cli.Context, online func(*apiClient) error, offline func(*hub.Hub) error) error {
	return onRegistry(c, online, func(dir string) error { return withRegistry(dir, offline) })
}

func (e *env) enrollmentAdd(c *cli.Context) error {
	if err := cliapp.Args(c, 1, 1, "ID"); err != nil {
		return err
	}
	req := enrollmentRequest{ID: c.Args().First(), Group: c.Bool("group")}
	if c.IsSet("x509-thumbprint") {
		tp, err := hub.ParseThumbprint(c.String("x509-thumbprint"))
		if err != nil {
			return exitcode.Usagef("--x509-thumbprint: %v", err)
		}
		if req.Group {
			return exitcode.Usagef("--x509-thumbprint is for individual enrollments, not with --group")
		}
		req.X509Thumbprint = tp
	}
	added := &enrollmentInfo{}
	err := onEnrollments(c, func(cl *apiClient) error {
		return cl.do(c.Context, http.MethodPost, "/api/enrollments", req, added)
	}, func(h *hub.Hub) (err error) {
		added, err = addEnrollment(h, req)
		return err
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, added)
	}
	kind, keyKey := "individual enrollment", "agent.symmetric_key_file"
	if added.Group {
		kind, keyKey = "enrollment group", "agent.group_key_file"
	}
	fmt.Fprintf(e.stdout, "added %s %s (id scope %s)\n", kind, added.ID, added.IDScope)
	if added.Key != "" {
		fmt.Fprintf(e.stdout, "key (shown this once): %s   (%s)\n", added.Key, keyKey)
	} else {
		fmt.Fprintf(e.stdout, "authentication: the device's X.509 certificate, SHA-256 thumbprint %s   (agent.x509_cert, agent.x509_key)\n", added.X509Thumbprint)
	}
	return nil
}

func (e *env) enrollmentList(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	var list []enrollmentInfo
	err := onEnrollments(c, func(cl *apiClient) error {
		return cl.do(c.Context, http.MethodGet, "/api/enrollments", nil, &list)
	}, func(h *hub.Hub) error {
		list = listEnrollments(h)
		return nil
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, list)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tAUTHENTICATION\tID SCOPE")
	for _, en := range list {
		kind := "individual"
		if en.Group {
			kind = "group"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", en.ID, kind, en.Authentication, en.IDScope)
	}
	return tw.Flush()
}

func (e *env) enrollmentRemove(c *cli.Context) error {
	if err := cliapp.Args(c, 1, 1, "ID"); err != nil {
		return err
	}
	id := c.Args().First()
	err := onEnrollments(c, func(cl *apiClient) error {
		return cl.do(c.Context, http.MethodDelete, "/api/enrollments/"+url.PathEscape(id), nil, nil)
	}, func(h *hub.Hub) error { return removeEnrollment(h, id) })
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, map[string]any{"id": id, "removed": true})
	}
	fmt.Fprintf(e.stdout, "removed enrollment %s\n", id)
	return nil
}

// API handlers.

func (s *server) addEnrollment(w http.ResponseWriter, r *http.Request) {
	var req enrollmentRequest
	if err := decodeBody(r, &req); err != nil {
		writeAPIError(w, err)
		return
	}
	added, err := addEnrollment(s.hub, req)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	s.log.Info("enrollment added", "enrollment", added.ID, "group", added.Group)
	writeAPI(w, http.StatusCreated, added)
}

func (s *server) removeEnrollment(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := removeEnrollment(s.hub, id); err != nil {
		writeAPIError(w, err)
		return
	}
	s.log.Info("enrollment removed", "enrollment", id)
	writeAPI(w, http.StatusOK, map[string]any{"id": id, "removed": true})
}
