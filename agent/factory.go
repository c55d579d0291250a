package agent

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/aduflash/aduflash/adu"
)

// FactoryUpdateID is the [agent.factory_update_id] table: the update the factory image is,
// with its version written here or read at start from a file (version_file, the whole
// first line, or with version_key the value of KEY=value in it, e.g. /etc/os-release's
// VERSION_ID).
type FactoryUpdateID struct {
	Provider    string `toml:"provider"`
	Name        string `toml:"name"`
	Version     string `toml:"version"`
	VersionFile string `toml:"version_file"`
	VersionKey  string `toml:"version_key"`
}

// updateIDPart is what the service takes as an update id's provider or name.
var updateIDPart = regexp.MustCompile(`^[a-zA-Z0-9.-]{1,64}$`)

// check: a provider and name the service takes, and one version source.
func (f *FactoryUpdateID) check() error {
	const key = "factory_update_id"
	for _, p := range []struct{ key, v string }{{"provider", f.Provider}, {"name", f.Name}} {
		if !updateIDPart.MatchString(p.v) {
			return cfgErr(key+"."+p.key, "%q is not 1-64 letters, digits, '.' or '-' (as the update's import manifest has it)", p.v)
		}
	}
	switch {
	case (f.Version == "") == (f.VersionFile == ""):
		return cfgErr(key, "give version or version_file (one of the two)")
	case f.VersionKey != "" && f.VersionFile == "":
		return cfgErr(key+".version_key", "set without version_file")
	}
	return nil
}

// resolve returns the update id, reading the version from its file when the table names one.
func (f *FactoryUpdateID) resolve() (*adu.UpdateID, error) {
	id := &adu.UpdateID{Provider: f.Provider, Name: f.Name, Version: f.Version}
	if f.VersionFile == "" {
		return id, nil
	}
	b, err := os.ReadFile(f.VersionFile)
	if err != nil {
		return nil, fmt.Errorf("agent.factory_update_id.version_file: %w", err)
	}
	if f.VersionKey != "" {
		id.Version = keyValue(b, f.VersionKey, "=")
	} else {
		id.Version, _, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
		id.Version = strings.TrimSpace(id.Version)
	}
	if id.Version == "" {
		return nil, cfgErr("factory_update_id.version_file", "%s holds no version%s", f.VersionFile, keyHint(f.VersionKey))
	}
	return id, nil
}

func keyHint(key string) string {
	if key == "" {
		return ""
	}
	return " (no " + key + "=… line)"
}

// bank returns what the journal says bank holds, or, for a bank it has no record of, the
// factory image when the config names it (nil when neither is known). Call it under a.mu
// (a.view).
func (a *Agent) bank(r *Record, bank string) *BankInfo {
	if b := r.Banks[bank]; b != nil {
		return b
	}
	f := a.o.FactoryUpdateID
	if f == nil {
		return nil
	}
	id := *f
	bi := &BankInfo{UpdateID: &id, Criteria: map[string]string{}}
	for _, class := range a.classes() {
		bi.Criteria[class] = id.Version
	}
	return bi
}
