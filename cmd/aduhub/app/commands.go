package app

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/internal/limitread"
	"github.com/aduflash/aduflash/manifestgen"
)

func (e *env) deviceCommand() *cli.Command {
	return &cli.Command{
		Name:  "device",
		Usage: "register, list and remove devices, renew their keys",
		Description: `EXAMPLE:
   aduhub device add dev1
   aduhub device list
   aduhub device renew-key dev1
   aduhub device remove dev1`,
		Subcommands: []*cli.Command{
			e.deviceAddCommand(),
			e.deviceRenewKeyCommand(),
			e.deviceListCommand(),
			e.deviceRemoveCommand(),
		},
	}
}

func (e *env) deviceAddCommand() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "register a device and print its connection string",
		ArgsUsage: "ID",
		Description: `Registers device ID with a new random SAS key and prints what its agent needs: the
connection string (agent.connection_string or connection_string_file), the CA certificate to
trust (agent.ca_file) and the root keys of the update signer (agent.root_keys, with
no_builtin_roots = true). The key is shown this once: adding a device that is registered
already is refused; aduhub device renew-key ID gives it a new key.

With --x509-thumbprint the device authenticates with its X.509 client certificate instead
(agent.x509_cert and agent.x509_key; TLS is needed, so not with serve --tls=false): the
hub accepts the certificate whose SHA-256 thumbprint (64 hex digits, ':' allowed) is given,
and the connection string is HostName=HOST;DeviceId=ID;x509=true. Adding it again with the
same thumbprint is fine; another thumbprint is refused.

HostName is the server's host name (serve --hostname, default localhost). By default it
asks the running server (--server, with the API token of --data or --token-file). With
--data it works on that data folder instead, also when no server runs (the device is there
when serve starts); if a server serves that folder, it goes through that server.

Exit codes: 0 registered, 1 invalid device id, or the device is registered already, 2 usage
error (also a --x509-thumbprint that is not 64 hex digits), 3 the server cannot be reached,
refuses the API token, or the data folder cannot be written.

EXAMPLE:
   aduhub device add dev1
   aduhub device add --data ./aduhub-data dev1
   aduhub device add --json dev1
   aduhub device add --x509-thumbprint "$(openssl x509 -in dev2.pem -noout -fingerprint -sha256 | cut -d= -f2)" dev2`,
		Flags: append(deviceFlags("register in"),
			&cli.StringFlag{Name: "x509-thumbprint", Usage: "register an X.509 device: the SHA-256 `THUMBPRINT` (hex) of its client certificate, instead of a SAS key"},
			cliapp.JSONFlag("the device's connection details")),
		Action: e.deviceAdd,
	}
}

func (e *env) deviceRenewKeyCommand() *cli.Command {
	return &cli.Command{
		Name:      "renew-key",
		Usage:     "give a device a new SAS key and print its new connection string",
		ArgsUsage: "ID",
		Description: `Gives SAS device ID a new random key, as regenerating a device's keys in IoT Hub does,
and prints the new connection string (and what else device add prints). The old key stops
working: a connected device is disconnected and cannot connect again with it.

By default it asks the running server (--server). With --data it works on that data folder
instead, also when no server runs; if a server serves that folder, it goes through that
server.

Exit codes: 0 renewed, 1 device ID is not registered or is an X.509 device, 2 usage error,
3 the server cannot be reached, refuses the API token, or the data folder cannot be written.

EXAMPLE:
   aduhub device renew-key dev1
   aduhub device renew-key --json dev1`,
		Flags:  append(deviceFlags("renew in"), cliapp.JSONFlag("the device's connection details")),
		Action: e.deviceRenewKey,
	}
}

func (e *env) deviceListCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list the registered devices with their connection and update state",
		ArgsUsage: " ",
		Description: `Shows every registered device: whether it is connected, its reported manufacturer/model,
the agent state (Idle, DeploymentInProgress, Failed), the installed update and the
deployment it follows. During a deployment it started, CONNECTED also says what the hub
infers: "installing U", "rebooting into U" (it left with a DISCONNECT, as an agent does to
boot the update) or "connection lost while installing U".

EXAMPLE:
   aduhub device list
   aduhub device list --json`,
		Flags:  append(clientFlags(), cliapp.JSONFlag("the devices")),
		Action: e.deviceList,
	}
}

func (e *env) deviceRemoveCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "remove a device: drop its connection, its key or certificate and its twin",
		ArgsUsage: "ID",
		Description: `Removes device ID as deleting a device in IoT Hub does: if it is connected, its
connection is closed; it cannot connect again with its key or certificate; its twin is
deleted. Deployments that list it keep its result, and cancel and retry leave it out.
Adding a device with the same ID later makes a new device (new key, empty twin).

By default it asks the running server (--server). With --data it works on that data folder
instead, also when no server runs; if a server serves that folder, it goes through that
server.

Exit codes: 0 removed, 1 device ID is not registered, 2 usage error, 3 the server cannot be
reached, refuses the API token, or the data folder cannot be read or written.

EXAMPLE:
   aduhub device remove dev1
   aduhub device remove --data ./aduhub-data dev1
   aduhub device remove --json dev1`,
		Flags:  append(deviceFlags("remove from"), cliapp.JSONFlag("the removed device")),
		Action: e.deviceRemove,
	}
}

// deviceFlags are the flags of the device commands that also work without a server.
func deviceFlags(verb string) []cli.Flag {
	return []cli.Flag{
		serverFlag(),
		&cli.StringFlag{Name: "data", Usage: verb + " the data `DIR`: through the server serving it (with its API token), else directly", TakesFile: true},
		tokenFileFlag(),
	}
}

// onRegistry runs a device command: through the server (--server, or the one serving --data),
// or, with --data and no server serving it, on the data folder itself (offline gets its
// absolute path).
func onRegistry(c *cli.Context, online func(*apiClient) error, offline func(dir string) error) error {
	if !c.IsSet("data") {
		cl, err := clientOf(c)
		if err != nil {
			return err
		}
		return online(cl)
	}
	dir, err := filepath.Abs(c.String("data"))
	if err != nil {
		return err
	}
	if info, ok := runningServer(c.Context, dir); ok {
		path := filepath.Join(dir, tokenFile)
		tok, err := readToken(path)
		if err != nil {
			return fmt.Errorf("%s is served by aduhub at %s: %w", dir, info.HTTP, err)
		}
		return online(newClient(info.HTTP, tok, path))
	}
	return offline(dir)
}

// withRegistry runs fn on the device registry of a data folder that no server serves; the
// API errors fn returns get the exit code the server would have given them (offlineErr).
func withRegistry(dir string, fn func(*hub.Hub) error) error {
	name, err := hostNameOf(dir, "")
	if err != nil {
		return err
	}
	h, err := hub.New(hub.Options{HostName: name, Address: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		return fmt.Errorf("device registry: %w", err)
	}
	defer h.Close()
	return offlineErr(fn(h))
}

func (e *env) deviceAdd(c *cli.Context) error {
	if err := cliapp.Args(c, 1, 1, "ID"); err != nil {
		return err
	}
	req := addRequest{DeviceID: c.Args().First()}
	if c.IsSet("x509-thumbprint") {
		tp, err := hub.ParseThumbprint(c.String("x509-thumbprint"))
		if err != nil {
			return exitcode.Usagef("--x509-thumbprint: %v", err)
		}
		req.X509Thumbprint = tp
	}
	added := &deviceAdded{}
	err := onRegistry(c, func(cl *apiClient) error {
		return cl.do(c.Context, http.MethodPost, "/api/devices", req, added)
	}, func(dir string) (err error) {
		added, err = addOffline(dir, req)
		return err
	})
	if err != nil {
		return err
	}
	x509 := added.X509Thumbprint != ""
	if x509 && added.MQTT != "" && !added.TLS {
		fmt.Fprintf(e.stderr, "aduhub: warning: the server runs without TLS (serve --tls=false): %s cannot connect with its certificate\n", added.DeviceID)
	}
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, added)
	}
	switch {
	case x509 && added.Created:
		fmt.Fprintf(e.stdout, "registered device %s (X.509)\n", added.DeviceID)
	case x509:
		fmt.Fprintf(e.stdout, "device %s was already registered (X.509) (certificate unchanged)\n", added.DeviceID)
	default:
		fmt.Fprintf(e.stdout, "registered device %s (its key is shown this once)\n", added.DeviceID)
	}
	e.printConnection(added)
	return nil
}

// addOffline registers a device in a data folder no server serves.
func addOffline(dir string, req addRequest) (*deviceAdded, error) {
	if err := checkDeviceID(req.DeviceID); err != nil {
		return nil, exitcode.InvalidInput(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	// The CA and the signer are made now if missing, so that the files named exist.
	if _, err := hub.LoadOrCreateCA(filepath.Join(dir, caDir)); err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	if _, err := hub.LoadOrCreateSigner(filepath.Join(dir, signerDir), nil, rootKID, signingKID, hub.DefaultSignerBits); err != nil {
		return nil, fmt.Errorf("update signer: %w", err)
	}
	var added *deviceAdded
	err := withRegistry(dir, func(h *hub.Hub) (err error) {
		added, err = registerDevice(h, req.DeviceID, req.X509Thumbprint)
		return err
	})
	if err != nil {
		return nil, err
	}
	return withFiles(added, dir), nil
}

// withFiles adds the files of the data folder dir a device needs (as serve would).
func withFiles(added *deviceAdded, dir string) *deviceAdded {
	added.TLS = true
	added.CAFile = filepath.Join(dir, caDir, hub.CACertFile)
	added.RootKeysFile = filepath.Join(dir, signerDir, hub.RootKeysJSONFile)
	return added
}

// printConnection prints what the device's agent needs.
func (e *env) printConnection(added *deviceAdded) {
	fmt.Fprintf(e.stdout, "connection string: %s\n", added.ConnectionString)
	if added.X509Thumbprint != "" {
		fmt.Fprintf(e.stdout, "authentication:    the device's X.509 client certificate, SHA-256 thumbprint %s   (agent.x509_cert, agent.x509_key)\n", added.X509Thumbprint)
	}
	if added.CAFile != "" {
		fmt.Fprintf(e.stdout, "CA certificate:    %s   (agent.ca_file)\n", added.CAFile)
	}
	fmt.Fprintf(e.stdout, "update root keys:  %s   (agent.root_keys, with no_builtin_roots = true)\n", added.RootKeysFile)
	if added.MQTT != "" {
		tls := "TLS"
		if !added.TLS {
			tls = "plain TCP"
		}
		fmt.Fprintf(e.stdout, "IoT Hub (MQTT):    %s (%s)\n", added.MQTT, tls)
	}
}

func (e *env) deviceRenewKey(c *cli.Context) error {
	if err := cliapp.Args(c, 1, 1, "ID"); err != nil {
		return err
	}
	id := c.Args().First()
	added := &deviceAdded{}
	err := onRegistry(c, func(cl *apiClient) error {
		return cl.do(c.Context, http.MethodPost, "/api/devices/"+url.PathEscape(id)+"/renew-key", struct{}{}, added)
	}, func(dir string) error {
		if err := registryExists(dir, id); err != nil {
			return err
		}
		return withRegistry(dir, func(h *hub.Hub) error {
			a, err := renewDeviceKey(h, id)
			if err == nil {
				added = withFiles(a, dir)
			}
			return err
		})
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, added)
	}
	fmt.Fprintf(e.stdout, "new key for device %s (the old one no longer connects; this one is shown this once)\n", id)
	e.printConnection(added)
	return nil
}

// registryExists checks that a data folder has a device registry, so that an offline
// command on a mistyped folder does not make one; a folder without one has no device id.
func registryExists(dir, id string) error {
	if _, err := os.Stat(filepath.Join(dir, "devices")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, derr := os.Stat(dir); derr == nil {
				return exitcode.InvalidInput(fmt.Errorf("device %q is not registered in %s", id, dir))
			}
		}
		return fmt.Errorf("data folder: %w", err)
	}
	return nil
}

// offlineErr gives an API error met without a server the exit code the server would have
// given it (4xx: 1).
func offlineErr(err error) error {
	var he *httpError
	if errors.As(err, &he) && he.status < 500 {
		return exitcode.InvalidInput(he.err)
	}
	return err
}

func (e *env) deviceRemove(c *cli.Context) error {
	if err := cliapp.Args(c, 1, 1, "ID"); err != nil {
		return err
	}
	id := c.Args().First()
	if id == "" {
		return exitcode.InvalidInput(errors.New(`device "" is not registered`))
	}
	where := ""
	err := onRegistry(c, func(cl *apiClient) error {
		return cl.do(c.Context, http.MethodDelete, "/api/devices/"+url.PathEscape(id), nil, nil)
	}, func(dir string) error {
		where = " from " + dir
		return removeOffline(dir, id)
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, deviceRemoved{DeviceID: id, Removed: true})
	}
	fmt.Fprintf(e.stdout, "removed device %s%s\n", id, where)
	return nil
}

// removeOffline removes the device from a data folder no server serves.
func removeOffline(dir, id string) error {
	if err := registryExists(dir, id); err != nil {
		return err
	}
	return withRegistry(dir, func(h *hub.Hub) error {
		err := removeDevice(h, id)
		var he *httpError
		if errors.As(err, &he) && he.status == http.StatusNotFound {
			return exitcode.InvalidInput(fmt.Errorf("device %q is not registered in %s", id, dir))
		}
		return err
	})
}

func (e *env) deviceList(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	cl, err := clientOf(c)
	if err != nil {
		return err
	}
	var devs []deviceInfo
	if err := cl.do(c.Context, http.MethodGet, "/api/devices", nil, &devs); err != nil {
		return err
	}
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, devs)
	}
	if len(devs) == 0 {
		fmt.Fprintln(e.stdout, "no devices (aduhub device add ID)")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tCONNECTED\tMODEL\tSTATE\tINSTALLED UPDATE\tDEPLOYMENT")
	for _, d := range devs {
		model := "-"
		if d.DeviceProperties != nil {
			model = d.DeviceProperties["manufacturer"] + "/" + d.DeviceProperties["model"]
		}
		conn := "no"
		if d.Connected {
			conn = "yes"
		}
		if d.Activity != "" {
			conn += " (" + d.Activity + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.DeviceID, conn, model, dash(stateName(d.State)), dash(d.InstalledUpdate), dash(d.Deployment))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (e *env) importCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "import an update: its import manifest and files",
		ArgsUsage: "FILE...",
		Description: `Imports an update into the running server like the Device Update service: the import
manifest (aduimport manifest create writes one) is checked against the service's limits,
every file it names must be given (matched by file name) with the size and hashes the
manifest says, the files are copied into the server's data folder and an update manifest
is made and signed. An update id can be imported once.

The files are uploaded to the server, which can run elsewhere. With --from-import-dir,
FILE... are paths inside the server's import folder (serve --import-dir) instead, which the
server reads itself: nothing is uploaded.

Exit codes: 0 imported, 1 invalid or mismatching manifest or files (also a manifest that is
not JSON), or the update is already there, 2 usage error, 3 a file cannot be read, or the
server cannot be reached or refuses the API token.

EXAMPLE:
   aduhub import --manifest contoso.toaster.2.0.importmanifest.json rootfs-2.0.aduimg
   aduhub import --json --manifest M.importmanifest.json fw.aduimg delta.bin
   aduhub import --from-import-dir --manifest M.importmanifest.json releases/2.0/fw.aduimg`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "manifest", Aliases: []string{"m"}, Usage: "the import manifest `FILE`", TakesFile: true},
			&cli.BoolFlag{Name: "from-import-dir", Usage: "FILE... are paths inside the server's import folder (serve --import-dir), not uploaded"},
			cliapp.JSONFlag("the imported update"),
		}, clientFlags()...),
		Action: e.importUpdate,
	}
}

func (e *env) importUpdate(c *cli.Context) error {
	if err := cliapp.Need(c, "manifest"); err != nil {
		return err
	}
	if err := cliapp.Args(c, 1, -1, "the update's FILE..."); err != nil {
		return err
	}
	cl, err := clientOf(c)
	if err != nil {
		return err
	}
	manifest, m, err := readImportManifest(c.String("manifest"))
	if err != nil {
		return err
	}
	var u hub.Update
	if c.Bool("from-import-dir") {
		req := importRequest{ImportManifest: string(manifest), Files: map[string]string{}}
		for _, f := range c.Args().Slice() {
			name := path.Base(filepath.ToSlash(f))
			if prev, dup := req.Files[name]; dup {
				return exitcode.Usagef("two files named %s: %s and %s", name, prev, f)
			}
			req.Files[name] = f
		}
		err = cl.do(c.Context, http.MethodPost, "/api/updates", req, &u)
	} else {
		var files []*os.File
		files, err = openUploads(m, c.Args().Slice())
		defer func() {
			for _, f := range files {
				f.Close()
			}
		}()
		if err == nil {
			err = cl.upload(c.Context, "/api/updates", manifest, files, &u)
		}
	}
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, u)
	}
	deployable := ""
	if !u.Deployable {
		deployable = ", not deployable on its own"
	}
	fmt.Fprintf(e.stdout, "imported %s (%d file(s)%s)\n", updateIDText(u.UpdateID), len(u.Files), deployable)
	for _, f := range u.Files {
		fmt.Fprintf(e.stdout, "  %s  %s  %d bytes  %s\n", f.ID, f.FileName, f.SizeInBytes, f.Kind)
	}
	return nil
}

// readImportManifest reads and parses an import manifest file: a file that is not JSON or
// is too large to be one (an image given for the manifest) is invalid input.
func readImportManifest(name string) ([]byte, *manifestgen.Manifest, error) {
	b, err := limitread.File(name, maxAPIBody)
	if errors.Is(err, limitread.ErrTooLarge) {
		return nil, nil, exitcode.InvalidInput(fmt.Errorf("%s: over %d bytes, so not an import manifest (aduimport manifest create writes one)", name, maxAPIBody))
	}
	if err != nil {
		return nil, nil, err
	}
	m, err := parseImportManifest(b)
	if err != nil {
		return nil, nil, exitcode.InvalidInput(fmt.Errorf("%s: %w", name, err))
	}
	return b, m, nil
}

// openUploads opens the files of an upload, in the order given, after checking them
// against the manifest (names and sizes), so that a mistake is found before any byte is sent.
func openUploads(m *manifestgen.Manifest, paths []string) (files []*os.File, err error) {
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			files = nil
		}
	}()
	sizes := hub.ImportFileSizes(m)
	given := map[string]string{}
	var problems []string
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return files, err
		}
		files = append(files, f)
		st, err := f.Stat()
		if err != nil {
			return files, err
		}
		if !st.Mode().IsRegular() {
			return files, exitcode.Usagef("%s is not a regular file", p)
		}
		name := filepath.Base(p)
		if prev, dup := given[name]; dup {
			return files, exitcode.Usagef("two files named %s: %s and %s", name, prev, p)
		}
		given[name] = p
		size, ok := sizes[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%q is not in the import manifest", name))
		case st.Size() != size:
			problems = append(problems, fmt.Sprintf("%s is %d bytes, the import manifest says %d", p, st.Size(), size))
		}
	}
	for name := range sizes {
		if _, ok := given[name]; !ok {
			problems = append(problems, fmt.Sprintf("%q is missing", name))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return files, exitcode.InvalidInput(fmt.Errorf("import files do not match the import manifest: %s", strings.Join(problems, "; ")))
	}
	return files, nil
}

func (e *env) deployCommand() *cli.Command {
	return &cli.Command{
		Name:      "deploy",
		Usage:     "deploy an imported update to a group of devices",
		ArgsUsage: " ",
		Description: `Deploys the update to every registered device whose reported deviceProperties contain all
of --group (none: every device) and match one of the update's compatibility sets. The
devices get the update in their desired twin (deviceUpdate.service); follow them with
aduhub status. A device following another deployment moves to this one.

Exit codes: 0 deployed, 1 unknown or non-deployable update, or no device matches, 2 usage
error, 3 the server cannot be reached.

EXAMPLE:
   aduhub deploy --update Contoso/Toaster/2.0
   aduhub deploy --update Contoso/Toaster/2.0 --group ring=canary,hwrev=2 --json`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "update", Aliases: []string{"u"}, Usage: "the update as `PROVIDER/NAME/VERSION`"},
			&cli.StringFlag{Name: "group", Usage: "only devices whose deviceProperties have all of `k=v,...`"},
			cliapp.JSONFlag("the deployment"),
		}, clientFlags()...),
		Action: e.deploy,
	}
}

func (e *env) deploy(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	if err := cliapp.Need(c, "update"); err != nil {
		return err
	}
	uid, err := parseUpdateID(c.String("update"))
	if err != nil {
		return exitcode.Usagef("--update: %v", err)
	}
	group, err := parseGroup(c.String("group"))
	if err != nil {
		return exitcode.Usagef("--group: %v", err)
	}
	cl, err := clientOf(c)
	if err != nil {
		return err
	}
	var resp deployResponse
	if err := cl.do(c.Context, http.MethodPost, "/api/deployments", deployRequest{UpdateID: uid, Group: group}, &resp); err != nil {
		return err
	}
	if resp.Warning != "" {
		fmt.Fprintf(e.stderr, "aduhub: warning: %s\n", resp.Warning)
	}
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, resp.Deployment)
	}
	d := resp.Deployment
	fmt.Fprintf(e.stdout, "deployment %s: %s to %d device(s) (%s): %s\n", d.ID, updateIDText(d.UpdateID), len(d.Devices), groupText(d.Group), strings.Join(d.Devices, ", "))
	return nil
}

// parseGroup reads k=v,k=v.
func parseGroup(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	g := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want k=v[,k=v...]", kv)
		}
		if _, dup := g[k]; dup {
			return nil, fmt.Errorf("%s given twice", k)
		}
		g[k] = v
	}
	return g, nil
}

func (e *env) cancelCommand() *cli.Command {
	return &cli.Command{
		Name:      "cancel",
		Usage:     "cancel a deployment",
		ArgsUsage: "DEPLOYMENT",
		Description: `Cancels the deployment like the service: every device still following it is told
"nodeployment" (workflow action 255); devices in progress count as Cancelled, those that
succeeded or failed keep their result.

Exit codes: 0 cancelled, 1 unknown or already cancelled deployment, 2 usage error, 3 the
server cannot be reached.

EXAMPLE:
   aduhub cancel 6f1c2d0e-3a4b-4c5d-8e9f-0a1b2c3d4e5f`,
		Flags:  append(clientFlags(), cliapp.JSONFlag("the deployment")),
		Action: e.cancel,
	}
}

func (e *env) cancel(c *cli.Context) error {
	var st hub.DeploymentStatus
	return e.deploymentAction(c, "cancel", &st, func(id string) string {
		return fmt.Sprintf("deployment %s cancelled: %s", id, countsText(st.Counts))
	})
}

// deploymentAction runs a command that asks the server for an action (cancel, retry) on the
// deployment its argument names, and prints the answer, which it decodes into res: as JSON,
// or as the line that line makes of it.
func (e *env) deploymentAction(c *cli.Context, action string, res any, line func(id string) string) error {
	if err := cliapp.Args(c, 1, 1, "DEPLOYMENT"); err != nil {
		return err
	}
	id := c.Args().First()
	cl, err := clientOf(c)
	if err != nil {
		return err
	}
	if err := cl.do(c.Context, http.MethodPost, "/api/deployments/"+url.PathEscape(id)+"/"+action, struct{}{}, res); err != nil {
		return err
	}
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, res)
	}
	fmt.Fprintln(e.stdout, line(id))
	return nil
}

func (e *env) retryCommand() *cli.Command {
	return &cli.Command{
		Name:      "retry",
		Usage:     "retry the failed devices of a deployment",
		ArgsUsage: "DEPLOYMENT",
		Description: `Retries the devices whose result in the deployment is Failed, like the portal's "retry
failed devices": they get the same deployment again with a new workflow.retryTimestamp and
are in progress again.

Exit codes: 0 retried, 1 unknown or cancelled deployment, or no failed devices, 2 usage
error, 3 the server cannot be reached.

EXAMPLE:
   aduhub retry 6f1c2d0e-3a4b-4c5d-8e9f-0a1b2c3d4e5f`,
		Flags:  append(clientFlags(), cliapp.JSONFlag("the devices retried and the deployment")),
		Action: e.retry,
	}
}

func (e *env) retry(c *cli.Context) error {
	var resp retryResponse
	return e.deploymentAction(c, "retry", &resp, func(id string) string {
		return fmt.Sprintf("deployment %s: retrying %d device(s): %s", id, len(resp.Retried), strings.Join(resp.Retried, ", "))
	})
}

func (e *env) statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show deployments and their per-device results",
		ArgsUsage: "[DEPLOYMENT]",
		Description: `Shows one deployment (or all, oldest first) as the portal does: the update, the group,
the counts, and per device its result (InProgress, Succeeded, Failed, Cancelled), the last
agent state, the result code, the extended result codes (hex, root code first), the result
details and the update the device reports installed.

Exit codes: 0 shown, 1 unknown deployment, 2 usage error, 3 the server cannot be reached.

EXAMPLE:
   aduhub status
   aduhub status --json 6f1c2d0e-3a4b-4c5d-8e9f-0a1b2c3d4e5f`,
		Flags:  append(clientFlags(), cliapp.JSONFlag("the deployment (an array of all without DEPLOYMENT)")),
		Action: e.status,
	}
}

func (e *env) status(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 1, "[DEPLOYMENT]"); err != nil {
		return err
	}
	cl, err := clientOf(c)
	if err != nil {
		return err
	}
	if c.NArg() == 1 {
		var st hub.DeploymentStatus
		if err := cl.do(c.Context, http.MethodGet, "/api/deployments/"+url.PathEscape(c.Args().First()), nil, &st); err != nil {
			return err
		}
		if c.Bool("json") {
			return cliapp.WriteJSON(e.stdout, st)
		}
		return printDeployment(e.stdout, &st)
	}
	var all []hub.DeploymentStatus
	if err := cl.do(c.Context, http.MethodGet, "/api/deployments", nil, &all); err != nil {
		return err
	}
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, all)
	}
	if len(all) == 0 {
		fmt.Fprintln(e.stdout, "no deployments (aduhub deploy --update provider/name/version)")
	}
	for i := range all {
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		if err := printDeployment(e.stdout, &all[i]); err != nil {
			return err
		}
	}
	return nil
}

func countsText(n hub.DeviceCounts) string {
	return fmt.Sprintf("%d succeeded, %d failed, %d in progress, %d cancelled", n.Succeeded, n.Failed, n.InProgress, n.Cancelled)
}

func printDeployment(w io.Writer, d *hub.DeploymentStatus) error {
	state := "active"
	if d.Cancelled {
		state = "cancelled"
	}
	fmt.Fprintf(w, "deployment %s  %s  group %s  created %s  %s", d.ID, updateIDText(d.UpdateID), groupText(d.Group),
		timeText(d.CreatedAt), state)
	if d.RetryTimestamp != "" {
		fmt.Fprintf(w, "  retried %s", d.RetryTimestamp)
	}
	fmt.Fprintf(w, "\n  %s\n", countsText(d.Counts))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  DEVICE\tSTATE\tAGENT STATE\tRESULT CODE\tEXTENDED RESULT CODES\tINSTALLED UPDATE\tDETAILS")
	for _, r := range d.Results {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.DeviceID, resultText(r), dash(stateName(r.AgentState)), r.ResultCode,
			dash(r.ExtendedResultCodes), dash(updateText(r.InstalledUpdateID)), dash(r.ResultDetails))
	}
	return tw.Flush()
}
