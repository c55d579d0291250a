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
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/hub"
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
	caDir         = "ca"         // hub.LoadOrCreateCA: ca.pem for devices (agent.ca_file)
	signerDir     = "signer"     // hub.LoadOrCreateSigner: rootkeys.json for devices (agent.root_keys)
	serveInfoFile = "serve.json" // written while serve runs: where it listens
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
    against the registered device keys, device twins. Host name "localhost": devices dial
    localhost:8883, so keep the default --mqtt for real agents.
  - on --http: a web page at / (devices, updates, deployments, refreshed every 2 s; deploy,
    cancel and retry buttons), the update files under /files/ (with Range), and the JSON API
    the other commands use (/api/info, /api/devices, /api/updates, /api/deployments).
Everything (device registry and twins, CA, update signer, imported updates and their files,
deployments) is kept in --data and survives a restart. The signer's public root key is in
DIR/signer/rootkeys.json: a device trusts it with agent.root_keys (and no_builtin_roots =
true). While serving, DIR/serve.json says where; it is removed on exit.

Both listeners are on 127.0.0.1 by default; anything that can reach them can register
devices and deploy updates.

Exit codes: 0 stopped by a signal, 2 usage error, 3 an address in use, the data folder
not writable, or DIR already served by another aduhub.

EXAMPLE:
   aduhub serve
   aduhub serve --data ./hub --http 127.0.0.1:9090
   aduhub serve --tls=false --mqtt 127.0.0.1:1883
   aduhub serve --file-url https://cache.example.com/adu   (devices download from there)`,
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "mqtt", Value: DefaultMQTTAddr, Usage: "MQTT (IoT Hub) listen `ADDR`"},
			&cli.StringFlag{Name: "http", Value: DefaultHTTPAddr, Usage: "HTTP (web page, API, files) listen `ADDR`"},
			&cli.StringFlag{Name: "file-url", Usage: "the base `URL` devices download update files from (default: the --http address + /files); for a proxy or a cache in front of this server that passes …/FILEID/NAME on to /files/FILEID/NAME"},
			&cli.BoolFlag{Name: "tls", Value: true, Usage: "MQTT over TLS with the local CA (--tls=false: plain TCP, for clients that allow it)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error (logs go to stderr); info follows each device: connections, reports, desired writes, downloads, results; debug adds every twin patch and file range"},
		},
		Action: e.serve,
	}
}

func dataFlag() cli.Flag {
	return &cli.StringFlag{Name: "data", Value: DefaultDataDir, Usage: "the hub's data `DIR`", TakesFile: true}
}

// serveInfo is DIR/serve.json and the answer of GET /api/info.
type serveInfo struct {
	PID          int    `json:"pid"`
	DataDir      string `json:"dataDir"`
	HostName     string `json:"hostName"`
	MQTT         string `json:"mqtt"`
	TLS          bool   `json:"tls"`
	HTTP         string `json:"http"` // base URL, e.g. http://127.0.0.1:8080
	CAFile       string `json:"caFile,omitempty"`
	RootKeysFile string `json:"rootKeysFile"`
	FileBaseURL  string `json:"fileBaseUrl"`
}

func (e *env) serve(c *cli.Context) error {
	if c.NArg() > 0 {
		return exitcode.Usagef("%s: expected no arguments, got %q", c.Command.HelpName, c.Args().Slice())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return exitcode.Usagef("--log-level: %v", err)
	}
	fileURL := c.String("file-url")
	if fileURL != "" {
		u, err := url.Parse(fileURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return exitcode.Usagef("--file-url %q: not an http:// or https:// base URL (no query)", fileURL)
		}
	}
	dir, err := filepath.Abs(c.String("data"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	if info, ok := runningServer(c.Context, dir); ok {
		return fmt.Errorf("%s is already served by aduhub (pid %d) at %s", dir, info.PID, info.HTTP)
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))

	srv, err := startServer(serverConfig{dir: dir, mqtt: c.String("mqtt"), http: c.String("http"), fileURL: fileURL, tls: c.Bool("tls"), log: log})
	if err != nil {
		return err
	}
	defer srv.close()
	i := srv.info
	tlsNote := "plain TCP"
	if i.TLS {
		tlsNote = "TLS, CA " + i.CAFile
	}
	fmt.Fprintf(e.stdout, `aduhub serving %s
  IoT Hub (MQTT): %s (%s), host name %s
  web page:       %s/
  API:            %s/api/   files: %s/
  root keys:      %s
`, dir, i.MQTT, tlsNote, i.HostName, i.HTTP, i.HTTP, i.FileBaseURL, i.RootKeysFile)

	select {
	case <-c.Context.Done():
		fmt.Fprintln(e.stdout, "aduhub: stopping")
		return nil
	case err := <-srv.httpErr:
		return fmt.Errorf("HTTP server: %w", err)
	}
}

type serverConfig struct {
	dir, mqtt, http string
	fileURL         string // "": http + /files
	tls             bool
	log             *slog.Logger
}

// server is a running serve: hub, service and the HTTP server.
type server struct {
	info    serveInfo
	hub     *hub.Hub
	svc     *hub.Service
	http    *http.Server
	httpErr chan error
	log     *slog.Logger
}

func startServer(cfg serverConfig) (_ *server, err error) {
	s := &server{log: cfg.log, httpErr: make(chan error, 1)}
	s.info = serveInfo{PID: os.Getpid(), DataDir: cfg.dir, HostName: HostName, TLS: cfg.tls,
		RootKeysFile: filepath.Join(cfg.dir, signerDir, hub.RootKeysJSONFile)}
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	// HTTP first: the service needs the files' base URL.
	ln, err := net.Listen("tcp", cfg.http)
	if err != nil {
		return nil, fmt.Errorf("HTTP listener: %w", err)
	}
	cleanup = append(cleanup, func() { ln.Close() })
	s.info.HTTP = "http://" + ln.Addr().String()
	s.info.FileBaseURL = s.info.HTTP + "/files"
	if cfg.fileURL != "" {
		s.info.FileBaseURL = strings.TrimRight(cfg.fileURL, "/")
	}

	opts := hub.Options{HostName: HostName, Address: cfg.mqtt, DataDir: cfg.dir, Logger: cfg.log}
	if cfg.tls {
		ca, err := hub.LoadOrCreateCA(filepath.Join(cfg.dir, caDir))
		if err != nil {
			return nil, fmt.Errorf("local CA: %w", err)
		}
		opts.TLSConfig = ca.ServerTLSConfig()
		s.info.CAFile = filepath.Join(cfg.dir, caDir, hub.CACertFile)
	}
	if s.hub, err = hub.New(opts); err != nil {
		return nil, fmt.Errorf("IoT Hub: %w", err)
	}
	cleanup = append(cleanup, func() { s.hub.Close() })
	s.info.MQTT = s.hub.Addr().String()

	signer, err := hub.LoadOrCreateSigner(filepath.Join(cfg.dir, signerDir), nil, rootKID, signingKID, hub.DefaultSignerBits)
	if err != nil {
		return nil, fmt.Errorf("update signer: %w", err)
	}
	if bits := signer.SigningKey().N.BitLen(); bits != hub.DefaultSignerBits {
		cfg.log.Warn("the update signer's keys are not what the service uses: embedded device clients refuse its signatures; to make new ones, stop aduhub, remove the folder and give devices the new rootkeys.json",
			"bits", bits, "want", hub.DefaultSignerBits, "folder", filepath.Join(cfg.dir, signerDir))
	}
	if s.svc, err = hub.NewService(s.hub, signer, hub.ServiceOptions{DataDir: cfg.dir, FileBaseURL: s.info.FileBaseURL, Logger: cfg.log}); err != nil {
		return nil, fmt.Errorf("update service: %w", err)
	}
	cleanup = append(cleanup, func() { s.svc.Close() })

	s.http = &http.Server{Handler: s.handler(loopback(ln.Addr())), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(cfg.log.Handler(), slog.LevelWarn)}
	go func() {
		if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.httpErr <- err
		}
	}()
	if err := writeServeInfo(cfg.dir, s.info); err != nil {
		s.http.Close()
		return nil, err
	}
	return s, nil
}

// close stops HTTP (letting requests in flight finish for a few seconds), the service and the
// hub, and removes serve.json.
func (s *server) close() {
	os.Remove(filepath.Join(s.info.DataDir, serveInfoFile))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		s.http.Close()
	}
	s.svc.Close()
	s.hub.Close()
}

func writeServeInfo(dir string, info serveInfo) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, serveInfoFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, serveInfoFile))
}

// runningServer reads DIR/serve.json and returns it if that server answers.
func runningServer(ctx context.Context, dir string) (serveInfo, bool) {
	var info serveInfo
	b, err := os.ReadFile(filepath.Join(dir, serveInfoFile))
	if err != nil || json.Unmarshal(b, &info) != nil || info.HTTP == "" {
		return info, false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var got serveInfo
	if err := newClient(info.HTTP).do(ctx, http.MethodGet, "/api/info", nil, &got); err != nil || got.DataDir != info.DataDir {
		return info, false
	}
	return got, true
}

// loopback reports whether addr is a loopback address: then the HTTP server answers only
// requests whose Host is a loopback name too (no DNS rebinding from a browser).
func loopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ioErr marks errors of the file system as I/O (exit 3); others stay as they are.
func isFSError(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe)
}
