package adu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/aduflash/aduflash/internal/errkind"
)

// ErrMalformed is wrapped by every parse error of a twin document, manifest, root-key list or
// root-key package; the message names the JSON path of the offending value.
var ErrMalformed = errkind.New(errkind.Input, "malformed")

// PathError is a parse error at a JSON path such as "deviceUpdate.service.workflow.action".
type PathError struct {
	Path string
	Msg  string
}

func (e *PathError) Error() string {
	if e.Path == "" {
		return "adu: " + e.Msg
	}
	return "adu: " + e.Path + ": " + e.Msg
}

// Unwrap makes errors.Is(err, ErrMalformed) true.
func (e *PathError) Unwrap() error { return ErrMalformed }

func pathErr(path, format string, args ...any) error {
	return &PathError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func kind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// object is a decoded JSON object whose members are decoded on demand, remembering its path.
// Unknown members are ignored; for duplicate members the last one wins.
type object struct {
	path string
	m    map[string]json.RawMessage
}

// parseObject decodes raw as an object; ok is false (and err nil) for null or nothing.
func parseObject(raw json.RawMessage, path string) (o object, ok bool, err error) {
	if isNull(raw) {
		return object{path: path}, false, nil
	}
	if k := kind(raw); k != "an object" {
		return object{path: path}, false, pathErr(path, "want an object, got %s", k)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return object{path: path}, false, pathErr(path, "%v", err)
	}
	return object{path: path, m: m}, true, nil
}

// mustObject is parseObject where null or absence is an error.
func mustObject(raw json.RawMessage, path string) (object, error) {
	o, ok, err := parseObject(raw, path)
	if err == nil && !ok {
		err = pathErr(path, "missing object")
	}
	return o, err
}

func (o object) has(key string) bool { _, ok := o.m[key]; return ok && !isNull(o.m[key]) }

func (o object) obj(key string) (object, bool, error) {
	return parseObject(o.m[key], join(o.path, key))
}

// str returns a string member; null and absence give ok false.
func (o object) str(key string) (s string, ok bool, err error) {
	raw := o.m[key]
	if isNull(raw) {
		return "", false, nil
	}
	if k := kind(raw); k != "a string" {
		return "", false, pathErr(join(o.path, key), "want a string, got %s", k)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, pathErr(join(o.path, key), "%v", err)
	}
	return s, true, nil
}

// needStr is str where null, absence and "" are errors.
func (o object) needStr(key string) (string, error) {
	s, ok, err := o.str(key)
	if err == nil && (!ok || s == "") {
		err = pathErr(join(o.path, key), "missing string")
	}
	return s, err
}

// integer decodes raw as a whole number in [min, max]. Floats with an integral value (3.0,
// 3e0) are accepted since generic JSON libraries produce them; when quoted is set, a string
// holding such a number is accepted too.
func integer(raw json.RawMessage, path string, min, max int64, quoted bool) (int64, error) {
	raw = bytes.TrimSpace(raw)
	k := kind(raw)
	var lit string
	switch {
	case k == "a number":
		lit = string(raw)
	case k == "a string" && quoted:
		if err := json.Unmarshal(raw, &lit); err != nil {
			return 0, pathErr(path, "%v", err)
		}
		lit = strings.TrimSpace(lit)
	default:
		return 0, pathErr(path, "want a number, got %s", k)
	}
	if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
		if n < min || n > max {
			return 0, pathErr(path, "%d out of range [%d, %d]", n, min, max)
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, pathErr(path, "%.40q is not a number in range", lit)
	}
	if f != math.Trunc(f) {
		return 0, pathErr(path, "%.40s is not a whole number", lit)
	}
	if f < float64(min) || f > float64(max) {
		return 0, pathErr(path, "%.40s out of range [%d, %d]", lit, min, max)
	}
	return int64(f), nil
}

// stringMap decodes an object of strings; null members are skipped when skipNull is set.
func stringMap(raw json.RawMessage, path string, skipNull bool) (map[string]string, bool, error) {
	o, ok, err := parseObject(raw, path)
	if err != nil || !ok {
		return nil, ok, err
	}
	out := make(map[string]string, len(o.m))
	for k, v := range o.m {
		if isNull(v) && skipNull {
			continue
		}
		s, ok, err := o.str(k)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			return nil, false, pathErr(join(path, k), "want a string, got null")
		}
		out[k] = s
	}
	return out, true, nil
}

// marshalCompact encodes v as compact JSON without HTML escaping.
func marshalCompact(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
