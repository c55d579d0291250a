package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/dps"
	"github.com/aduflash/aduflash/health"
	"github.com/aduflash/aduflash/image"
)

const cfgTestKey = "c2VjcmV0a2V5MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI="

// TestConfigSample parses the documented sample examples/aduagent.toml.
func TestConfigSample(t *testing.T) {
	c, err := LoadConfig(filepath.Join("..", "examples", "aduagent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Settings: Settings{
			ModelID:             adu.ModelV3,
			Manufacturer:        "contoso",
			Model:               "toaster",
			Properties:          []adu.DeviceProperty{{Name: "hwrev", Value: "2"}},
			CompatPropertyNames: "manufacturer,model,hwrev",
			StateDir:            "/var/lib/aduflash",
			MaxChunkSize:        4 << 20,
			AdaptiveCache:       32 << 20,
			HealthTimeout:       5 * time.Minute,
			MaxTrialReboots:     3,
			HealthChecks: []health.Check{
				{Name: "app", Command: []string{"/usr/bin/systemctl", "is-active", "--quiet", "toaster-app.service"},
					Timeout: 30 * time.Second, Retries: 5, RetryDelay: 10 * time.Second},
				{Name: "network", Command: []string{"/bin/ping", "-c", "1", "-W", "5", "contoso.azure-devices.net"},
					Retries: 2, RetryDelay: 5 * time.Second, Env: []string{"LC_ALL=C"}},
			},
			Diagnostics: Diagnostics{Files: []string{"/var/log/aduagent/"}, MaxFileSize: 1 << 20, MaxTotalSize: 16 << 20, CommandTimeout: 30 * time.Second,
				Commands: map[string][]string{"journal": {"journalctl", "-b", "--no-pager", "-o", "short-iso", "-n", "20000"}}},
		},
		ConnectionStringFile: "/etc/aduflash/connection-string",
		Provisioning:         ProvisionConnectionString,
		GlobalEndpoint:       dps.DefaultGlobalEndpoint,
		Pub:                  []string{"/etc/aduflash/release.pub.pem"},
		RebootCommand:        []string{"systemctl", "reboot"},
		SystemdWatchdog:      true,
		LogLevel:             "info",
		DownloadAttempts:     5,
		DownloadBackoff:      time.Second,
		DownloadMaxBackoff:   time.Minute,
		DownloadStallTimeout: time.Minute,
		FactoryUpdateID:      &FactoryUpdateID{Provider: "contoso", Name: "toaster", Version: "1.0.0"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("sample:\n got %+v\nwant %+v", c, want)
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte("[slots]\nwhatever = 1\n[agent]\nmanufacturer = \"m\"\nmodel = \"x\"\npub = [\"k.pem\"]\n[bootloader]\ntype = \"grub\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Settings: Settings{ModelID: "dtmi:azure:iot:deviceUpdateModel;3", Manufacturer: "m", Model: "x", CompatPropertyNames: "manufacturer,model",
		StateDir: "/var/lib/aduflash", MaxChunkSize: DefaultMaxChunkSize, AdaptiveCache: DefaultAdaptiveCache, HealthTimeout: 5 * time.Minute}, Pub: []string{"k.pem"}, RebootCommand: []string{"systemctl", "reboot"},
		LogLevel: "info", DownloadAttempts: 5, DownloadBackoff: time.Second, DownloadMaxBackoff: time.Minute, DownloadStallTimeout: time.Minute,
		Provisioning: ProvisionConnectionString, GlobalEndpoint: dps.DefaultGlobalEndpoint}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if c.Level().String() != "INFO" {
		t.Errorf("level %v", c.Level())
	}
	o, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	if o.StateDir != c.StateDir || o.Manufacturer != "m" || o.Model != "x" || o.ModelID != adu.ModelV3 || o.CompatPropertyNames != "manufacturer,model" ||
		o.HealthTimeout != 5*time.Minute || o.MaxTrialReboots != 0 || o.NoBuiltinRoots || o.AllowRaw || o.Roots != nil || !o.HealthOptions.StopOnFailure ||
		o.Retry.Attempts != 5 || o.Retry.Backoff != time.Second || o.Retry.MaxBackoff != time.Minute || o.StallTimeout != time.Minute ||
		o.MaxChunkSize != DefaultMaxChunkSize {
		t.Errorf("options: %+v", o)
	}
	// No connection: fine for the section, an error when connecting.
	if _, err := c.HubConfig(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "agent.connection_string") {
		t.Errorf("HubConfig without a connection string: %v", err)
	}
}

func TestConfigFull(t *testing.T) {
	d := t.TempDir()
	roots := filepath.Join("..", "adu", "testdata", "rootkeys_test.json")
	c, err := ParseConfig([]byte(`
[agent]
connection_string = "HostName=h.example;DeviceId=d1;SharedAccessKey=` + cfgTestKey + `"
websocket = true
hub_address = "127.0.0.1:18883"
model_id = "dtmi:azure:iot:deviceUpdateContractModel;2"
manufacturer = "Contoso"
model = "Toaster"
compat_property_names = " model , zeta,alpha "
state_dir = "` + d + `"
root_keys = "` + filepath.ToSlash(roots) + `"
no_builtin_roots = true
allow_test_root_key_package = true
allow_raw = true
allow_downgrade = true
max_chunk_size = "8MiB"
health_timeout = "90s"
max_trial_reboots = 5
reboot_command = ["/sbin/reboot", "-f"]
watchdog_device = "/dev/watchdog1"
watchdog_timeout = "20s"
log_level = "debug"
download_attempts = 8
download_backoff = "250ms"
download_max_backoff = "2m"
download_stall_timeout = "3m"
[agent.properties]
zeta = "z"
alpha = "a"
mid = "m"
[[agent.health_check]]
name = "one"
command = ["true"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := []adu.DeviceProperty(c.Properties); !reflect.DeepEqual(got, []adu.DeviceProperty{{Name: "zeta", Value: "z"}, {Name: "alpha", Value: "a"}, {Name: "mid", Value: "m"}}) {
		t.Errorf("properties not in file order: %v", got)
	}
	if c.CompatPropertyNames != "model,zeta,alpha" || c.HealthTimeout != 90*time.Second || c.MaxTrialReboots != 5 ||
		c.WatchdogDevice != "/dev/watchdog1" || c.WatchdogTimeout != 20*time.Second || c.Level().String() != "DEBUG" ||
		!reflect.DeepEqual(c.RebootCommand, []string{"/sbin/reboot", "-f"}) || c.Keyring != "" || !c.AllowRaw || c.MaxChunkSize != 8<<20 {
		t.Errorf("%+v", c)
	}
	o, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Roots) == 0 || !o.NoBuiltinRoots || !o.AllowTestRootKeyPackage || !o.AllowDowngrade || o.ModelID != adu.ModelContractV2 ||
		len(o.HealthChecks) != 1 || len(o.Properties) != 3 ||
		o.Retry.Attempts != 8 || o.Retry.Backoff != 250*time.Millisecond || o.Retry.MaxBackoff != 2*time.Minute || o.StallTimeout != 3*time.Minute ||
		o.MaxChunkSize != 8<<20 {
		t.Errorf("options: %+v", o)
	}
	hc, err := c.HubConfig()
	if err != nil {
		t.Fatal(err)
	}
	if hc.ConnectionString == "" || !hc.WebSocket || hc.Address != "127.0.0.1:18883" || hc.InsecurePlainTCP ||
		hc.ModelID != adu.ModelContractV2 || hc.TLSConfig != nil || hc.ClientCertificate != nil {
		t.Errorf("hub config: %+v", hc)
	}
	kr, err := c.LoadKeyring()
	if err != nil || len(kr.KeyIDs()) != 0 {
		t.Errorf("empty keyring: %v %v", kr, err)
	}
}

func TestConfigFiles(t *testing.T) {
	d := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A self-signed device certificate, as for x509=true.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "d1"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	cert := write("d.crt", certPEM)
	keyf := write("d.key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	ca := write("ca.pem", certPEM)
	cs := write("cs", "# the device\n\nHostName=h.example;DeviceId=d1;x509=true\n")
	signer, _ := image.GenerateKey(image.Ed25519, rand.Reader)
	pubPEM, _ := image.MarshalPublicKeyPEM(signer.Public())
	pub := write("k.pub.pem", string(pubPEM))

	c, err := ParseConfig([]byte(`[agent]
connection_string_file = "` + cs + `"
x509_cert = "` + cert + `"
x509_key = "` + keyf + `"
ca_file = "` + ca + `"
manufacturer = "m"
model = "x"
pub = ["` + pub + `"]
`))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := c.HubConfig()
	if err != nil {
		t.Fatal(err)
	}
	// No hub_address: the address is the connection string's, so that it can be logged.
	if hc.ConnectionString != "HostName=h.example;DeviceId=d1;x509=true" || hc.Address != "h.example:8883" || hc.ClientCertificate == nil ||
		hc.TLSConfig == nil || hc.TLSConfig.RootCAs == nil || hc.ModelID != adu.ModelV3 {
		t.Errorf("%+v", hc)
	}
	kr, err := c.LoadKeyring()
	if err != nil || len(kr.KeyIDs()) != 1 {
		t.Errorf("keyring: %v", err)
	}

	// The file says SAS, the config has a certificate.
	write("cs", "HostName=h.example;DeviceId=d1;SharedAccessKey="+cfgTestKey+"\n")
	if _, err := c.HubConfig(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "agent.x509_cert") {
		t.Errorf("SAS string with a certificate: %v", err)
	}
	// Unreadable files are I/O errors naming the key.
	for _, tc := range []struct {
		mod func(*Config)
		key string
	}{
		{func(c *Config) { c.ConnectionStringFile = filepath.Join(d, "nope") }, "agent.connection_string_file"},
		{func(c *Config) { c.CAFile = filepath.Join(d, "nope") }, "agent.ca_file"},
		{func(c *Config) { c.X509Key = filepath.Join(d, "nope") }, "agent.x509_cert/x509_key"},
	} {
		c2 := c
		write("cs", "HostName=h.example;DeviceId=d1;x509=true\n")
		tc.mod(&c2)
		if _, err := c2.HubConfig(); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: %v", tc.key, err)
		}
	}
	c2 := c
	c2.Pub = []string{filepath.Join(d, "nope")}
	if _, err := c2.LoadKeyring(); !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrConfig) {
		t.Errorf("missing pub: %v", err)
	}
	c2.Pub = []string{cs}
	if _, err := c2.LoadKeyring(); !errors.Is(err, ErrConfig) {
		t.Errorf("pub that is no key: %v", err)
	}
	c2 = c
	c2.RootKeys = filepath.Join(d, "nope")
	if _, err := c2.Options(); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "agent.root_keys") {
		t.Errorf("missing root keys: %v", err)
	}
	c2.RootKeys = cs
	if _, err := c2.Options(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "agent.root_keys") {
		t.Errorf("bad root keys: %v", err)
	}
	c2 = c
	c2.NoBuiltinRoots = true
	if _, err := c2.Options(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "agent.no_builtin_roots") {
		t.Errorf("no roots at all: %v", err)
	}
}

// TestConfigErrors: every invalid key or value is an ErrConfig naming the key.
func TestConfigErrors(t *testing.T) {
	const base = "manufacturer = \"m\"\nmodel = \"x\"\npub = [\"k.pem\"]\n"
	sas := `connection_string = "HostName=h;DeviceId=d;SharedAccessKey=` + cfgTestKey + `"` + "\n"
	const dpsBase = "provisioning = \"dps\"\nid_scope = \"0ne1\"\nregistration_id = \"r\"\n"
	for _, tc := range []struct {
		name, body, key string
	}{
		{"unknown key", base + "hub = 1\n", "agent.hub"},
		{"unknown sub-table", base + "[agent.health]\nx = 1\n", "agent.health"},
		{"unknown check key", base + "[[agent.health_check]]\nname = \"a\"\ncommand = [\"true\"]\nshell = true\n", "agent.health_check.shell"},
		{"no section", "", "no [agent] section"},
		{"wrong type", base + "websocket = \"yes\"\n", "websocket"},
		{"both connection keys", base + sas + "connection_string_file = \"/f\"\n", "agent.connection_string"},
		{"empty connection string", base + "connection_string = \"\"\n", "agent.connection_string"},
		{"empty connection string file", base + "connection_string_file = \"\"\n", "agent.connection_string_file"},
		{"bad connection string", base + "connection_string = \"HostName=h\"\n", "agent.connection_string"},
		{"hub address without port", base + "hub_address = \"localhost\"\n", "agent.hub_address"},
		{"hub address without host", base + "hub_address = \":8883\"\n", "agent.hub_address"},
		{"hub address port 0", base + "hub_address = \"localhost:0\"\n", "agent.hub_address"},
		{"hub address port name", base + "hub_address = \"localhost:mqtts\"\n", "agent.hub_address"},
		{"empty hub address", base + "hub_address = \"\"\n", "agent.hub_address"},
		{"x509 without cert", base + "connection_string = \"HostName=h;DeviceId=d;x509=true\"\n", "agent.x509_cert"},
		{"cert with SAS", base + sas + "x509_cert = \"c\"\nx509_key = \"k\"\n", "agent.x509_cert"},
		{"cert without key", base + sas + "x509_cert = \"c\"\n", "agent.x509_key"},
		{"key without cert", base + sas + "x509_key = \"k\"\n", "agent.x509_cert"},
		{"cert without connection", base + "x509_cert = \"c\"\nx509_key = \"k\"\n", "agent.x509_cert"},
		{"unknown provisioning", base + "provisioning = \"tpm\"\n", "agent.provisioning"},
		{"dps key without dps", base + sas + "id_scope = \"0ne1\"\n", "agent.id_scope: only with provisioning"},
		{"dps with connection string", base + sas + dpsBase + "group_key = \"" + cfgTestKey + "\"\n", "agent.connection_string: not with provisioning"},
		{"dps without id scope", base + "provisioning = \"dps\"\nregistration_id = \"r\"\ngroup_key = \"" + cfgTestKey + "\"\n", "agent.id_scope"},
		{"dps bad registration id", base + "provisioning = \"dps\"\nid_scope = \"0ne1\"\nregistration_id = \"a/b\"\ngroup_key = \"" + cfgTestKey + "\"\n", "agent.registration_id"},
		{"dps without credential", base + dpsBase, "exactly one credential"},
		{"dps two credentials", base + dpsBase + "group_key = \"" + cfgTestKey + "\"\nsymmetric_key = \"" + cfgTestKey + "\"\n", "exactly one credential"},
		{"dps bad endpoint", base + dpsBase + "global_endpoint = \"https://x/\"\ngroup_key = \"" + cfgTestKey + "\"\n", "agent.global_endpoint"},
		{"proxy https", base + sas + "proxy = \"https://p:3128\"\n", "agent.proxy"},
		{"proxy no host", base + sas + "proxy = \"http://\"\n", "agent.proxy"},
		{"proxy path", base + sas + "proxy = \"http://p:3128/x\"\n", "agent.proxy"},
		{"model id", base + "model_id = \"dtmi:contoso:x;1\"\n", "agent.model_id"},
		{"interface as model id", base + "model_id = \"dtmi:azure:iot:deviceUpdate;2\"\n", "agent.model_id"},
		{"no manufacturer", "model = \"x\"\npub = [\"k\"]\n", "agent.manufacturer"},
		{"no model", "manufacturer = \"m\"\npub = [\"k\"]\n", "agent.model"},
		{"blank model", "manufacturer = \"m\"\nmodel = \"  \"\npub = [\"k\"]\n", "agent.model"},
		{"reserved property", base + "[agent.properties]\nModel = \"y\"\n", "agent.properties.Model"},
		{"reserved property aduVer", base + "[agent.properties]\naduver = \"y\"\n", "agent.properties.aduver"},
		{"property with comma", base + "[agent.properties]\n\"a,b\" = \"y\"\n", "agent.properties.a,b"},
		{"duplicate property", base + "[agent.properties]\nhw = \"1\"\nHW = \"2\"\n", "agent.properties.HW"},
		{"empty property value", base + "[agent.properties]\nhw = \"\"\n", "agent.properties.hw"},
		{"non-string property", base + "[agent.properties]\nhw = 2\n", "agent.properties.hw"},
		{"empty compat names", base + "compat_property_names = \"\"\n", "agent.compat_property_names"},
		{"unknown compat name", base + "compat_property_names = \"manufacturer,hwrev\"\n", "agent.compat_property_names"},
		{"compat name twice", base + "compat_property_names = \"model,Model\"\n", "agent.compat_property_names"},
		{"compat empty name", base + "compat_property_names = \"model,,manufacturer\"\n", "agent.compat_property_names"},
		{"six compat names", base + "compat_property_names = \"manufacturer,model,a,b,c,d\"\n[agent.properties]\na=\"1\"\nb=\"1\"\nc=\"1\"\nd=\"1\"\n", "agent.compat_property_names"},
		{"empty state dir", base + "state_dir = \"\"\n", "agent.state_dir"},
		{"no keys", "manufacturer = \"m\"\nmodel = \"x\"\n", "agent.keyring"},
		{"empty pub", "manufacturer = \"m\"\nmodel = \"x\"\npub = [\"\"]\n", "agent.pub"},
		{"health timeout", base + "health_timeout = \"5 minutes\"\n", "agent.health_timeout"},
		{"health timeout zero", base + "health_timeout = \"0s\"\n", "agent.health_timeout"},
		{"health timeout integer", base + "health_timeout = 300\n", "health_timeout"},
		{"negative trial reboots", base + "max_trial_reboots = -1\n", "agent.max_trial_reboots"},
		{"max chunk size zero", base + "max_chunk_size = 0\n", "agent.max_chunk_size"},
		{"max chunk size unaligned", base + "max_chunk_size = 5000\n", "agent.max_chunk_size"},
		{"max chunk size above the format's", base + "max_chunk_size = \"128MiB\"\n", "agent.max_chunk_size"},
		{"max chunk size not a size", base + "max_chunk_size = \"lots\"\n", "max_chunk_size"},
		{"zero download attempts", base + "download_attempts = 0\n", "agent.download_attempts"},
		{"download backoff", base + "download_backoff = \"soon\"\n", "agent.download_backoff"},
		{"download backoff zero", base + "download_backoff = \"0s\"\n", "agent.download_backoff"},
		{"download max backoff below backoff", base + "download_backoff = \"10s\"\ndownload_max_backoff = \"5s\"\n", "agent.download_max_backoff"},
		{"download stall timeout", base + "download_stall_timeout = \"-1s\"\n", "agent.download_stall_timeout"},
		{"empty reboot command", base + "reboot_command = []\n", "agent.reboot_command"},
		{"reboot command string", base + "reboot_command = \"reboot\"\n", "reboot_command"},
		{"watchdog timeout without device", base + "watchdog_timeout = \"10s\"\n", "agent.watchdog_timeout"},
		{"watchdog timeout short", base + "watchdog_device = \"/dev/watchdog\"\nwatchdog_timeout = \"1s\"\n", "agent.watchdog_timeout"},
		{"watchdog timeout bad", base + "watchdog_device = \"/dev/watchdog\"\nwatchdog_timeout = \"soon\"\n", "agent.watchdog_timeout"},
		{"empty watchdog device", base + "watchdog_device = \"\"\n", "agent.watchdog_device"},
		{"log level", base + "log_level = \"verbose\"\n", "agent.log_level"},
		{"check without name", base + "[[agent.health_check]]\ncommand = [\"true\"]\n", "agent.health_check[0].name"},
		{"check without command", base + "[[agent.health_check]]\nname = \"a\"\n", "agent.health_check[0] (a).command"},
		{"check timeout", base + "[[agent.health_check]]\nname = \"a\"\ncommand = [\"true\"]\ntimeout = \"-1s\"\n", "agent.health_check[0] (a).timeout"},
		{"check retries", base + "[[agent.health_check]]\nname = \"a\"\ncommand = [\"true\"]\nretries = -1\n", "agent.health_check[0] (a).retries"},
		{"check retry delay", base + "[[agent.health_check]]\nname = \"a\"\ncommand = [\"true\"]\nretry_delay = \"x\"\n", "agent.health_check[0] (a).retry_delay"},
		{"check env", base + "[[agent.health_check]]\nname = \"a\"\ncommand = [\"true\"]\nenv = [\"NOEQUALS\"]\n", "agent.health_check[0] (a).env"},
		{"duplicate check", base + "[[agent.health_check]]\nname = \"a\"\ncommand = [\"true\"]\n[[agent.health_check]]\nname = \"a\"\ncommand = [\"true\"]\n", "agent.health_check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "[slots]\n[agent]\n" + tc.body
			if tc.body == "" {
				doc = "[slots]\n"
			}
			_, err := ParseConfig([]byte(doc))
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.key) {
				t.Errorf("error %v, want ErrConfig naming %q", err, tc.key)
			}
		})
	}
}

func TestLoadConfigMissing(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%v", err)
	}
}

// TestConfigOneShape: the file decodes straight into Config, and Options carries its
// Settings as they are (no field copied by hand, none forgotten).
func TestConfigOneShape(t *testing.T) {
	c, err := LoadConfig(filepath.Join("..", "examples", "aduagent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.Settings, c.Settings) {
		t.Errorf("options:\n got %+v\nwant %+v", o.Settings, c.Settings)
	}
	o.Properties[0].Value = "changed"
	o.HealthChecks[0].Name = "changed"
	if c.Properties[0].Value == "changed" || c.HealthChecks[0].Name == "changed" {
		t.Error("Options shares the config's slices")
	}
}

// TestConfigErrorsWritten: a value written that means nothing is refused even where leaving
// the key out is fine, and a bad [[agent.health_check]] value is named with its entry.
func TestConfigErrorsWritten(t *testing.T) {
	const base = "manufacturer = \"m\"\nmodel = \"x\"\npub = [\"k.pem\"]\n"
	check := "[[agent.health_check]]\nname = \"a\"\ncommand = [\"true\"]\n[[agent.health_check]]\nname = \"b\"\ncommand = [\"true\"]\n"
	for _, tc := range []struct {
		name, body, want string
	}{
		{"zero watchdog timeout", base + "watchdog_device = \"/dev/watchdog\"\nwatchdog_timeout = \"0s\"\n", "agent.watchdog_timeout: 0s is not a duration of at least 2s"},
		{"empty model id", base + "model_id = \"\"\n", "agent.model_id"},
		{"empty log level", base + "log_level = \"\"\n", "agent.log_level"},
		{"zero check timeout", base + check + "timeout = \"0s\"\n", "agent.health_check[1] (b).timeout: 0s is not a positive duration"},
		{"integer check timeout", base + check + "timeout = 30\n", "agent.health_check[1] (b).timeout: 30 is not a duration with its unit"},
		{"check command string", base + check + "[[agent.health_check]]\nname = \"c\"\ncommand = \"true\"\n[[agent.health_check]]\nname = \"d\"\ncommand = [\"true\"]\n", "agent.health_check[2] (c).command: \"true\" is not a list of strings"},
		{"check retries string", base + check + "retries = \"2\"\n", "agent.health_check[1] (b).retries: \"2\" is not an integer"},
		{"properties not a table", base + "properties = 5\n", "agent.properties: want a table"},
		{"health_check not tables", base + "health_check = 5\n", "agent.health_check: want [[agent.health_check]] tables"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte("[agent]\n" + tc.body))
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) || strings.Contains(tc.want, "] (") && strings.Contains(err.Error(), "line") {
				t.Errorf("error %v, want ErrConfig with %q", err, tc.want)
			}
		})
	}
}

func TestFactoryUpdateIDConfig(t *testing.T) {
	dir := t.TempDir()
	osRelease, version := filepath.Join(dir, "os-release"), filepath.Join(dir, "version")
	for name, text := range map[string]string{osRelease: "NAME=\"Poky\"\nVERSION_ID=\"4.2.1\"\n", version: "2.0.3\n"} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := "[agent]\nmanufacturer = \"Contoso\"\nmodel = \"Board\"\nallow_raw = true\n[agent.factory_update_id]\nprovider = \"Contoso\"\nname = \"Board\"\n"
	for _, tc := range []struct{ table, want, err string }{
		{`version = "1.0"`, "1.0", ""},
		{"version_file = " + quote(osRelease) + "\nversion_key = \"VERSION_ID\"", "4.2.1", ""},
		{"version_file = " + quote(version), "2.0.3", ""},
		{"version_file = " + quote(osRelease) + "\nversion_key = \"BUILD_ID\"", "", "no BUILD_ID="},
		{"", "", "give version or version_file"},
		{"version = \"1.0\"\nversion_file = " + quote(version), "", "give version or version_file"},
		{"version = \"1.0\"\nversion_key = \"X\"", "", "version_key: set without version_file"},
		{"version = \"1.0\"\nbuild = \"x\"", "", "build"},
	} {
		o, err := parseAndOptions(base + tc.table + "\n")
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.table, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.table, err)
		case o.FactoryUpdateID == nil || *o.FactoryUpdateID != (adu.UpdateID{Provider: "Contoso", Name: "Board", Version: tc.want}):
			t.Errorf("%q: %+v, want version %s", tc.table, o.FactoryUpdateID, tc.want)
		}
	}
	if _, err := parseAndOptions(strings.Replace(base, `provider = "Contoso"`, `provider = "Con toso"`, 1) + "version = \"1\"\n"); err == nil ||
		!strings.Contains(err.Error(), "agent.factory_update_id.provider") {
		t.Errorf("bad provider: %v", err)
	}
}

func quote(s string) string { return `"` + s + `"` }

func parseAndOptions(doc string) (Options, error) {
	c, err := ParseConfig([]byte(doc))
	if err != nil {
		return Options{}, err
	}
	return c.Options()
}

func TestDiagnosticsConfig(t *testing.T) {
	base := "[agent]\nmanufacturer = \"m\"\nmodel = \"x\"\nallow_raw = true\n[agent.diagnostics]\n"
	for _, tc := range []struct{ table, err string }{
		{"files = [\"/var/log/a.log\"]\n[agent.diagnostics.commands]\njournal = [\"journalctl\"]\n", ""},
		{"files = [\"var/log/a.log\"]\n", "agent.diagnostics.files: entry 0"},
		{"[agent.diagnostics.commands]\n\"../x\" = [\"true\"]\n", "agent.diagnostics.commands.../x"},
		{"[agent.diagnostics.commands]\nj = []\n", "agent.diagnostics.commands.j: empty"},
		{"command_timeout = \"-1s\"\n", "cannot be negative"},
		{"paths = [\"/x\"]\n", "paths"},
	} {
		_, err := ParseConfig([]byte(base + tc.table))
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: %v, want %q", tc.table, err, tc.err)
		}
	}
}
