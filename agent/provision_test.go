package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/dps"
)

func connectorOf(t *testing.T, body string) *Connector {
	t.Helper()
	c, err := ParseConfig([]byte("[agent]\nmanufacturer = \"m\"\nmodel = \"x\"\npub = [\"k.pem\"]\nstate_dir = \"/st\"\n" + body))
	if err != nil {
		t.Fatal(err)
	}
	cn, err := c.Connector(nil)
	if err != nil {
		t.Fatal(err)
	}
	return cn
}

// TestConnectorDPS: the device key is derived from the group key (read from its file), the
// endpoint gets its port, the assignment is kept in the state dir, and a proxy moves DPS
// and the hub to WebSockets on 443 through a tunnel.
func TestConnectorDPS(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "group-key")
	if err := os.WriteFile(keyFile, []byte(cfgTestKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const base = "provisioning = \"dps\"\nid_scope = \"0ne1\"\nregistration_id = \"toaster-1\"\n"
	cn := connectorOf(t, base+"group_key_file = \""+filepath.ToSlash(keyFile)+"\"\n")
	want, _ := dps.DeriveKey(cfgTestKey, "toaster-1")
	if cn.DPS.SymmetricKey != want {
		t.Errorf("device key %q, want the derived %q", cn.DPS.SymmetricKey, want)
	}
	if cn.DPS.Endpoint != dps.DefaultGlobalEndpoint+":8883" || cn.DPS.WebSocket || cn.Proxy != "" {
		t.Errorf("endpoint %q websocket %v proxy %q", cn.DPS.Endpoint, cn.DPS.WebSocket, cn.Proxy)
	}
	if cn.CachePath != filepath.Join("/st", DPSCacheFile) {
		t.Errorf("cache %q", cn.CachePath)
	}
	cn = connectorOf(t, base+"symmetric_key = \""+cfgTestKey+"\"\nproxy = \"http://proxy.example:3128\"\n")
	if cn.DPS.SymmetricKey != cfgTestKey || cn.DPS.Endpoint != dps.DefaultGlobalEndpoint+":443" || !cn.DPS.WebSocket ||
		cn.DPS.Dial == nil || !cn.Hub.WebSocket || cn.Hub.Dial == nil || cn.Proxy != "http://proxy.example:3128" {
		t.Errorf("through a proxy: dps %+v hub websocket %v proxy %q", cn.DPS, cn.Hub.WebSocket, cn.Proxy)
	}
}

// TestConnectorProxy: agent.proxy carries the hub connection over WebSockets on 443; without
// it the environment decides as net/http does (HTTPS_PROXY, NO_PROXY), checked in a child
// process because net/http reads the environment once.
func TestConnectorProxy(t *testing.T) {
	sas := "connection_string = \"HostName=h.example;DeviceId=d;SharedAccessKey=" + cfgTestKey + "\"\n"
	if env := os.Getenv("ADUFLASH_TEST_PROXY_ENV"); env != "" {
		cn := connectorOf(t, sas)
		if got := cn.Proxy + " " + cn.Hub.Address; got != env {
			t.Fatalf("got %q, want %q", got, env)
		}
		return
	}
	cn := connectorOf(t, sas+"proxy = \"http://u:pw@proxy.example:3128\"\n")
	if !cn.Hub.WebSocket || cn.Hub.Dial == nil || cn.Hub.Address != "h.example:443" || strings.Contains(cn.Proxy, "pw") {
		t.Errorf("proxy: websocket %v address %q proxy %q", cn.Hub.WebSocket, cn.Hub.Address, cn.Proxy)
	}
	if hc := (Config{Proxy: "http://proxy.example:3128"}).HTTPClient(); hc.Transport == nil {
		t.Error("no transport")
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"HTTPS_PROXY=http://envproxy.example:8080"}, "http://envproxy.example:8080 h.example:443"},
		{[]string{"HTTPS_PROXY=http://envproxy.example:8080", "NO_PROXY=.example"}, " h.example:8883"},
		{nil, " h.example:8883"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestConnectorProxy$")
		cmd.Env = append(os.Environ(), "HTTPS_PROXY=", "https_proxy=", "NO_PROXY=", "no_proxy=", "ADUFLASH_TEST_PROXY_ENV="+tc.want)
		cmd.Env = append(cmd.Env, tc.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("environment %v: %v\n%s", tc.env, err, out)
		}
	}
}
