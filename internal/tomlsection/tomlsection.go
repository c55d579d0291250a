// Package tomlsection decodes one section of the device's TOML configuration file. Each
// section belongs to one package ([slots], [bootloader], [agent]), which ignores the others
// but refuses unknown keys inside its own.
package tomlsection

import (
	"fmt"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
)

// Decode decodes the section named section of the TOML document data into dst. found is
// false (and dst untouched) when the document has no such section. Keys inside the section
// that dst has no field for are an error naming them ("unknown key(s) in the <section>
// section: …"); other sections are not looked at. The metadata is returned for callers that
// need key order or IsDefined.
func Decode(data []byte, section string, dst any) (md toml.MetaData, found bool, err error) {
	var doc map[string]toml.Primitive
	if md, err = toml.Decode(string(data), &doc); err != nil {
		return md, false, err
	}
	prim, ok := doc[section]
	if !ok {
		return md, false, nil
	}
	if err := md.PrimitiveDecode(prim, dst); err != nil {
		return md, true, fmt.Errorf("%s: %w", section, err)
	}
	var unknown []string
	for _, k := range md.Undecoded() {
		if len(k) > 0 && k[0] == section {
			unknown = append(unknown, k.String())
		}
	}
	if len(unknown) > 0 {
		return md, true, fmt.Errorf("unknown key(s) in the %s section: %s", section, strings.Join(unknown, ", "))
	}
	return md, true, nil
}

// LoadFile reads the config file path and parses it with parse (a package's ParseConfig);
// a parse error is prefixed with the path, a read error is returned as it is (callers test
// it with errors.Is, e.g. fs.ErrNotExist).
func LoadFile[T any](path string, parse func([]byte) (T, error)) (T, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var zero T
		return zero, err
	}
	c, err := parse(b)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
