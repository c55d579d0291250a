package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/internal/atomicfile"
)

// Defaults of serve and of the commands that talk to it.
const (
	DefaultDataDir  = "aduhub-data"
	DefaultMQTTAddr = "127.0.0.1:8883"
	DefaultHTTPAddr = "127.0.0.1:8080"
	DefaultServer   = "http://127.0.0.1:8080"
	// HostName is the IoT Hub host name of the stand-in: devices put it in their connection
	// string and dial it (port 8883).
	HostName = "localhost"
)

// Layout of the data folder besides the hub's own devices/, updates/, files/, deployments/.
const (
	caDir         = hub.LocalCADir     // ca.pem for devices (agent.ca_file)
	signerDir     = hub.LocalSignerDir // rootkeys.json for devices (agent.root_keys)
	serveInfoFile = "serve.json"       // written while serve runs: where it listens
	rootKID       = "ADU.aduhub.R"
	signingKID    = "ADU.aduhub.S"
)

func (e *env) serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "run the local IoT Hub (MQTT) and Device Update service (HTTP API, files, web page)",
		ArgsUsage: " ",
		Description: `Runs until interrupted (Ctrl-C, SIGTERM):
  - IoT Hub toward devices on --mqtt: MQTT 3.1.1 over TLS with a local CA (made in the data
    folder on first use: ca/ca.pem, what a device's agent.ca_file names), SAS tokens checked
    against the registered device keys (or X.509 client certificates), device twins. Devices
    dial the host name (--hostname, default localhost) on port 8883; an agent given another
    --mqtt port needs hub_address in its [agent] section.
  - on --http: the update files under /files/ (with Range; anyone who has a file's URL may
    download it, as from the service's CDN, and the URLs hold an unguessable id), the JSON
    API the other commands use (/api/), and a web page at / (devices, updates,
    deployments; deploy, cancel and retry buttons; refreshed every 2 s). The API and the
    page need the API token: serve makes it on first use in DIR/api-token (mode 0600); the
    other commands read it there (--data) and send it as "Authorization: Bearer TOKEN"; a
    browser gets a session by opening the /login?token=TOKEN URL serve prints.
Everything (device registry and twins, CA, update signer, API token, imported updates and
their files, deployments) is kept in --data and survives a restart. The signer's public root
key is in DIR/signer/rootkeys.json: a device trusts it with agent.root_keys (and
no_builtin_roots = true). While serving, DIR/serve.json says where; it is removed on exit.

--hostname NAME (a DNS name or an IP address) is the name devices use to reach this machine
from elsewhere (a network namespace, a board on the bench): it goes into the connection
strings (HostName=NAME), the MQTT server certificate and the update file URLs, and is
remembered in the data folder. Both listeners are on 127.0.0.1 by default; another address
(0.0.0.0, a LAN address) needs --expose-to-network, and then whoever reaches this machine can
try device keys on MQTT, download update files whose URL they know, and try API tokens.

Import requests carry the files (aduhub import uploads them). With --import-dir DIR they may
instead name regular files inside DIR by relative path; nothing outside DIR is read.

The Device Update import API (POST /deviceUpdate/INSTANCE/updates:import, its operations and
GET of an update; what aduimport publish calls) is served on --http with the API token as
the bearer token. Its requests name the files by URL, which the server then fetches: only
http(s) URLs on a --blob-host HOST[:PORT] (none by default: the API refuses every import),
without redirects, no more bytes than the manifest gives each file.

Exit codes: 0 stopped by a signal, 2 usage error (also a non-loopback address without
--expose-to-network), 3 an address in use, the data folder not writable, or DIR already
served by another aduhub.

EXAMPLE:
   aduhub serve
   aduhub serve --data ./hub --http 127.0.0.1:9090
   aduhub serve --tls=false --mqtt 127.0.0.1:1883
   aduhub serve --hostname bench-pc.local --mqtt 0.0.0.0:8883 --http 0.0.0.0:8080 --expose-to-network
   aduhub serve --file-url https://cache.example.com/adu   (devices download from there)`,
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "mqtt", Value: DefaultMQTTAddr, Usage: "MQTT (IoT Hub) listen `ADDR`"},
			&cli.StringFlag{Name: "http", Value: DefaultHTTPAddr, Usage: "HTTP (web page, API, files) listen `ADDR`"},
			&cli.StringFlag{Name: "hostname", Usage: "the host `NAME` or IP address devices reach this machine by: in connection strings, the MQTT server certificate and file URLs (default: the one remembered in the data folder, else localhost)"},
			&cli.BoolFlag{Name: "expose-to-network", Usage: "allow --mqtt and --http addresses other than loopback: MQTT (device keys and certificates) and HTTP (update files by URL; API and web page by token) become reachable from the network"},
			&cli.StringFlag{Name: "import-dir", Usage: "let import requests name regular files inside `DIR` instead of uploading them", TakesFile: true},
			&cli.StringSliceFlag{Name: "blob-host", Usage: "let updates:import requests (aduimport publish) name files on `HOST[:PORT]` (a Blob Storage endpoint, e.g. Azurite's 127.0.0.1:10000); repeat for more"},
			&cli.StringFlag{Name: "file-url", Usage: "the base `URL` devices download update files from (default: http://HOSTNAME:PORT/files of --http); for a proxy or a cache in front of this server that passes …/FILEID/NAME on to /files/FILEID/NAME"},
			&cli.BoolFlag{Name: "tls", Value: true, Usage: "MQTT over TLS with the local CA (--tls=false: plain TCP, for clients that allow it)"},
			&cli.IntFlag{Name: "max-conns-per-client", Value: defaultMaxConnsPerClient, Usage: "HTTP connections one IP address may hold open at a time (`N`)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error (logs go to stderr); info follows each device: connections, reports, desired writes, downloads, results; debug adds every twin patch and file range"},
		},
		Action: e.serve,
	}
}

func dataFlag() cli.Flag {
	return &cli.StringFlag{Name: "data", Value: DefaultDataDir, Usage: "the hub's data `DIR`", TakesFile: true}
}

// HTTP limits of serve: a request's headers must arrive within 10 s (hub.Local), its body
// within httpReadTimeout (an upload, once authenticated, within httpReadTimeout of each
// read); an idle keep-alive connection is closed after httpIdleTimeout.
const (
	httpReadTimeout          = 30 * time.Second
	httpIdleTimeout          = 60 * time.Second
	defaultMaxConnsPerClient = 64
)

// serveInfo is DIR/serve.json and the answer of GET /api/info.
type serveInfo struct {
	PID      int    `json:"pid"`
	DataDir  string `json:"dataDir"`
	HostName string `json:"hostName"`
	MQTT     string `json:"mqtt"` // the MQTT address on this machine, e.g. 127.0.0.1:8883
	// DeviceMQTT is what devices dial: the host name and the MQTT port.
	DeviceMQTT   string `json:"deviceMqtt"`
	TLS          bool   `json:"tls"`
	HTTP         string `json:"http"` // base URL on this machine, e.g. http://127.0.0.1:8080
	CAFile       string `json:"caFile,omitempty"`
	RootKeysFile string `json:"rootKeysFile"`
	FileBaseURL  string `json:"fileBaseUrl"`
	TokenFile    string `json:"tokenFile"`
	ImportDir    string `json:"importDir,omitempty"`
}

func (e *env) serve(c *cli.Context) error {
	cfg, err := e.serveConfig(c)
	if err != nil {
		return err
	}
	srv, err := startServer(cfg)
	if err != nil {
		return err
	}
	defer srv.close()
	e.printServing(srv.info, cfg.token)
	if c.Bool("expose-to-network") && cliapp.IsLoopbackName(cfg.hostName) {
		fmt.Fprintf(e.stderr, "aduhub: warning: devices elsewhere cannot reach host name %s: give --hostname NAME, the name (or IP address) of this machine\n", cfg.hostName)
	}
	// serve.json last: whoever waits for it (the other commands, scripts, tests) finds
	// everything above already said.
	if err := writeServeInfo(cfg.dir, srv.info); err != nil {
		return err
	}

	select {
	case <-c.Context.Done():
		fmt.Fprintln(e.stdout, "aduhub: stopping")
		return nil
	case err := <-srv.stack.HTTPErr():
		return fmt.Errorf("HTTP server: %w", err)
	}
}

// serveConfig checks serve's flags and prepares its data folder: not served by another
// aduhub, its host name, import folder and API token.
func (e *env) serveConfig(c *cli.Context) (serverConfig, error) {
	cfg := serverConfig{mqtt: c.String("mqtt"), http: c.String("http"), tls: c.Bool("tls"), maxConnsPerClient: c.Int("max-conns-per-client"),
		blobHosts: c.StringSlice("blob-host")}
	level, err := checkServeFlags(c)
	if err != nil {
		return cfg, err
	}
	if cfg.fileURL, err = parseFileURL(c.String("file-url")); err != nil {
		return cfg, err
	}
	if cfg.dir, err = filepath.Abs(c.String("data")); err != nil {
		return cfg, err
	}
	if err := os.MkdirAll(cfg.dir, 0o700); err != nil {
		return cfg, fmt.Errorf("data folder: %w", err)
	}
	if cfg.importDir, err = importDirOf(c.String("import-dir"), cfg.dir); err != nil {
		return cfg, err
	}
	if info, ok := runningServer(c.Context, cfg.dir); ok {
		return cfg, fmt.Errorf("%s is already served by aduhub (pid %d) at %s", cfg.dir, info.PID, info.HTTP)
	}
	if cfg.hostName, err = hostNameOf(cfg.dir, c.String("hostname")); err != nil {
		return cfg, err
	}
	if cfg.token, err = loadOrCreateToken(cfg.dir); err != nil {
		return cfg, err
	}
	cfg.log = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	return cfg, nil
}

// checkServeFlags checks the flags of serve that need no data folder, and returns the log
// level.
func checkServeFlags(c *cli.Context) (slog.Level, error) {
	var level slog.Level
	if c.NArg() > 0 {
		return level, exitcode.Usagef("%s: expected no arguments, got %q", c.Command.HelpName, c.Args().Slice())
	}
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return level, exitcode.Usagef("--log-level: %v", err)
	}
	if n := c.Int("max-conns-per-client"); n < 1 {
		return level, exitcode.Usagef("--max-conns-per-client %d: want 1 or more", n)
	}
	for _, f := range []string{"mqtt", "http"} {
		if a := c.String(f); !cliapp.LoopbackListen(a) && !c.Bool("expose-to-network") {
			return level, exitcode.Usagef("--%s %s listens beyond this machine: add --expose-to-network to let the network reach MQTT (device keys and certificates) and HTTP (update files by URL, the API and web page by token)", f, a)
		}
	}
	for _, h := range c.StringSlice("blob-host") {
		if h == "" || strings.ContainsAny(h, "/?#@ ") {
			return level, exitcode.Usagef("--blob-host %q: want HOST or HOST:PORT", h)
		}
	}
	if h := c.String("hostname"); h != "" {
		if err := checkHostName(h); err != nil {
			return level, exitcode.Usagef("--hostname: %v", err)
		}
	}
	return level, nil
}

// printServing says where serve listens and what devices and people use.
func (e *env) printServing(i serveInfo, token string) {
	tlsNote := "plain TCP"
	if i.TLS {
		tlsNote = "TLS, CA " + i.CAFile
	}
	fmt.Fprintf(e.stdout, `aduhub serving %s
  IoT Hub (MQTT): %s (%s); devices: HostName=%s, they dial %s
  update files:   %s/   (the URLs devices download from)
  web page:       %s/login?token=%s
  API:            %s/api/   (Authorization: Bearer, the token in %s)
  root keys:      %s
`, i.DataDir, i.MQTT, tlsNote, i.HostName, i.DeviceMQTT, i.FileBaseURL, i.HTTP, token, i.HTTP, i.TokenFile, i.RootKeysFile)
	if i.ImportDir != "" {
		fmt.Fprintf(e.stdout, "  import folder:  %s   (import requests may name its files)\n", i.ImportDir)
	}
}

// parseFileURL checks --file-url and leaves out its default port.
func parseFileURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", exitcode.Usagef("--file-url %q: not an http:// or https:// base URL (no query)", s)
	}
	return strings.TrimRight(withoutDefaultPort(u).String(), "/"), nil
}

// importDirOf resolves --import-dir: a folder that neither holds the data folder nor lies
// in it (the CA and signer keys are there).
func importDirOf(flag, dataDir string) (string, error) {
	if flag == "" {
		return "", nil
	}
	dir, err := filepath.Abs(flag)
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		return "", fmt.Errorf("import folder: %w", err)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", exitcode.Usagef("--import-dir %s: not a folder", flag)
	}
	data, err := filepath.EvalSymlinks(dataDir)
	if err != nil {
		return "", fmt.Errorf("data folder: %w", err)
	}
	if within(data, dir) || within(dir, data) {
		return "", exitcode.Usagef("--import-dir %s: holds or lies in the data folder %s, whose keys an import must not reach", flag, dataDir)
	}
	return dir, nil
}

// within reports whether path is dir or lies in it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && (rel == "." || filepath.IsLocal(rel))
}

type serverConfig struct {
	dir, mqtt, http   string
	hostName          string // the IoT Hub host name devices use
	fileURL           string // "": http://hostName:port/files
	importDir         string // "": uploads only
	blobHosts         []string
	tls               bool
	token             string // the API token
	maxConnsPerClient int    // 0: defaultMaxConnsPerClient
	// readTimeout, idleTimeout: 0 for httpReadTimeout, httpIdleTimeout (tests shorten them).
	readTimeout, idleTimeout time.Duration
	log                      *slog.Logger
}

// server is a running serve: the local stack (hub, service, HTTP) with the API and the page.
type server struct {
	info      serveInfo
	stack     *hub.Stack
	hub       *hub.Hub
	svc       *hub.Service
	log       *slog.Logger
	auth      *auth
	hosts     []string // the Host names HTTP requests may carry (besides loopback ones)
	importDir *os.Root // nil: uploads only
	readIdle  time.Duration
	// fetcher fetches the files of updates:import requests (--blob-host); ops are their
	// operations.
	fetcher *hub.Fetcher
	ops     *operations
	// regMu orders device registrations (look up, then register) among requests.
	regMu sync.Mutex
	// logs is the blob stand-in of log collections (logStore opens it).
	logsOnce sync.Once
	logs     *hub.LogStore
	logsErr  error
}

// withDefaults fills in the limits and the host name left zero.
func (cfg serverConfig) withDefaults() serverConfig {
	if cfg.readTimeout == 0 {
		cfg.readTimeout = httpReadTimeout
	}
	if cfg.idleTimeout == 0 {
		cfg.idleTimeout = httpIdleTimeout
	}
	if cfg.maxConnsPerClient == 0 {
		cfg.maxConnsPerClient = defaultMaxConnsPerClient
	}
	if cfg.hostName == "" {
		cfg.hostName = HostName
	}
	return cfg
}

func startServer(cfg serverConfig) (_ *server, err error) {
	cfg = cfg.withDefaults()
	s := &server{log: cfg.log, auth: newAuth(cfg.token), readIdle: cfg.readTimeout,
		fetcher: &hub.Fetcher{Hosts: cfg.blobHosts}, ops: newOperations()}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	// Uploads a serve that ended abruptly was staging: nobody will finish them.
	if err := os.RemoveAll(filepath.Join(cfg.dir, uploadsDir)); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	if cfg.importDir != "" {
		if s.importDir, err = os.OpenRoot(cfg.importDir); err != nil {
			return nil, fmt.Errorf("import folder: %w", err)
		}
	}
	if s.stack, err = hub.Local(s.localOptions(cfg)); err != nil {
		return nil, err
	}
	s.warnSignerBits(cfg.dir)
	return s, nil
}

// localOptions are the options of serve's local stack: its listeners, host name, TLS and
// file URL, the HTTP limits, and the API and the page besides the files on HTTP.
func (s *server) localOptions(cfg serverConfig) hub.LocalOptions {
	return hub.LocalOptions{
		DataDir: cfg.dir, MQTTAddr: cfg.mqtt, HTTPAddr: cfg.http, HostName: cfg.hostName, TLS: cfg.tls, FileURL: cfg.fileURL,
		RootKID: rootKID, SigningKID: signingKID, Logger: cfg.log,
		HTTPHandler: func(st *hub.Stack) http.Handler { return s.started(st, cfg) },
		HTTPListener: func(ln net.Listener) net.Listener {
			return newLimitListener(ln, cfg.maxConnsPerClient, cfg.log)
		},
		HTTPReadTimeout: cfg.readTimeout, HTTPIdleTimeout: cfg.idleTimeout, ShutdownGrace: 5 * time.Second,
	}
}

// started takes in the local stack, running but for HTTP, and returns what HTTP serves: what
// serve.json and /api/info say, and the Host names requests may carry (no DNS rebinding from
// a browser).
func (s *server) started(st *hub.Stack, cfg serverConfig) http.Handler {
	s.hub, s.svc = st.Hub, st.Service
	s.info = serveInfo{PID: os.Getpid(), DataDir: cfg.dir, HostName: cfg.hostName, TLS: cfg.tls, ImportDir: cfg.importDir,
		MQTT: st.MQTTAddr, DeviceMQTT: st.DeviceMQTT, HTTP: st.HTTPURL, FileBaseURL: st.FileBaseURL,
		CAFile: st.CAFile, RootKeysFile: st.RootKeysFile, TokenFile: filepath.Join(cfg.dir, tokenFile)}
	s.hosts = []string{cfg.hostName}
	if ip := st.HTTPAddr().IP; !ip.IsUnspecified() {
		s.hosts = append(s.hosts, ip.String())
	}
	return s.handler()
}

// warnSignerBits warns about a signer whose keys are not the size the service uses.
func (s *server) warnSignerBits(dir string) {
	if bits := s.stack.Signer.SigningKey().N.BitLen(); bits != hub.DefaultSignerBits {
		s.log.Warn("the update signer's keys are not what the service uses: embedded device clients refuse its signatures; to make new ones, stop aduhub, remove the folder and give devices the new rootkeys.json",
			"bits", bits, "want", hub.DefaultSignerBits, "folder", filepath.Join(dir, signerDir))
	}
}

// close removes serve.json and stops the server.
func (s *server) close() {
	os.Remove(filepath.Join(s.info.DataDir, serveInfoFile))
	s.stop()
}

// stop stops the local stack (letting HTTP requests in flight finish for a few seconds) and
// closes the import folder.
func (s *server) stop() {
	s.ops.stop()
	if s.stack != nil {
		s.stack.Close()
	}
	if s.importDir != nil {
		s.importDir.Close()
	}
	if s.logs != nil {
		s.logs.Close()
	}
}

func writeServeInfo(dir string, info serveInfo) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, serveInfoFile), append(b, '\n'), 0o600)
}

// readServeInfo reads DIR/serve.json (what a server serving DIR wrote).
func readServeInfo(dir string) (serveInfo, bool) {
	var info serveInfo
	b, err := os.ReadFile(filepath.Join(dir, serveInfoFile))
	if err != nil || json.Unmarshal(b, &info) != nil || info.HTTP == "" {
		return info, false
	}
	return info, true
}

// runningServer reads DIR/serve.json and returns it if that server answers: with DIR's API
// token, as serving DIR; or refusing the token, which means the token file changed under a
// running server (it is still DIR's: nothing else may open DIR meanwhile).
func runningServer(ctx context.Context, dir string) (serveInfo, bool) {
	info, ok := readServeInfo(dir)
	if !ok {
		return info, false
	}
	path := filepath.Join(dir, tokenFile)
	tok, _ := readToken(path) // none: the server refuses, and so is known to run
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var got serveInfo
	err := newClient(info.HTTP, tok, path).do(ctx, http.MethodGet, "/api/info", nil, &got)
	if errors.Is(err, errTokenRefused) {
		return info, true
	}
	if err != nil || got.DataDir != info.DataDir {
		return info, false
	}
	return got, true
}

// hostAllowed reports whether an HTTP request's Host is one this server answers: a loopback
// name, the host name or the address it listens on.
func (s *server) hostAllowed(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if cliapp.IsLoopbackName(host) {
		return true
	}
	for _, h := range s.hosts {
		if strings.EqualFold(host, h) {
			return true
		}
	}
	return false
}

// ioErr marks errors of the file system as I/O (exit 3); others stay as they are.
func isFSError(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe)
}
