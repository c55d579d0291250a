package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aduflash/aduflash/dps"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/iothub"
)

// Values of agent.provisioning.
const (
	ProvisionConnectionString = "connection_string"
	ProvisionDPS              = "dps"
)

// DPSCacheFile is where, in the state dir, the agent keeps its DPS assignment.
const DPSCacheFile = "dps-assignment.json"

// dpsKeys are the keys that belong to provisioning = "dps".
var dpsKeys = []string{"id_scope", "registration_id", "global_endpoint", "symmetric_key", "symmetric_key_file", "group_key", "group_key_file"}

// checkProvisioning: a known provisioning; for DPS an id scope, a registration id DPS
// takes, an endpoint, exactly one credential and no connection string; the DPS keys only
// with DPS.
func (c *Config) checkProvisioning(written func(key string) bool) error {
	switch c.Provisioning {
	case ProvisionConnectionString:
		for _, k := range dpsKeys {
			if written(k) {
				return cfgErr(k, "only with provisioning = %q", ProvisionDPS)
			}
		}
		return nil
	case ProvisionDPS:
	default:
		return cfgErr("provisioning", "%q is not %q or %q", c.Provisioning, ProvisionConnectionString, ProvisionDPS)
	}
	switch {
	case c.ConnectionString != "" || c.ConnectionStringFile != "":
		return cfgErr("connection_string", "not with provisioning = \"dps\" (DPS assigns the hub and the device id)")
	case strings.TrimSpace(c.IDScope) == "" || strings.ContainsAny(c.IDScope, "/?#&= "):
		return cfgErr("id_scope", "%q: the DPS instance's id scope (e.g. \"0ne00000A0A\")", c.IDScope)
	case strings.TrimSpace(c.GlobalEndpoint) == "" || strings.ContainsAny(c.GlobalEndpoint, "/?# "):
		return cfgErr("global_endpoint", "%q: a host name, or host:port", c.GlobalEndpoint)
	}
	if err := dps.CheckRegistrationID(c.RegistrationID); err != nil {
		return cfgErr("registration_id", "%v", err)
	}
	n := 0
	for _, v := range []string{c.SymmetricKey, c.SymmetricKeyFile, c.GroupKey, c.GroupKeyFile, c.X509Cert} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return cfgErr("symmetric_key", "provisioning = \"dps\" needs exactly one credential: symmetric_key(_file), group_key(_file), or x509_cert and x509_key (%d given)", n)
	}
	return nil
}

// checkProxy: an http:// proxy URL with a host.
func (c *Config) checkProxy() error {
	if c.Proxy == "" {
		return nil
	}
	u, err := url.Parse(c.Proxy)
	if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return cfgErr("proxy", "%q: want http://host:port (an HTTP proxy that supports CONNECT)", c.Proxy)
	}
	return nil
}

// proxyFor returns the proxy that carries connections to host ("host" or "host:port"):
// agent.proxy for every host, else what the environment says for an https URL to it
// (http.ProxyFromEnvironment: HTTPS_PROXY, NO_PROXY; never for localhost), or nil.
func (c Config) proxyFor(host string) (*url.URL, error) {
	if c.Proxy != "" {
		return url.Parse(c.Proxy)
	}
	u, err := http.ProxyFromEnvironment(&http.Request{URL: &url.URL{Scheme: "https", Host: host}})
	if err != nil {
		return nil, cfgErr("proxy", "the environment's proxy: %v", err)
	}
	return u, nil
}

// HTTPClient returns the client of update downloads: install.DefaultHTTPClient, through
// agent.proxy if set (else the environment's proxy, as net/http does).
func (c Config) HTTPClient() *http.Client {
	hc := install.DefaultHTTPClient()
	if c.Proxy != "" {
		u, _ := url.Parse(c.Proxy) // checked by ParseConfig
		hc.Transport.(*http.Transport).Proxy = http.ProxyURL(u)
	}
	return hc
}

// throughProxy makes a connection to address (host:port) go through the proxy that applies
// to it, if any: over WebSockets, tunnelled with CONNECT. It returns the proxy ("" for
// none).
func (c Config) throughProxy(address string, webSocket *bool, dial *func(context.Context, string, string) (net.Conn, error)) (string, error) {
	p, err := c.proxyFor(address)
	if err != nil || p == nil {
		return "", err
	}
	d, err := iothub.ProxyDial(p, nil)
	if err != nil {
		return "", cfgErr("proxy", "%v", err)
	}
	*webSocket, *dial = true, d
	return p.Redacted(), nil
}

// Connector connects the agent to IoT Hub: with a connection string it dials it; with DPS
// it dials the hub of the stored assignment, or registers with DPS first (and stores the
// assignment), and registers again when the hub refuses the stored one (the device was
// moved to another hub or deleted, its key rotated). Config.Connector makes it.
type Connector struct {
	// Hub is the connection: complete with a connection string; with DPS everything but
	// the identity (and the address unless agent.hub_address).
	Hub iothub.Config
	// DPS is the registration (nil with a connection string), CachePath where its
	// assignment is kept.
	DPS       *dps.Config
	CachePath string
	// Proxy names the proxy the connections go through ("" none), for logs.
	Proxy string
	// Logger receives what the Connector does (registrations); nil logs nothing.
	Logger *slog.Logger
}

func (cn *Connector) log() *slog.Logger {
	if cn.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return cn.Logger
}

// Connector returns the Connector of this section: the HubConfig (connection string) or the
// DPS registration with its credential, the CA bundle, agent.hub_address and the proxy.
// Files that cannot be read wrap the os error; contents that do not parse wrap ErrConfig.
func (c Config) Connector(log *slog.Logger) (*Connector, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if c.Provisioning != ProvisionDPS {
		hc, err := c.HubConfig()
		if err != nil {
			return nil, err
		}
		host, _, _ := net.SplitHostPort(hc.Address)
		if c.HubAddress == "" && !hc.WebSocket {
			// a proxy makes it WebSockets: the default port is then 443
			if p, err := c.proxyFor(host); err != nil {
				return nil, err
			} else if p != nil {
				cs, _ := iothub.ParseConnectionString(hc.ConnectionString)
				hc.Address = iothub.DefaultAddress(cs, true)
			}
		}
		proxy, err := c.throughProxy(hc.Address, &hc.WebSocket, &hc.Dial)
		return &Connector{Hub: hc, Proxy: proxy, Logger: log}, err
	}
	hc := iothub.Config{Address: c.HubAddress, ModelID: c.ModelID, WebSocket: c.WebSocket}
	if err := c.addTLS(&hc); err != nil {
		return nil, err
	}
	key, err := c.dpsKey()
	if err != nil {
		return nil, err
	}
	d := &dps.Config{IDScope: c.IDScope, RegistrationID: c.RegistrationID, SymmetricKey: key,
		ClientCertificate: hc.ClientCertificate, WebSocket: c.WebSocket, TLSConfig: hc.TLSConfig, Logger: log.With("component", "dps")}
	d.Endpoint = endpointAddress(c.GlobalEndpoint, c.WebSocket)
	proxy, err := c.throughProxy(d.Endpoint, &d.WebSocket, &d.Dial)
	if err != nil {
		return nil, err
	}
	if proxy != "" {
		d.Endpoint = endpointAddress(c.GlobalEndpoint, true)
		hc.WebSocket, hc.Dial = true, d.Dial
	}
	return &Connector{Hub: hc, DPS: d, CachePath: filepath.Join(c.StateDir, DPSCacheFile), Proxy: proxy, Logger: log}, nil
}

// endpointAddress is host:port of a DPS endpoint written as host or host:port.
func endpointAddress(ep string, webSocket bool) string {
	if _, _, err := net.SplitHostPort(ep); err == nil {
		return ep
	}
	port := iothub.DefaultPort
	if webSocket {
		port = iothub.DefaultWebSocketPort
	}
	return net.JoinHostPort(ep, strconv.Itoa(port))
}

// dpsKey is the device's DPS key: symmetric_key(_file), or the one derived from
// group_key(_file); "" with X.509.
func (c Config) dpsKey() (string, error) {
	read := func(key, inline, file string) (string, error) {
		if file == "" {
			return strings.TrimSpace(inline), nil
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("agent.%s: %w", key, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if c.GroupKey != "" || c.GroupKeyFile != "" {
		g, err := read("group_key_file", c.GroupKey, c.GroupKeyFile)
		if err != nil {
			return "", err
		}
		k, err := dps.DeriveKey(g, c.RegistrationID)
		if err != nil {
			return "", cfgErr("group_key", "%v", err)
		}
		return k, nil
	}
	k, err := read("symmetric_key_file", c.SymmetricKey, c.SymmetricKeyFile)
	if err != nil {
		return "", err
	}
	if _, err := iothub.SignSAS(k, "", 0); k != "" && err != nil {
		return "", cfgErr("symmetric_key", "not a base64 key: %v", err)
	}
	return k, nil
}

// Dial connects to IoT Hub (see Connector). Errors that retrying cannot fix (the settings)
// wrap ErrConfig; the others (network, a refusal by DPS or the hub) are worth retrying.
func (cn *Connector) Dial(ctx context.Context) (*iothub.Client, error) {
	if cn.DPS == nil {
		return cn.dialHub(ctx, cn.Hub)
	}
	a, ok, err := dps.LoadAssignment(cn.CachePath, cn.DPS.IDScope, cn.DPS.RegistrationID)
	if err != nil {
		cn.log().Warn("cannot use the stored DPS assignment; registering again", "err", err)
	}
	if !ok {
		if a, err = cn.register(ctx); err != nil {
			return nil, err
		}
	}
	cl, err := cn.dialHub(ctx, cn.hubConfig(a))
	if !ok || !errors.Is(err, iothub.ErrUnauthorized) {
		return cl, err
	}
	cn.log().Info("the hub refused the stored DPS assignment (device moved, deleted or re-keyed); registering again",
		"hub", a.AssignedHub, "device", a.DeviceID, "err", err)
	if a, err = cn.register(ctx); err != nil {
		return nil, err
	}
	return cn.dialHub(ctx, cn.hubConfig(a))
}

// register registers with DPS and stores the assignment.
func (cn *Connector) register(ctx context.Context) (dps.Assignment, error) {
	cn.log().Info("registering with DPS", "endpoint", cn.DPS.Endpoint, "idScope", cn.DPS.IDScope, "registrationId", cn.DPS.RegistrationID)
	a, err := dps.Register(ctx, *cn.DPS)
	if err != nil {
		if errors.Is(err, dps.ErrInvalidConfig) {
			return a, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		return a, err
	}
	cn.log().Info("DPS assigned the device", "hub", a.AssignedHub, "device", a.DeviceID)
	if err := dps.SaveAssignment(cn.CachePath, a); err != nil {
		return a, err
	}
	return a, nil
}

// hubConfig is the connection to an assigned hub.
func (cn *Connector) hubConfig(a dps.Assignment) iothub.Config {
	hc := cn.Hub
	hc.Identity = iothub.ConnectionString{HostName: a.AssignedHub, DeviceID: a.DeviceID,
		SharedAccessKey: cn.DPS.SymmetricKey, X509: cn.DPS.ClientCertificate != nil}
	if hc.Address == "" {
		hc.Address = iothub.DefaultAddress(hc.Identity, hc.WebSocket)
	}
	return hc
}

// dialHub dials; errors other than connection failures are the settings'.
func (cn *Connector) dialHub(ctx context.Context, hc iothub.Config) (*iothub.Client, error) {
	cl, err := iothub.Dial(ctx, hc)
	if err != nil && !errors.Is(err, iothub.ErrConnect) && ctx.Err() == nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return cl, err
}
