package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// DeviceInformation is the deviceInformation component (spec §2.5), reported once at
// startup with the deviceUpdateModel;2/;3 models.
type DeviceInformation struct {
	Manufacturer          string `json:"manufacturer"`
	Model                 string `json:"model"`
	SWVersion             string `json:"swVersion"`
	OSName                string `json:"osName"`
	ProcessorArchitecture string `json:"processorArchitecture"`
	ProcessorManufacturer string `json:"processorManufacturer"`
	TotalMemory           int64  `json:"totalMemory"`  // KB
	TotalStorage          int64  `json:"totalStorage"` // KB
}

// Patch renders {"deviceInformation":{"__t":"c",…}}.
func (d DeviceInformation) Patch() ([]byte, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString(`{"deviceInformation":{"__t":"c",`)
	buf.Write(b[1:])
	buf.WriteString("}")
	return buf.Bytes(), nil
}

// ReadDeviceInformation reads what the running system tells: the OS name from
// /etc/os-release, the architecture, the processor vendor from /proc/cpuinfo, the memory
// from /proc/meminfo and the size of the root file system. What cannot be read stays empty
// (or 0).
func ReadDeviceInformation() DeviceInformation {
	d := DeviceInformation{OSName: runtime.GOOS, ProcessorArchitecture: runtime.GOARCH}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		if v := keyValue(b, "PRETTY_NAME", "="); v != "" {
			d.OSName = v
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		d.ProcessorManufacturer = keyValue(b, "vendor_id", ":")
		if d.ProcessorManufacturer == "" {
			d.ProcessorManufacturer = keyValue(b, "CPU implementer", ":")
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(keyValue(b, "MemTotal", ":"))
		if len(f) > 0 {
			d.TotalMemory, _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	d.TotalStorage = rootFSKB()
	return d
}

// keyValue returns the value of the first line "key<sep>value" (quotes and spaces trimmed).
func keyValue(b []byte, key, sep string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return ""
}
