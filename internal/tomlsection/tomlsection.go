// Package tomlsection decodes one section of the device's TOML configuration file. Each
// section belongs to one package ([slots], [bootloader], [agent]), which ignores the others
// but refuses unknown keys inside its own, and decodes it straight into the struct it uses:
// time.Duration fields take Go duration strings ("90s", "5m"), custom types (a byte size)
// implement toml.Unmarshaler.
package tomlsection

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Decode decodes the section named section of the TOML document data into dst. found is
// false (and dst untouched) when the document has no such section. Keys inside the section
// that dst has no field for are an error naming them ("unknown key(s) in the <section>
// section: …"); other sections are not looked at. A time.Duration field of the section
// (tagged, or in an embedded struct) written as an integer is an error too: the decoder would
// count nanoseconds where a person meant seconds. Decoding onto a dst that holds defaults
// keeps the default of every key the section leaves out. A value the decoder refuses is an
// error naming the line and the key. The metadata is returned for callers that need key
// order or IsDefined.
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
		return md, true, fmt.Errorf("%s: %w", section, withoutWrongLine(md, err))
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
	for _, key := range durationKeys(reflect.TypeOf(dst)) {
		if md.Type(section, key) == "Integer" {
			return md, true, fmt.Errorf("%s.%s: an integer is not a duration (it would count nanoseconds): write it with a unit, such as \"90s\" or \"5m\"", section, key)
		}
	}
	return md, true, nil
}

// withoutWrongLine drops the line of a decode error in an array of tables ([[slots.slot]]):
// the decoder gives the line of the key's last entry, whichever entry is wrong, and a wrong
// line is worse than none. The message then names the key.
func withoutWrongLine(md toml.MetaData, err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return err
	}
	for _, k := range md.Keys() {
		if k.String() != pe.LastKey {
			continue
		}
		for i := 1; i <= len(k); i++ {
			if md.Type(k[:i]...) == "ArrayHash" {
				if strings.HasPrefix(pe.Message, pe.LastKey) {
					return errors.New(pe.Message)
				}
				return fmt.Errorf("%s: %s", pe.LastKey, pe.Message)
			}
		}
		break
	}
	return err
}

var durationType = reflect.TypeFor[time.Duration]()

// durationKeys lists the keys of the time.Duration fields of the struct t points to,
// including those of embedded structs.
func durationKeys(t reflect.Type) []string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		switch {
		case f.Anonymous && name == "":
			keys = append(keys, durationKeys(f.Type)...)
		case f.Type == durationType && name != "" && name != "-":
			keys = append(keys, name)
		}
	}
	return keys
}

// Subkeys returns the names of the keys directly inside the table at path (e.g. "agent",
// "properties"), in the order the document writes them: a Go map, which a table decodes
// into, has none.
func Subkeys(md toml.MetaData, path ...string) []string {
	var names []string
	for _, k := range md.Keys() {
		if len(k) == len(path)+1 && slices.Equal(k[:len(path)], path) {
			names = append(names, k[len(path)])
		}
	}
	return names
}

// LoadFile reads the file path and parses it with parse (a package's ParseConfig, or the
// parser of a key file); a parse error is prefixed with the path, a read error is returned
// as it is (callers test it with errors.Is, e.g. fs.ErrNotExist).
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
