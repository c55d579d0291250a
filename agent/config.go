package agent

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/dps"
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
	// MaxHeaderSize is the largest aduimg header the agent reads before it checks its
	// signature: 4 MiB, a chunk table of about 87,000 chunks (85 GiB of 1 MiB chunks). It keeps
	// a forged header's cost within the agent's memory budget where the slot's size does not
	// bound it (a large or unsized slot).
	MaxHeaderSize = 4 << 20
)

// DefaultRebootCommand is the reboot_command default.
func DefaultRebootCommand() []string { return []string{"systemctl", "reboot"} }

// Settings are the [agent] keys that decide how the agent behaves: who the device is, what
// it trusts, how it checks a new bank. Config decodes them from the file and Options carries
// them to New as they are; zero values get New's defaults.
type Settings struct {
	// StateDir holds the journal (the Record) and the stored root-key package (default
	// DefaultStateDir).
	StateDir string `toml:"state_dir"`

	// Device identity, reported as deviceProperties.
	Manufacturer string `toml:"manufacturer"`
	Model        string `toml:"model"`
	// Properties are further compatibility properties ([agent.properties]), in this order.
	Properties Properties `toml:"properties"`
	// CompatPropertyNames (default "manufacturer,model").
	CompatPropertyNames string `toml:"compat_property_names"`
	// ModelID is the PnP model the connection announces (default adu.ModelV3); it decides
	// the interface (extended result code form, root-key packages) and whether
	// deviceInformation is reported.
	ModelID string `toml:"model_id"`

	// NoBuiltinRoots trusts only Options.Roots (Config.RootKeys), not the built-in manifest
	// root keys: tests and the local stand-in.
	NoBuiltinRoots bool `toml:"no_builtin_roots"`
	// AllowTestRootKeyPackage accepts root-key packages marked isTest.
	AllowTestRootKeyPackage bool `toml:"allow_test_root_key_package"`
	// AllowRaw accepts files that are no aduimg/MCUboot image (checked by the ADU hash).
	AllowRaw bool `toml:"allow_raw"`
	// AllowDowngrade accepts image versions lower than the running one (the security
	// counter of aduimg and MCUboot images stays a hard floor).
	AllowDowngrade bool `toml:"allow_downgrade"`
	// MaxChunkSize refuses aduimg images with larger chunks (default DefaultMaxChunkSize).
	MaxChunkSize bytesize.Size `toml:"max_chunk_size"`
	// AdaptiveCache is the most bytes of the chunk store's ranges an adaptive install into a
	// UBI volume keeps in StateDir (FrameCacheDir), so that the install that starts over after
	// a power cut does not fetch them again (Config's default DefaultAdaptiveCache; 0: none).
	AdaptiveCache bytesize.Size `toml:"adaptive_cache"`

	// Health checks run after booting into a pending bank, within HealthTimeout (default
	// DefaultHealthTimeout).
	HealthChecks  HealthChecks  `toml:"health_check"`
	HealthTimeout time.Duration `toml:"health_timeout"`
	// MaxTrialReboots bounds reboots into a pending bank that come back in the old one
	// before the update counts as rolled back (0: New's default, 3).
	MaxTrialReboots int `toml:"max_trial_reboots"`

	// Diagnostics ([agent.diagnostics]) are the logs a remote log collection uploads.
	Diagnostics Diagnostics `toml:"diagnostics"`
}

// Config is the [agent] section of the device configuration: how the agent reaches IoT Hub,
// who the device is, what it trusts, and how it checks a new bank. ParseConfig and
// LoadConfig decode the file straight into it, over the defaults, and validate it; Options,
// LoadKeyring and HubConfig turn it into what New and iothub.Dial take.
type Config struct {
	Settings

	// IoT Hub identity: the device connection string, inline or (preferred, mode 0600) in a
	// file; at most one of the two. With "…;x509=true" X509Cert and X509Key authenticate.
	ConnectionString     string `toml:"connection_string"`
	ConnectionStringFile string `toml:"connection_string_file"`
	X509Cert             string `toml:"x509_cert"`
	X509Key              string `toml:"x509_key"`
	// CAFile replaces the built-in Azure roots with a PEM bundle (iothub.LoadCAFile).
	CAFile string `toml:"ca_file"`
	// HubAddress ("host:port", "" = the connection string's GatewayHostName or HostName on
	// port 8883, 443 with WebSocket) is where the agent connects, always over TLS; the
	// server's certificate must be valid for its host.
	HubAddress string `toml:"hub_address"`
	// WebSocket carries MQTT over WebSockets on port 443.
	WebSocket bool `toml:"websocket"`
	// Proxy ("http://host:port") carries every connection of the agent (IoT Hub and DPS over
	// WebSockets through CONNECT, downloads); "" = the environment's (HTTPS_PROXY,
	// HTTP_PROXY, NO_PROXY, as net/http reads them).
	Proxy string `toml:"proxy"`

	// Provisioning is how the device gets its IoT Hub identity: ProvisionConnectionString
	// (default) or ProvisionDPS, with the keys below (see Connector).
	Provisioning string `toml:"provisioning"`
	// DPS: the id scope, the registration id, the endpoint (default
	// dps.DefaultGlobalEndpoint), and one credential: the device's key (individual
	// enrollment), an enrollment group's key (the device's is derived), inline or in a file,
	// or X509Cert and X509Key.
	IDScope          string `toml:"id_scope"`
	RegistrationID   string `toml:"registration_id"`
	GlobalEndpoint   string `toml:"global_endpoint"`
	SymmetricKey     string `toml:"symmetric_key"`
	SymmetricKeyFile string `toml:"symmetric_key_file"`
	GroupKey         string `toml:"group_key"`
	GroupKeyFile     string `toml:"group_key_file"`

	// Keyring (a keyring file) and Pub (PEM public key files) are the trusted image keys.
	Keyring string   `toml:"keyring"`
	Pub     []string `toml:"pub"`
	// RootKeys is a rootkeys.json file of further trusted manifest root keys.
	RootKeys string `toml:"root_keys"`

	// RebootCommand is the argv that restarts the device (default ["systemctl", "reboot"]).
	RebootCommand []string `toml:"reboot_command"`

	// WatchdogDevice ("" = none) is fed while the agent is healthy; WatchdogTimeout, if set,
	// is programmed into it. SystemdWatchdog feeds systemd's service watchdog.
	WatchdogDevice  string        `toml:"watchdog_device"`
	WatchdogTimeout time.Duration `toml:"watchdog_timeout"`
	SystemdWatchdog bool          `toml:"systemd_watchdog"`

	// Downloads: DownloadAttempts consecutive failed requests before a download gives up
	// (default 5), the pause after the first (DownloadBackoff, default 1s) doubling up to
	// DownloadMaxBackoff (default 1m), and DownloadStallTimeout, after which a request that
	// delivers no byte is abandoned and retried (default 60s).
	DownloadAttempts     int           `toml:"download_attempts"`
	DownloadBackoff      time.Duration `toml:"download_backoff"`
	DownloadMaxBackoff   time.Duration `toml:"download_max_backoff"`
	DownloadStallTimeout time.Duration `toml:"download_stall_timeout"`

	// LogLevel is debug, info (default), warn or error.
	LogLevel string `toml:"log_level"`

	// FactoryUpdateID ([agent.factory_update_id]) is the update the factory image is
	// (Options.FactoryUpdateID).
	FactoryUpdateID *FactoryUpdateID `toml:"factory_update_id"`
}

// Defaults of the download keys.
const (
	DefaultDownloadAttempts     = 5
	DefaultDownloadBackoff      = time.Second
	DefaultDownloadMaxBackoff   = time.Minute
	DefaultDownloadStallTimeout = 60 * time.Second
)

// defaultConfig is the [agent] section with every default filled in: ParseConfig decodes
// the file over it, so a key left out keeps its default and a key written empty is seen.
func defaultConfig() Config {
	return Config{
		Settings: Settings{
			StateDir:            DefaultStateDir,
			ModelID:             adu.ModelV3,
			CompatPropertyNames: DefaultCompatPropertyNames,
			MaxChunkSize:        DefaultMaxChunkSize,
			AdaptiveCache:       DefaultAdaptiveCache,
			HealthTimeout:       DefaultHealthTimeout,
		},
		RebootCommand:        DefaultRebootCommand(),
		Provisioning:         ProvisionConnectionString,
		GlobalEndpoint:       dps.DefaultGlobalEndpoint,
		DownloadAttempts:     DefaultDownloadAttempts,
		DownloadBackoff:      DefaultDownloadBackoff,
		DownloadMaxBackoff:   DefaultDownloadMaxBackoff,
		DownloadStallTimeout: DefaultDownloadStallTimeout,
		LogLevel:             DefaultLogLevel,
	}
}

// LoadConfig reads the [agent] section of the TOML file path; other sections are ignored.
func LoadConfig(path string) (Config, error) {
	return tomlsection.LoadFile(path, ParseConfig)
}

// ParseConfig parses the [agent] section of a TOML document, applies defaults and validates
// it. Other sections belong to other packages and are ignored; unknown keys inside [agent]
// are errors naming the key. Every error wraps ErrConfig and names the key (agent.<key>),
// and the line where the decoder refused a value.
// Nothing is read from the files the section names (see Options, Keyring, HubConfig).
func ParseConfig(data []byte) (Config, error) {
	c := defaultConfig()
	md, found, err := tomlsection.Decode(data, "agent", &c)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if !found {
		return Config{}, fmt.Errorf("%w: no [agent] section", ErrConfig)
	}
	c.Properties.sortAs(tomlsection.Subkeys(md, "agent", "properties"))
	written := func(key string) bool { return md.IsDefined("agent", key) }
	for _, check := range []func() error{
		func() error { return c.checkNotEmpty(written) },
		func() error { return c.checkProvisioning(written) },
		c.checkConnection,
		c.checkProxy,
		c.checkModelID,
		c.checkIdentity,
		c.checkProperties,
		c.checkCompatPropertyNames,
		c.checkTrust,
		c.checkHealth,
		c.checkDownloads,
		func() error { return c.checkWatchdog(written) },
		c.checkLogLevel,
		c.checkFactoryUpdateID,
		c.Diagnostics.check,
	} {
		if err := check(); err != nil {
			return c, err
		}
	}
	return c, nil
}

func cfgErr(key, format string, a ...any) error {
	return fmt.Errorf("%w: agent.%s: %s", ErrConfig, key, fmt.Sprintf(format, a...))
}

// checkNotEmpty refuses a key written with an empty value: leaving it out is how a config
// says "none" or "the default".
func (c *Config) checkNotEmpty(written func(key string) bool) error {
	for _, k := range []struct{ key, value, hint string }{
		{"connection_string", strings.TrimSpace(c.ConnectionString), ""},
		{"connection_string_file", c.ConnectionStringFile, ""},
		{"hub_address", c.HubAddress, " (leave it out to connect to the connection string's host)"},
		{"compat_property_names", c.CompatPropertyNames, ""},
		{"state_dir", c.StateDir, ""},
		{"watchdog_device", c.WatchdogDevice, " (leave it out for no watchdog device)"},
	} {
		if written(k.key) && k.value == "" {
			return cfgErr(k.key, "empty%s", k.hint)
		}
	}
	return nil
}

// checkConnection: one connection string or its file, X.509 settings that match it, a
// hub_address that is host:port.
func (c *Config) checkConnection() error {
	if c.ConnectionString != "" && c.ConnectionStringFile != "" {
		return cfgErr("connection_string", "give connection_string or connection_string_file, not both")
	}
	if (c.X509Cert == "") != (c.X509Key == "") {
		if c.X509Cert == "" {
			return cfgErr("x509_cert", "missing (x509_key is set; both or neither)")
		}
		return cfgErr("x509_key", "missing (x509_cert is set; both or neither)")
	}
	if c.ConnectionString != "" {
		cs, err := iothub.ParseConnectionString(c.ConnectionString)
		if err != nil {
			return cfgErr("connection_string", "%v", err)
		}
		if err := cfgCheckX509(cs, c.X509Cert != ""); err != nil {
			return err
		}
	}
	if c.ConnectionString == "" && c.ConnectionStringFile == "" && c.X509Cert != "" && c.Provisioning != ProvisionDPS {
		return cfgErr("x509_cert", "set, but there is no connection_string or connection_string_file (HostName=…;DeviceId=…;x509=true)")
	}
	if c.HubAddress != "" {
		if err := cfgCheckAddress(c.HubAddress); err != nil {
			return cfgErr("hub_address", "%q: %v", c.HubAddress, err)
		}
	}
	return nil
}

// checkModelID: a model id the agent speaks (not an interface id).
func (c *Config) checkModelID() error {
	known := fmt.Sprintf("use one of %s, %s, %s, %s", adu.ModelV3, adu.ModelContractV3, adu.ModelV2, adu.ModelContractV2)
	switch c.ModelID {
	case adu.InterfaceV1, adu.InterfaceV2:
		return cfgErr("model_id", "%q is an interface id, not a model id (%s)", c.ModelID, known)
	}
	if _, err := adu.InterfaceOf(c.ModelID); err != nil {
		return cfgErr("model_id", "%q: %v (%s)", c.ModelID, err, known)
	}
	return nil
}

// checkIdentity: manufacturer and model are required.
func (c *Config) checkIdentity() error {
	if strings.TrimSpace(c.Manufacturer) == "" {
		return cfgErr("manufacturer", "missing (the device's manufacturer, reported as deviceProperties.manufacturer)")
	}
	if strings.TrimSpace(c.Model) == "" {
		return cfgErr("model", "missing (the device's model, reported as deviceProperties.model)")
	}
	return nil
}

// cfgReservedProperties are reported by the agent itself: no [agent.properties] entry may
// take their names.
var cfgReservedProperties = []string{"manufacturer", "model", "contractModelId", "aduVer"}

// checkProperties: names that are not the agent's own, free of commas and white space,
// unique without case; values that are not empty.
func (c *Config) checkProperties() error {
	seen := map[string]bool{}
	for _, p := range c.Properties {
		key := "properties." + p.Name
		switch {
		case p.Name == "":
			return cfgErr("properties", "empty property name")
		case slices.ContainsFunc(cfgReservedProperties, func(r string) bool { return strings.EqualFold(p.Name, r) }):
			return cfgErr(key, "%q is reported by the agent itself; set manufacturer/model instead", p.Name)
		case strings.ContainsAny(p.Name, ", \t\n"):
			return cfgErr(key, "a property name cannot contain a comma or white space")
		case seen[strings.ToLower(p.Name)]:
			return cfgErr(key, "named twice (property names are compared without case)")
		case p.Value == "":
			return cfgErr(key, "empty value")
		}
		seen[strings.ToLower(p.Name)] = true
	}
	return nil
}

// checkCompatPropertyNames: at most MaxCompatPropertyNames names of known properties, each
// once. The list is kept trimmed ("model,hwrev"), as the service compares it.
func (c *Config) checkCompatPropertyNames() error {
	names := strings.Split(c.CompatPropertyNames, ",")
	if len(names) > MaxCompatPropertyNames {
		return cfgErr("compat_property_names", "%d names, at most %d", len(names), MaxCompatPropertyNames)
	}
	used := map[string]bool{}
	for i, n := range names {
		n = strings.TrimSpace(n)
		names[i] = n
		known := strings.EqualFold(n, "manufacturer") || strings.EqualFold(n, "model") ||
			slices.ContainsFunc(c.Properties, func(p adu.DeviceProperty) bool { return strings.EqualFold(n, p.Name) })
		switch {
		case n == "":
			return cfgErr("compat_property_names", "empty name in %q", c.CompatPropertyNames)
		case used[strings.ToLower(n)]:
			return cfgErr("compat_property_names", "%q named twice", n)
		case !known:
			return cfgErr("compat_property_names", "%q is neither manufacturer, model nor a key of [agent.properties]", n)
		}
		used[strings.ToLower(n)] = true
	}
	c.CompatPropertyNames = strings.Join(names, ",")
	return nil
}

// checkTrust: some trusted image key (unless only raw files are allowed), and a chunk size
// limit the aduimg format can have.
func (c *Config) checkTrust() error {
	if i := slices.Index(c.Pub, ""); i >= 0 {
		return cfgErr("pub", "entry %d is empty", i)
	}
	if c.Keyring == "" && len(c.Pub) == 0 && !c.AllowRaw {
		return cfgErr("keyring", "no trusted image keys: set keyring or pub (or allow_raw for unsigned images only)")
	}
	if n := int64(c.MaxChunkSize); n < image.MinChunkSize || n > image.MaxChunkSize || n%image.ChunkAlign != 0 {
		return cfgErr("max_chunk_size", "%d is not a multiple of %d in [%d, %d] (an aduimg chunk size: 4KiB … 64MiB)",
			n, image.ChunkAlign, image.MinChunkSize, image.MaxChunkSize)
	}
	return nil
}

// checkHealth: a positive health_timeout, a reboot command, health checks that can run.
func (c *Config) checkHealth() error {
	if c.HealthTimeout <= 0 {
		return cfgErr("health_timeout", "%v is not a positive duration such as \"5m\" or \"90s\"", c.HealthTimeout)
	}
	if c.MaxTrialReboots < 0 {
		return cfgErr("max_trial_reboots", "%d is negative", c.MaxTrialReboots)
	}
	if len(c.RebootCommand) == 0 || c.RebootCommand[0] == "" {
		return cfgErr("reboot_command", "empty (an argv list such as [\"systemctl\", \"reboot\"])")
	}
	for i, hc := range c.HealthChecks {
		if err := checkHealthCheck(checkKey(i, hc.Name), hc); err != nil {
			return err
		}
	}
	if err := health.Validate(c.HealthChecks); err != nil {
		return cfgErr("health_check", "%v", err)
	}
	return nil
}

// checkKey names a [[agent.health_check]] entry in errors: "health_check[1] (network)".
func checkKey(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("health_check[%d]", i)
	}
	return fmt.Sprintf("health_check[%d] (%s)", i, name)
}

func checkHealthCheck(key string, hc health.Check) error {
	switch {
	case hc.Name == "":
		return cfgErr(key+".name", "missing")
	case len(hc.Command) == 0 || hc.Command[0] == "":
		return cfgErr(key+".command", "missing (an argv list such as [\"/usr/bin/systemctl\", \"is-active\", \"app\"])")
	case hc.Retries < 0:
		return cfgErr(key+".retries", "%d is negative", hc.Retries)
	case hc.RetryDelay < 0:
		return cfgErr(key+".retry_delay", "%v is negative", hc.RetryDelay)
	}
	for _, e := range hc.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return cfgErr(key+".env", "%q is not KEY=value", e)
		}
	}
	return nil
}

// checkDownloads: at least one attempt, positive pauses, a backoff cap no lower than the
// first pause.
func (c *Config) checkDownloads() error {
	if c.DownloadAttempts < 1 {
		return cfgErr("download_attempts", "%d: at least 1 (1 means no retries)", c.DownloadAttempts)
	}
	for _, d := range []struct {
		key     string
		v       time.Duration
		example string
	}{
		{"download_backoff", c.DownloadBackoff, "1s"},
		{"download_max_backoff", c.DownloadMaxBackoff, "1m"},
		{"download_stall_timeout", c.DownloadStallTimeout, "60s"},
	} {
		if d.v <= 0 {
			return cfgErr(d.key, "%v is not a positive duration such as %q", d.v, d.example)
		}
	}
	if c.DownloadMaxBackoff < c.DownloadBackoff {
		return cfgErr("download_max_backoff", "%v is less than download_backoff (%v)", c.DownloadMaxBackoff, c.DownloadBackoff)
	}
	return nil
}

// checkWatchdog: a watchdog timeout only with a device, and long enough to feed in time.
func (c *Config) checkWatchdog(written func(key string) bool) error {
	switch {
	case !written("watchdog_timeout"):
	case c.WatchdogDevice == "":
		return cfgErr("watchdog_timeout", "set without watchdog_device")
	case c.WatchdogTimeout < 2*time.Second:
		return cfgErr("watchdog_timeout", "%v is not a duration of at least 2s", c.WatchdogTimeout)
	}
	return nil
}

func (c *Config) checkLogLevel() error {
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
		return nil
	}
	return cfgErr("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
}

func (c *Config) checkFactoryUpdateID() error {
	if c.FactoryUpdateID == nil {
		return nil
	}
	return c.FactoryUpdateID.check()
}

// Properties are the [agent.properties] entries, name = "value".
type Properties []adu.DeviceProperty

// UnmarshalTOML implements BurntSushi/toml's Unmarshaler: a table of strings, sorted by name
// until ParseConfig puts them in file order (sortAs).
func (p *Properties) UnmarshalTOML(v any) error {
	t, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("agent.properties: want a table of name = \"value\", not %T", v)
	}
	for _, name := range slices.Sorted(maps.Keys(t)) {
		s, ok := t[name].(string)
		if !ok {
			return fmt.Errorf("agent.properties.%s: %v is not a string (write it in quotes)", name, t[name])
		}
		*p = append(*p, adu.DeviceProperty{Name: name, Value: s})
	}
	return nil
}

// sortAs puts p in the order of names; a property that names leaves out stays last, by name.
func (p Properties) sortAs(names []string) {
	pos := func(q adu.DeviceProperty) int {
		if i := slices.Index(names, q.Name); i >= 0 {
			return i
		}
		return len(names)
	}
	slices.SortStableFunc(p, func(a, b adu.DeviceProperty) int { return cmp.Compare(pos(a), pos(b)) })
}

// HealthChecks are the [[agent.health_check]] entries, in order.
type HealthChecks []health.Check

// UnmarshalTOML implements BurntSushi/toml's Unmarshaler. It decodes each table itself so
// that a bad value is named with its entry ("agent.health_check[1] (network).timeout");
// durations are Go duration strings ("30s").
func (hc *HealthChecks) UnmarshalTOML(v any) error {
	tables, ok := v.([]map[string]any)
	if !ok {
		return fmt.Errorf("agent.health_check: want [[agent.health_check]] tables, not %T", v)
	}
	for i, t := range tables {
		name, _ := t["name"].(string)
		c, err := decodeHealthCheck(checkKey(i, name), t)
		if err != nil {
			return err
		}
		*hc = append(*hc, c)
	}
	return nil
}

func decodeHealthCheck(key string, t map[string]any) (health.Check, error) {
	var c health.Check
	for _, k := range slices.Sorted(maps.Keys(t)) {
		var err error
		switch v := t[k]; k {
		case "name":
			c.Name, err = tomlAs[string](v, "a string")
		case "command":
			c.Command, err = tomlStrings(v)
		case "env":
			c.Env, err = tomlStrings(v)
		case "retries":
			var n int64
			n, err = tomlAs[int64](v, "an integer")
			c.Retries = int(n)
		case "timeout": // written, so not the default: positive
			if c.Timeout, err = tomlDuration(v); err == nil && c.Timeout <= 0 {
				err = fmt.Errorf("%v is not a positive duration", c.Timeout)
			}
		case "retry_delay":
			c.RetryDelay, err = tomlDuration(v)
		default:
			return c, fmt.Errorf("unknown key(s) in the agent section: agent.health_check.%s (in %s)", k, key)
		}
		if err != nil {
			return c, fmt.Errorf("agent.%s.%s: %w", key, k, err)
		}
	}
	return c, nil
}

// tomlAs returns a decoded TOML value as a T, or an error saying it is not what (a string).
func tomlAs[T any](v any, what string) (T, error) {
	t, ok := v.(T)
	if !ok {
		return t, fmt.Errorf("%#v is not %s", v, what)
	}
	return t, nil
}

func tomlStrings(v any) ([]string, error) {
	list, err := tomlAs[[]any](v, `a list of strings such as ["a", "b"]`)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(list))
	for i := range list {
		if out[i], err = tomlAs[string](list[i], "a string"); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
	}
	return out, nil
}

// tomlDuration reads a Go duration string ("30s", "1m30s"); an integer would be nanoseconds
// to Go and seconds to a person, so it is refused.
func tomlDuration(v any) (time.Duration, error) {
	s, err := tomlAs[string](v, `a duration with its unit, such as "30s" or "5m"`)
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as \"30s\" or \"5m\"", s)
	}
	return d, nil
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

// addTLS loads the client certificate (x509_cert, x509_key) and the CA bundle (ca_file)
// into hc, where configured.
func (c Config) addTLS(hc *iothub.Config) error {
	if c.X509Cert != "" {
		for _, p := range []string{c.X509Cert, c.X509Key} {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("agent.x509_cert/x509_key: %w", err)
			}
		}
		cert, err := tls.LoadX509KeyPair(c.X509Cert, c.X509Key)
		if err != nil {
			return cfgErr("x509_cert", "%s / %s: %v", c.X509Cert, c.X509Key, err)
		}
		hc.ClientCertificate = &cert
	}
	if c.CAFile == "" {
		return nil
	}
	if _, err := os.Stat(c.CAFile); err != nil {
		return fmt.Errorf("agent.ca_file: %w", err)
	}
	pool, err := iothub.LoadCAFile(c.CAFile)
	if err != nil {
		return cfgErr("ca_file", "%v", err)
	}
	hc.TLSConfig = &tls.Config{RootCAs: pool}
	return nil
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

// Options returns the Options this section decides: its Settings, the trusted manifest
// roots (read from RootKeys), the download retries and stall timeout. The caller adds Layout, Bootloader, Keyring (see LoadKeyring), Reboot, Logger and the
// rest. A RootKeys file that cannot be read wraps the os error; one that does not parse
// wraps ErrConfig.
func (c Config) Options() (Options, error) {
	o := Options{
		Settings:      c.Settings,
		HealthOptions: health.Options{StopOnFailure: true},
		Retry:         download.RetryPolicy{Attempts: c.DownloadAttempts, Backoff: c.DownloadBackoff, MaxBackoff: c.DownloadMaxBackoff},
		StallTimeout:  c.DownloadStallTimeout,
	}
	o.Properties = slices.Clone(c.Properties)
	o.HealthChecks = slices.Clone(c.HealthChecks)
	if c.RootKeys != "" {
		b, err := os.ReadFile(c.RootKeys)
		if err != nil {
			return o, fmt.Errorf("agent.root_keys: %w", err)
		}
		if o.Roots, err = adu.ParseRootKeys(b); err != nil {
			return o, fmt.Errorf("%w: agent.root_keys: %s: %w", ErrConfig, c.RootKeys, err)
		}
	}
	if c.FactoryUpdateID != nil {
		id, err := c.FactoryUpdateID.resolve()
		if err != nil {
			return o, err
		}
		o.FactoryUpdateID = id
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
	return hc, c.addTLS(&hc)
}
