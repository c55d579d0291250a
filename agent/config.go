package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/health"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/internal/bytesize"
	"github.com/aduflash/aduflash/internal/tomlsection"
	"github.com/aduflash/aduflash/iothub"
)

// Defaults of the [agent] section.
const (
	DefaultStateDir            = "/var/lib/aduflash"
	DefaultCompatPropertyNames = "manufacturer,model"
	DefaultHealthTimeout       = 5 * time.Minute
	DefaultLogLevel            = "info"
	// MaxCompatPropertyNames is the service's limit on compatPropertyNames.
	MaxCompatPropertyNames = 5
	// DefaultMaxChunkSize is the largest aduimg chunk the agent takes by default: it holds
	// about two chunks and a zstd window of up to one, within its 32 MiB budget.
	DefaultMaxChunkSize = 4 << 20
)

// DefaultRebootCommand is the reboot_command default.
func DefaultRebootCommand() []string { return []string{"systemctl", "reboot"} }

// Config is the [agent] section of the device configuration: how the agent reaches IoT Hub,
// who the device is, what it trusts, and how it checks a new bank. ParseConfig and
// LoadConfig return it with defaults filled in and validated; Options, LoadKeyring and
// HubConfig turn it into what New and iothub.Dial take.
type Config struct {
	// IoT Hub identity: the device connection string, inline or (preferred, mode 0600) in a
	// file; at most one of the two. With "…;x509=true" X509Cert and X509Key authenticate.
	ConnectionString     string
	ConnectionStringFile string
	X509Cert, X509Key    string
	// CAFile replaces the built-in Azure roots with a PEM bundle (iothub.LoadCAFile).
	CAFile string
	// HubAddress ("host:port", "" = the connection string's GatewayHostName or HostName on
	// port 8883, 443 with WebSocket) is where the agent connects, always over TLS; the
	// server's certificate must be valid for its host.
	HubAddress string
	// WebSocket carries MQTT over WebSockets on port 443.
	WebSocket bool
	// ModelID is the PnP model announced (default adu.ModelV3).
	ModelID string

	// Device identity and compatibility properties.
	Manufacturer, Model string
	// Properties are the [agent.properties] entries, in file order.
	Properties          []adu.DeviceProperty
	CompatPropertyNames string

	// StateDir holds the journal (default DefaultStateDir).
	StateDir string
	// Keyring (a keyring file) and Pub (PEM public key files) are the trusted image keys.
	Keyring string
	Pub     []string
	// RootKeys is a rootkeys.json file of further trusted manifest root keys.
	RootKeys                string
	NoBuiltinRoots          bool
	AllowTestRootKeyPackage bool
	AllowRaw                bool
	AllowDowngrade          bool
	// MaxChunkSize refuses aduimg images with larger chunks (default DefaultMaxChunkSize).
	MaxChunkSize int

	HealthTimeout   time.Duration
	MaxTrialReboots int // 0: New's default
	HealthChecks    []health.Check
	// RebootCommand is the argv that restarts the device (default ["systemctl", "reboot"]).
	RebootCommand []string

	// WatchdogDevice ("" = none) is fed while the agent is healthy; WatchdogTimeout, if set,
	// is programmed into it. SystemdWatchdog feeds systemd's service watchdog.
	WatchdogDevice  string
	WatchdogTimeout time.Duration
	SystemdWatchdog bool

	// Downloads: DownloadAttempts consecutive failed requests before a download gives up
	// (default 5), the pause after the first (DownloadBackoff, default 1s) doubling up to
	// DownloadMaxBackoff (default 1m), and DownloadStallTimeout, after which a request that
	// delivers no byte is abandoned and retried (default 60s).
	DownloadAttempts     int
	DownloadBackoff      time.Duration
	DownloadMaxBackoff   time.Duration
	DownloadStallTimeout time.Duration

	// LogLevel is debug, info (default), warn or error.
	LogLevel string
}

// Defaults of the download keys.
const (
	DefaultDownloadAttempts     = 5
	DefaultDownloadBackoff      = time.Second
	DefaultDownloadMaxBackoff   = time.Minute
	DefaultDownloadStallTimeout = 60 * time.Second
)

// agentRawConfig is the [agent] section as written; ParseConfig checks and converts it.
type agentRawConfig struct {
	ConnectionString        string            `toml:"connection_string"`
	ConnectionStringFile    string            `toml:"connection_string_file"`
	X509Cert                string            `toml:"x509_cert"`
	X509Key                 string            `toml:"x509_key"`
	CAFile                  string            `toml:"ca_file"`
	HubAddress              string            `toml:"hub_address"`
	WebSocket               bool              `toml:"websocket"`
	ModelID                 string            `toml:"model_id"`
	Manufacturer            string            `toml:"manufacturer"`
	Model                   string            `toml:"model"`
	Properties              map[string]string `toml:"properties"`
	CompatPropertyNames     string            `toml:"compat_property_names"`
	StateDir                string            `toml:"state_dir"`
	Keyring                 string            `toml:"keyring"`
	Pub                     []string          `toml:"pub"`
	RootKeys                string            `toml:"root_keys"`
	NoBuiltinRoots          bool              `toml:"no_builtin_roots"`
	AllowTestRootKeyPackage bool              `toml:"allow_test_root_key_package"`
	AllowRaw                bool              `toml:"allow_raw"`
	AllowDowngrade          bool              `toml:"allow_downgrade"`
	MaxChunkSize            bytesize.Size     `toml:"max_chunk_size"`
	HealthTimeout           string            `toml:"health_timeout"`
	MaxTrialReboots         int               `toml:"max_trial_reboots"`
	RebootCommand           []string          `toml:"reboot_command"`
	WatchdogDevice          string            `toml:"watchdog_device"`
	WatchdogTimeout         string            `toml:"watchdog_timeout"`
	SystemdWatchdog         bool              `toml:"systemd_watchdog"`
	LogLevel                string            `toml:"log_level"`
	HealthChecks            []agentRawCheck   `toml:"health_check"`
	DownloadAttempts        int               `toml:"download_attempts"`
	DownloadBackoff         string            `toml:"download_backoff"`
	DownloadMaxBackoff      string            `toml:"download_max_backoff"`
	DownloadStallTimeout    string            `toml:"download_stall_timeout"`
}

type agentRawCheck struct {
	Name       string   `toml:"name"`
	Command    []string `toml:"command"`
	Timeout    string   `toml:"timeout"`
	Retries    int      `toml:"retries"`
	RetryDelay string   `toml:"retry_delay"`
	Env        []string `toml:"env"`
}

// LoadConfig reads the [agent] section of the TOML file path; other sections are ignored.
func LoadConfig(path string) (Config, error) {
	return tomlsection.LoadFile(path, ParseConfig)
}

// ParseConfig parses the [agent] section of a TOML document, applies defaults and validates
// it. Other sections belong to other packages and are ignored; unknown keys inside [agent]
// are errors naming the key. Every error wraps ErrConfig and names the key (agent.<key>).
// Nothing is read from the files the section names (see Options, Keyring, HubConfig).
func ParseConfig(data []byte) (Config, error) {
	var raw agentRawConfig
	md, found, err := tomlsection.Decode(data, "agent", &raw)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if !found {
		return Config{}, fmt.Errorf("%w: no [agent] section", ErrConfig)
	}
	// The order of [agent.properties] as written (a Go map has none).
	var order []string
	for _, k := range md.Keys() {
		if len(k) == 3 && k[0] == "agent" && k[1] == "properties" {
			order = append(order, k[2])
		}
	}
	return raw.convert(order, func(key ...string) bool { return md.IsDefined(append([]string{"agent"}, key...)...) })
}

func cfgErr(key, format string, a ...any) error {
	return fmt.Errorf("%w: agent.%s: %s", ErrConfig, key, fmt.Sprintf(format, a...))
}

// cfgReservedProperties are reported by the agent itself: no [agent.properties] entry may
// take their names.
var cfgReservedProperties = []string{"manufacturer", "model", "contractModelId", "aduVer"}

func (r *agentRawConfig) convert(order []string, defined func(key ...string) bool) (Config, error) {
	c := Config{
		ConnectionString: r.ConnectionString, ConnectionStringFile: r.ConnectionStringFile,
		X509Cert: r.X509Cert, X509Key: r.X509Key, CAFile: r.CAFile, HubAddress: r.HubAddress, WebSocket: r.WebSocket,
		ModelID: r.ModelID, Manufacturer: r.Manufacturer, Model: r.Model,
		CompatPropertyNames: r.CompatPropertyNames, StateDir: r.StateDir,
		Keyring: r.Keyring, Pub: r.Pub, RootKeys: r.RootKeys, NoBuiltinRoots: r.NoBuiltinRoots,
		AllowTestRootKeyPackage: r.AllowTestRootKeyPackage, AllowRaw: r.AllowRaw, AllowDowngrade: r.AllowDowngrade,
		MaxTrialReboots: r.MaxTrialReboots, RebootCommand: r.RebootCommand,
		WatchdogDevice: r.WatchdogDevice, SystemdWatchdog: r.SystemdWatchdog, LogLevel: r.LogLevel,
	}

	// Connection.
	if c.ConnectionString != "" && c.ConnectionStringFile != "" {
		return c, cfgErr("connection_string", "give connection_string or connection_string_file, not both")
	}
	if defined("connection_string") && strings.TrimSpace(c.ConnectionString) == "" {
		return c, cfgErr("connection_string", "empty")
	}
	if defined("connection_string_file") && c.ConnectionStringFile == "" {
		return c, cfgErr("connection_string_file", "empty")
	}
	if (c.X509Cert == "") != (c.X509Key == "") {
		if c.X509Cert == "" {
			return c, cfgErr("x509_cert", "missing (x509_key is set; both or neither)")
		}
		return c, cfgErr("x509_key", "missing (x509_cert is set; both or neither)")
	}
	if c.ConnectionString != "" {
		cs, err := iothub.ParseConnectionString(c.ConnectionString)
		if err != nil {
			return c, cfgErr("connection_string", "%v", err)
		}
		if err := cfgCheckX509(cs, c.X509Cert != ""); err != nil {
			return c, err
		}
	}
	if c.ConnectionString == "" && c.ConnectionStringFile == "" && c.X509Cert != "" {
		return c, cfgErr("x509_cert", "set, but there is no connection_string or connection_string_file (HostName=…;DeviceId=…;x509=true)")
	}
	if defined("hub_address") {
		if err := cfgCheckAddress(c.HubAddress); err != nil {
			return c, cfgErr("hub_address", "%q: %v", c.HubAddress, err)
		}
	}
	if c.ModelID == "" {
		c.ModelID = adu.ModelV3
	}
	switch c.ModelID {
	case adu.InterfaceV1, adu.InterfaceV2:
		return c, cfgErr("model_id", "%q is an interface id, not a model id (use one of %s, %s, %s, %s)",
			c.ModelID, adu.ModelV3, adu.ModelContractV3, adu.ModelV2, adu.ModelContractV2)
	}
	if _, err := adu.InterfaceOf(c.ModelID); err != nil {
		return c, cfgErr("model_id", "%q: %v (use one of %s, %s, %s, %s)", c.ModelID, err,
			adu.ModelV3, adu.ModelContractV3, adu.ModelV2, adu.ModelContractV2)
	}

	// Identity.
	if strings.TrimSpace(c.Manufacturer) == "" {
		return c, cfgErr("manufacturer", "missing (the device's manufacturer, reported as deviceProperties.manufacturer)")
	}
	if strings.TrimSpace(c.Model) == "" {
		return c, cfgErr("model", "missing (the device's model, reported as deviceProperties.model)")
	}
	// Keys() lists [agent.properties] in file order; any key it missed goes last, sorted.
	listed := map[string]bool{}
	for _, n := range order {
		listed[n] = true
	}
	var rest []string
	for n := range r.Properties {
		if !listed[n] {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	seen := map[string]bool{}
	for _, name := range append(order, rest...) {
		v, ok := r.Properties[name]
		if !ok {
			continue
		}
		key := "properties." + name
		if name == "" {
			return c, cfgErr("properties", "empty property name")
		}
		for _, res := range cfgReservedProperties {
			if strings.EqualFold(name, res) {
				return c, cfgErr(key, "%q is reported by the agent itself; set manufacturer/model instead", name)
			}
		}
		if strings.ContainsAny(name, ", \t\n") {
			return c, cfgErr(key, "a property name cannot contain a comma or white space")
		}
		if seen[strings.ToLower(name)] {
			return c, cfgErr(key, "named twice (property names are compared without case)")
		}
		if v == "" {
			return c, cfgErr(key, "empty value")
		}
		seen[strings.ToLower(name)] = true
		c.Properties = append(c.Properties, adu.DeviceProperty{Name: name, Value: v})
	}
	if defined("compat_property_names") && c.CompatPropertyNames == "" {
		return c, cfgErr("compat_property_names", "empty")
	}
	if c.CompatPropertyNames == "" {
		c.CompatPropertyNames = DefaultCompatPropertyNames
	}
	names := strings.Split(c.CompatPropertyNames, ",")
	if len(names) > MaxCompatPropertyNames {
		return c, cfgErr("compat_property_names", "%d names, at most %d", len(names), MaxCompatPropertyNames)
	}
	used := map[string]bool{}
	for i, n := range names {
		n = strings.TrimSpace(n)
		names[i] = n
		known := strings.EqualFold(n, "manufacturer") || strings.EqualFold(n, "model")
		for _, p := range c.Properties {
			known = known || strings.EqualFold(n, p.Name)
		}
		switch {
		case n == "":
			return c, cfgErr("compat_property_names", "empty name in %q", c.CompatPropertyNames)
		case used[strings.ToLower(n)]:
			return c, cfgErr("compat_property_names", "%q named twice", n)
		case !known:
			return c, cfgErr("compat_property_names", "%q is neither manufacturer, model nor a key of [agent.properties]", n)
		}
		used[strings.ToLower(n)] = true
	}
	c.CompatPropertyNames = strings.Join(names, ",")

	// Trust.
	if defined("state_dir") && c.StateDir == "" {
		return c, cfgErr("state_dir", "empty")
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	for i, p := range c.Pub {
		if p == "" {
			return c, cfgErr("pub", "entry %d is empty", i)
		}
	}
	if c.Keyring == "" && len(c.Pub) == 0 && !c.AllowRaw {
		return c, cfgErr("keyring", "no trusted image keys: set keyring or pub (or allow_raw for unsigned images only)")
	}
	c.MaxChunkSize = DefaultMaxChunkSize
	if defined("max_chunk_size") {
		n := int64(r.MaxChunkSize)
		if n < image.MinChunkSize || n > image.MaxChunkSize || n%image.ChunkAlign != 0 {
			return c, cfgErr("max_chunk_size", "%d is not a multiple of %d in [%d, %d] (an aduimg chunk size: 4KiB … 64MiB)",
				n, image.ChunkAlign, image.MinChunkSize, image.MaxChunkSize)
		}
		c.MaxChunkSize = int(n)
	}

	// Boot checks, reboot.
	c.HealthTimeout = DefaultHealthTimeout
	if defined("health_timeout") {
		d, err := cfgDuration(r.HealthTimeout)
		if err != nil || d <= 0 {
			return c, cfgErr("health_timeout", "%q is not a positive duration such as \"5m\" or \"90s\"", r.HealthTimeout)
		}
		c.HealthTimeout = d
	}
	if c.MaxTrialReboots < 0 {
		return c, cfgErr("max_trial_reboots", "%d is negative", c.MaxTrialReboots)
	}
	if !defined("reboot_command") {
		c.RebootCommand = DefaultRebootCommand()
	} else if len(c.RebootCommand) == 0 || c.RebootCommand[0] == "" {
		return c, cfgErr("reboot_command", "empty (an argv list such as [\"systemctl\", \"reboot\"])")
	}
	for i, rc := range r.HealthChecks {
		key := fmt.Sprintf("health_check[%d]", i)
		if rc.Name != "" {
			key = fmt.Sprintf("health_check[%d] (%s)", i, rc.Name)
		}
		hc := health.Check{Name: rc.Name, Command: rc.Command, Retries: rc.Retries, Env: rc.Env}
		if rc.Name == "" {
			return c, cfgErr(key+".name", "missing")
		}
		if len(rc.Command) == 0 || rc.Command[0] == "" {
			return c, cfgErr(key+".command", "missing (an argv list such as [\"/usr/bin/systemctl\", \"is-active\", \"app\"])")
		}
		if rc.Timeout != "" {
			d, err := cfgDuration(rc.Timeout)
			if err != nil || d <= 0 {
				return c, cfgErr(key+".timeout", "%q is not a positive duration", rc.Timeout)
			}
			hc.Timeout = d
		}
		if rc.Retries < 0 {
			return c, cfgErr(key+".retries", "%d is negative", rc.Retries)
		}
		if rc.RetryDelay != "" {
			d, err := cfgDuration(rc.RetryDelay)
			if err != nil || d < 0 {
				return c, cfgErr(key+".retry_delay", "%q is not a duration", rc.RetryDelay)
			}
			hc.RetryDelay = d
		}
		for _, e := range rc.Env {
			if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
				return c, cfgErr(key+".env", "%q is not KEY=value", e)
			}
		}
		c.HealthChecks = append(c.HealthChecks, hc)
	}
	if err := health.Validate(c.HealthChecks); err != nil {
		return c, cfgErr("health_check", "%v", err)
	}

	// Downloads.
	c.DownloadAttempts = DefaultDownloadAttempts
	if defined("download_attempts") {
		if r.DownloadAttempts < 1 {
			return c, cfgErr("download_attempts", "%d: at least 1 (1 means no retries)", r.DownloadAttempts)
		}
		c.DownloadAttempts = r.DownloadAttempts
	}
	for _, d := range []struct {
		key  string
		raw  string
		dst  *time.Duration
		def  time.Duration
		desc string
	}{
		{"download_backoff", r.DownloadBackoff, &c.DownloadBackoff, DefaultDownloadBackoff, "a positive duration such as \"1s\""},
		{"download_max_backoff", r.DownloadMaxBackoff, &c.DownloadMaxBackoff, DefaultDownloadMaxBackoff, "a positive duration such as \"1m\""},
		{"download_stall_timeout", r.DownloadStallTimeout, &c.DownloadStallTimeout, DefaultDownloadStallTimeout, "a positive duration such as \"60s\""},
	} {
		*d.dst = d.def
		if !defined(d.key) {
			continue
		}
		v, err := cfgDuration(d.raw)
		if err != nil || v <= 0 {
			return c, cfgErr(d.key, "%q is not %s", d.raw, d.desc)
		}
		*d.dst = v
	}
	if c.DownloadMaxBackoff < c.DownloadBackoff {
		return c, cfgErr("download_max_backoff", "%v is less than download_backoff (%v)", c.DownloadMaxBackoff, c.DownloadBackoff)
	}

	// Watchdog, logging.
	if defined("watchdog_device") && c.WatchdogDevice == "" {
		return c, cfgErr("watchdog_device", "empty (leave it out for no watchdog device)")
	}
	if r.WatchdogTimeout != "" {
		if c.WatchdogDevice == "" {
			return c, cfgErr("watchdog_timeout", "set without watchdog_device")
		}
		d, err := cfgDuration(r.WatchdogTimeout)
		if err != nil || d < 2*time.Second {
			return c, cfgErr("watchdog_timeout", "%q is not a duration of at least 2s", r.WatchdogTimeout)
		}
		c.WatchdogTimeout = d
	}
	switch c.LogLevel {
	case "":
		c.LogLevel = DefaultLogLevel
	case "debug", "info", "warn", "error":
	default:
		return c, cfgErr("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	return c, nil
}

func cfgCheckX509(cs iothub.ConnectionString, haveCert bool) error {
	switch {
	case cs.X509 && !haveCert:
		return cfgErr("x509_cert", "missing: the connection string says x509=true, which needs x509_cert and x509_key")
	case !cs.X509 && haveCert:
		return cfgErr("x509_cert", "set, but the connection string has a SharedAccessKey, not x509=true")
	}
	return nil
}

// cfgCheckAddress accepts "host:port" with a host and a port number 1..65535.
func cfgCheckAddress(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("want host:port, e.g. \"localhost:8883\" or \"[::1]:8883\": %w", err)
	}
	if host == "" {
		return errors.New("no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number 1..65535", port)
	}
	return nil
}

// parseDuration parses a Go duration ("90s", "5m", "1h30m").
func cfgDuration(s string) (time.Duration, error) {
	return time.ParseDuration(strings.TrimSpace(s))
}

// Level is the slog level of LogLevel.
func (c Config) Level() slog.Level {
	switch c.LogLevel {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Options returns the Options this section decides: identity, model, state folder, trusted
// manifest roots (read from RootKeys), the install flags, the health checks and the trial
// bounds. The caller adds Layout, Bootloader, Keyring (see LoadKeyring), Reboot, Logger and the
// rest. A RootKeys file that cannot be read wraps the os error; one that does not parse
// wraps ErrConfig.
func (c Config) Options() (Options, error) {
	o := Options{
		StateDir:                c.StateDir,
		Manufacturer:            c.Manufacturer,
		Model:                   c.Model,
		Properties:              append([]adu.DeviceProperty(nil), c.Properties...),
		CompatPropertyNames:     c.CompatPropertyNames,
		ModelID:                 c.ModelID,
		NoBuiltinRoots:          c.NoBuiltinRoots,
		AllowTestRootKeyPackage: c.AllowTestRootKeyPackage,
		AllowRaw:                c.AllowRaw,
		AllowDowngrade:          c.AllowDowngrade,
		MaxChunkSize:            c.MaxChunkSize,
		HealthChecks:            append([]health.Check(nil), c.HealthChecks...),
		HealthOptions:           health.Options{StopOnFailure: true},
		HealthTimeout:           c.HealthTimeout,
		MaxTrialReboots:         c.MaxTrialReboots,
		Retry:                   download.RetryPolicy{Attempts: c.DownloadAttempts, Backoff: c.DownloadBackoff, MaxBackoff: c.DownloadMaxBackoff},
		StallTimeout:            c.DownloadStallTimeout,
	}
	if c.RootKeys != "" {
		b, err := os.ReadFile(c.RootKeys)
		if err != nil {
			return o, fmt.Errorf("agent.root_keys: %w", err)
		}
		if o.Roots, err = adu.ParseRootKeys(b); err != nil {
			return o, fmt.Errorf("%w: agent.root_keys: %s: %w", ErrConfig, c.RootKeys, err)
		}
	}
	if c.NoBuiltinRoots && len(o.Roots) == 0 {
		return o, cfgErr("no_builtin_roots", "set without root_keys: no manifest would ever verify")
	}
	return o, nil
}

// LoadKeyring loads the trusted image keys: the keyring file plus the pub files
// (image.LoadTrust). With neither (allow_raw) it is an empty keyring.
func (c Config) LoadKeyring() (*image.Keyring, error) {
	kr, err := image.LoadTrust(c.Keyring, c.Pub)
	if err != nil {
		if image.Rejected(err) {
			return nil, fmt.Errorf("%w: agent.keyring/pub: %w", ErrConfig, err)
		}
		return nil, fmt.Errorf("agent.keyring/pub: %w", err)
	}
	return kr, nil
}

// ReadConnectionString returns the connection string, from the config or its file (whose
// first non-empty, non-comment line counts). It is checked against the X.509 settings.
func (c Config) ReadConnectionString() (string, error) {
	s := c.ConnectionString
	if c.ConnectionStringFile != "" {
		b, err := os.ReadFile(c.ConnectionStringFile)
		if err != nil {
			return "", fmt.Errorf("agent.connection_string_file: %w", err)
		}
		s = ""
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				s = l
				break
			}
		}
		if s == "" {
			return "", cfgErr("connection_string_file", "%s holds no connection string", c.ConnectionStringFile)
		}
	}
	if s == "" {
		return "", cfgErr("connection_string", "missing: set connection_string_file (or connection_string) to the device's IoT Hub connection string")
	}
	cs, err := iothub.ParseConnectionString(s)
	if err != nil {
		key := "connection_string"
		if c.ConnectionStringFile != "" {
			key = "connection_string_file"
		}
		return "", cfgErr(key, "%v", err)
	}
	if err := cfgCheckX509(cs, c.X509Cert != ""); err != nil {
		return "", err
	}
	return s, nil
}

// HubConfig returns the iothub.Config of the connection: connection string (ReadConnectionString),
// the address to dial (HubAddress, else iothub.DefaultAddress), model id, WebSocket, the
// client certificate and the CA bundle. The caller may add Logger, OnConnectionChange and the like. Files that cannot be read wrap the os error; contents
// that do not parse wrap ErrConfig.
func (c Config) HubConfig() (iothub.Config, error) {
	s, err := c.ReadConnectionString()
	if err != nil {
		return iothub.Config{}, err
	}
	hc := iothub.Config{ConnectionString: s, Address: c.HubAddress, ModelID: c.ModelID, WebSocket: c.WebSocket}
	if hc.Address == "" {
		cs, _ := iothub.ParseConnectionString(s) // ReadConnectionString parsed it
		hc.Address = iothub.DefaultAddress(cs, c.WebSocket)
	}
	if c.X509Cert != "" {
		for _, p := range []string{c.X509Cert, c.X509Key} {
			if _, err := os.Stat(p); err != nil {
				return hc, fmt.Errorf("agent.x509_cert/x509_key: %w", err)
			}
		}
		cert, err := tls.LoadX509KeyPair(c.X509Cert, c.X509Key)
		if err != nil {
			return hc, cfgErr("x509_cert", "%s / %s: %v", c.X509Cert, c.X509Key, err)
		}
		hc.ClientCertificate = &cert
	}
	if c.CAFile != "" {
		if _, err := os.Stat(c.CAFile); err != nil {
			return hc, fmt.Errorf("agent.ca_file: %w", err)
		}
		pool, err := iothub.LoadCAFile(c.CAFile)
		if err != nil {
			return hc, cfgErr("ca_file", "%v", err)
		}
		hc.TLSConfig = &tls.Config{RootCAs: pool}
	}
	return hc, nil
}
