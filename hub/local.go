package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Layout of a local stack's data folder besides the Hub's devices/ and the Service's
// updates/, files/ and deployments/.
const (
	LocalCADir     = "ca"     // LoadOrCreateCA: CACertFile for devices (an agent's ca_file)
	LocalSignerDir = "signer" // LoadOrCreateSigner: RootKeysJSONFile for devices (an agent's root_keys)
)

// Defaults of LocalOptions.
const (
	DefaultLocalRootKID    = "ADU.local.R"
	DefaultLocalSigningKID = "ADU.local.S"
	// localHeaderTimeout is the time an HTTP request's headers have to arrive.
	localHeaderTimeout = 10 * time.Second
)

// LocalOptions configures Local.
type LocalOptions struct {
	// DataDir keeps everything (required): the device registry and twins, the imported
	// updates and their files, the deployments, the CA (LocalCADir) and the signer's keys
	// (LocalSignerDir).
	DataDir string
	// MQTTAddr and HTTPAddr are the listen addresses. Default 127.0.0.1:0 (a free port).
	MQTTAddr, HTTPAddr string
	// HostName is the IoT Hub host name devices use (default localhost): in their connection
	// strings, in the MQTT server certificate and in the default FileURL.
	HostName string
	// TLS serves MQTT over TLS with the local CA of DataDir, whose server certificate names
	// localhost, 127.0.0.1, ::1 and HostName. Without it MQTT is plain TCP.
	TLS bool
	// FileURL is the base URL devices download update files from. Default: /files of the
	// HTTP listener at HostName, or at the listener's IP address for localhost (a device on
	// this machine then needs no name lookup), without a default port.
	FileURL string
	// RootKID and SigningKID name the signer's keys when they are made (default
	// DefaultLocalRootKID, DefaultLocalSigningKID), of SignerBits bits (default
	// DefaultSignerBits). Keys kept in DataDir are used as they are.
	RootKID, SigningKID string
	SignerBits          int
	// HTTPHandler, if set, returns what the HTTP listener serves; it is called once, when
	// everything but HTTP runs. Default: Stack.Files.
	HTTPHandler func(*Stack) http.Handler
	// HTTPListener, if set, wraps the HTTP listener (a limit of connections per client, …).
	HTTPListener func(net.Listener) net.Listener
	// HTTPReadTimeout and HTTPIdleTimeout are the HTTP server's ReadTimeout and IdleTimeout
	// (0: none). Request headers have 10 s in any case.
	HTTPReadTimeout, HTTPIdleTimeout time.Duration
	// ShutdownGrace is how long Close lets HTTP requests in flight finish (0: none).
	ShutdownGrace time.Duration
	// Logger receives the logs of the Hub, the Service and the HTTP server. Default:
	// discarded.
	Logger *slog.Logger
}

// Stack is the local stand-in on one machine: a Hub and a Service on one data folder, their
// CA and signer, and the HTTP server of the update files. Local starts it; Close stops it.
type Stack struct {
	Hub     *Hub
	Service *Service
	Signer  *Signer
	CA      *LocalCA // nil without TLS

	// MQTTAddr (host:port) and HTTPURL (a base URL) are where clients on this machine reach
	// the listeners: their IP address, or 127.0.0.1 for one that listens on every address.
	MQTTAddr, HTTPURL string
	// DeviceMQTT is what devices dial: the host name and the MQTT port. FileBaseURL is where
	// they download update files (LocalOptions.FileURL).
	DeviceMQTT, FileBaseURL string
	// CAFile is the CA certificate devices trust ("" without TLS); RootKeysFile holds the
	// signer's root key, which devices verify update manifests with.
	CAFile, RootKeysFile string

	opts    LocalOptions
	httpLn  net.Listener
	http    *http.Server
	httpErr chan error

	closeOnce sync.Once
	closeErr  error
}

// Local starts the local stand-in: the HTTP listener first (the Service hands out its
// URLs), the CA (with TLS) and the Hub, the signer and the Service, then HTTP. What was
// started is stopped again if a later step fails.
func Local(opts LocalOptions) (_ *Stack, err error) {
	if opts.DataDir == "" {
		return nil, fmt.Errorf("%w: LocalOptions.DataDir is required", ErrInvalidOption)
	}
	st := &Stack{opts: opts.withDefaults(), httpErr: make(chan error, 1)}
	defer func() {
		if err != nil {
			_ = st.Close()
		}
	}()
	if err := st.listenHTTP(); err != nil {
		return nil, err
	}
	if err := st.startHub(); err != nil {
		return nil, err
	}
	if err := st.startService(); err != nil {
		return nil, err
	}
	st.serveHTTP()
	return st, nil
}

// withDefaults fills in the options left zero.
func (opts LocalOptions) withDefaults() LocalOptions {
	if opts.MQTTAddr == "" {
		opts.MQTTAddr = "127.0.0.1:0"
	}
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = "127.0.0.1:0"
	}
	if opts.HostName == "" {
		opts.HostName = "localhost"
	}
	if opts.RootKID == "" {
		opts.RootKID = DefaultLocalRootKID
	}
	if opts.SigningKID == "" {
		opts.SigningKID = DefaultLocalSigningKID
	}
	if opts.SignerBits == 0 {
		opts.SignerBits = DefaultSignerBits
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return opts
}

// listenHTTP opens the HTTP listener and works out the URLs on it.
func (st *Stack) listenHTTP() error {
	ln, err := net.Listen("tcp", st.opts.HTTPAddr)
	if err != nil {
		return fmt.Errorf("hub: HTTP listener: %w", err)
	}
	st.httpLn = ln
	addr := st.HTTPAddr()
	st.HTTPURL = hostURL("http", localHost(addr.IP), addr.Port)
	st.FileBaseURL = st.opts.FileURL
	if st.FileBaseURL == "" {
		host := st.opts.HostName
		if strings.EqualFold(host, "localhost") {
			host = localHost(addr.IP) // localhost may be ::1 first
		}
		st.FileBaseURL = hostURL("http", host, addr.Port) + "/files"
	}
	return nil
}

// startHub starts the Hub on the MQTT address, over TLS with the local CA if asked.
func (st *Stack) startHub() error {
	opts := Options{HostName: st.opts.HostName, Address: st.opts.MQTTAddr, DataDir: st.opts.DataDir, Logger: st.opts.Logger}
	if st.opts.TLS {
		hosts := []string{"localhost", "127.0.0.1", "::1"}
		if !slices.Contains(hosts, st.opts.HostName) {
			hosts = append(hosts, st.opts.HostName)
		}
		ca, err := LoadOrCreateCA(filepath.Join(st.opts.DataDir, LocalCADir), hosts...)
		if err != nil {
			return fmt.Errorf("hub: local CA: %w", err)
		}
		st.CA, opts.TLSConfig = ca, ca.ServerTLSConfig()
		st.CAFile = filepath.Join(st.opts.DataDir, LocalCADir, CACertFile)
	}
	h, err := New(opts)
	if err != nil {
		return err
	}
	st.Hub = h
	addr := h.Addr().(*net.TCPAddr)
	st.MQTTAddr = net.JoinHostPort(localHost(addr.IP), strconv.Itoa(addr.Port))
	st.DeviceMQTT = net.JoinHostPort(st.opts.HostName, strconv.Itoa(addr.Port))
	return nil
}

// startService loads (or makes) the signer and starts the Service.
func (st *Stack) startService() error {
	dir := filepath.Join(st.opts.DataDir, LocalSignerDir)
	signer, err := LoadOrCreateSigner(dir, nil, st.opts.RootKID, st.opts.SigningKID, st.opts.SignerBits)
	if err != nil {
		return fmt.Errorf("hub: update signer: %w", err)
	}
	st.Signer = signer
	st.RootKeysFile = filepath.Join(dir, RootKeysJSONFile)
	st.Service, err = NewService(st.Hub, signer, ServiceOptions{DataDir: st.opts.DataDir, FileBaseURL: st.FileBaseURL, Logger: st.opts.Logger})
	return err
}

// serveHTTP starts serving HTTP.
func (st *Stack) serveHTTP() {
	handler := st.Files()
	if st.opts.HTTPHandler != nil {
		handler = st.opts.HTTPHandler(st)
	}
	ln := st.httpLn
	if st.opts.HTTPListener != nil {
		ln = st.opts.HTTPListener(ln)
	}
	st.http = &http.Server{Handler: handler, ReadHeaderTimeout: localHeaderTimeout,
		ReadTimeout: st.opts.HTTPReadTimeout, IdleTimeout: st.opts.HTTPIdleTimeout,
		ErrorLog: slog.NewLogLogger(st.opts.Logger.Handler(), slog.LevelWarn)}
	go func() {
		if err := st.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			st.httpErr <- err
		}
	}()
}

// Files serves the update files at /files/FILEID/NAME (Service.FileHandler), what HTTP
// serves without LocalOptions.HTTPHandler; anything else is 404.
func (st *Stack) Files() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/files/", st.Service.FileHandler())
	return mux
}

// HTTPAddr is the HTTP listener's address.
func (st *Stack) HTTPAddr() *net.TCPAddr { return st.httpLn.Addr().(*net.TCPAddr) }

// HTTPErr receives the error that stopped HTTP serving before Close.
func (st *Stack) HTTPErr() <-chan error { return st.httpErr }

// Close stops HTTP (letting requests in flight finish for LocalOptions.ShutdownGrace), the
// Service and the Hub, in that order. Later calls return what the first one did.
func (st *Stack) Close() error {
	st.closeOnce.Do(func() { st.closeErr = st.close() })
	return st.closeErr
}

func (st *Stack) close() error {
	if st.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), st.opts.ShutdownGrace)
		if err := st.http.Shutdown(ctx); err != nil {
			_ = st.http.Close()
		}
		cancel()
	} else if st.httpLn != nil {
		_ = st.httpLn.Close()
	}
	var errs []error
	if st.Service != nil {
		errs = append(errs, st.Service.Close())
	}
	if st.Hub != nil {
		errs = append(errs, st.Hub.Close())
	}
	return errors.Join(errs...)
}

// hostURL joins scheme, host and port into a base URL, leaving out the port 80 of http and
// 443 of https (a client that takes everything between // and / for the host name would
// dial "HOST:80").
func hostURL(scheme, host string, port int) string {
	if scheme == "http" && port == 80 || scheme == "https" && port == 443 {
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		return scheme + "://" + host
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// localHost is the address a client on this machine uses for a listener's IP: the IP, or
// 127.0.0.1 for one that listens on every address (Go's "tcp" listeners there take IPv4 too).
func localHost(ip net.IP) string {
	if ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return ip.String()
}
