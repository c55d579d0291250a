package app

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/adu"
)

const testModuleKey = "bW9kdWxlIGtleSBmb3IgdGVzdHMgMDEyMzQ1Njc4OTA="

// TestRunAsModule: with a module connection string (ModuleId, as the IoTHubDeviceUpdate
// module of an IoT Edge device has) the agent connects as the module: client id
// "{deviceId}/{moduleId}", the module's username and SAS token, and the module's twin gets
// the reports; the device's own twin does not.
func TestRunAsModule(t *testing.T) {
	h := newTestHub(t)
	if err := h.RegisterModule("dev1", "IoTHubDeviceUpdate", testModuleKey); err != nil {
		t.Fatal(err)
	}
	conf := "connection_string = " + strconv.Quote("HostName=localhost;DeviceId=dev1;ModuleId=IoTHubDeviceUpdate;SharedAccessKey="+testModuleKey) +
		"\n" + h.conf[strings.Index(h.conf, "hub_address"):]
	fx := newAgentFixture(t, conf)
	ra := startRun(t, fx)
	a := waitReportedOf(t, h, "dev1/IoTHubDeviceUpdate", func(a *reportedAgent) bool { return a.State != nil && a.DeviceProperties != nil })
	if a.DeviceProperties["manufacturer"] != "contoso" {
		t.Errorf("module's reported deviceProperties %v", a.DeviceProperties)
	}
	if m := h.ModelID("dev1/IoTHubDeviceUpdate"); m != adu.ModelV3 {
		t.Errorf("the module announced model-id %q", m)
	}
	if code, logs := ra.stop(); code != 0 {
		t.Errorf("exit %d\n%s", code, logs)
	}
	twin, err := h.Twin("dev1")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Reported map[string]json.RawMessage `json:"reported"`
	}
	if err := json.Unmarshal(twin, &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc.Reported["deviceUpdate"]; ok {
		t.Errorf("the device's own twin got the module's reports: %s", twin)
	}
}
