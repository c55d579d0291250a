package manifestgen

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// SplitTopLevel splits s at the commas that are outside JSON-like nesting: commas inside
// {…}, […] or a double-quoted string (with backslash escapes) do not split, so JSON values
// may contain commas, '=' and ';'. Joining the parts with "," gives s back. Unbalanced
// brackets or an unterminated string are errors.
func SplitTopLevel(s string) ([]string, error) {
	var (
		parts []string
		stack []byte // expected closing brackets
		inStr bool
		esc   bool
		start int
	)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if inStr {
			switch {
			case esc:
				esc = false
			case ch == '\\':
				esc = true
			case ch == '"':
				inStr = false
			}
			continue
		}
		switch ch {
		case '"':
			inStr = true
		case '{':
			stack = append(stack, '}')
		case '[':
			stack = append(stack, ']')
		case '}', ']':
			if len(stack) == 0 || stack[len(stack)-1] != ch {
				return nil, fmt.Errorf("unbalanced %q at offset %d", ch, i)
			}
			stack = stack[:len(stack)-1]
		case ',':
			if len(stack) == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	if inStr {
		return nil, errors.New("unterminated quoted string")
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("missing %q", stack[len(stack)-1])
	}
	return append(parts, s[start:]), nil
}

// KV is one key=value item of a flag value.
type KV struct {
	Key, Value string
}

// SplitKV splits a `k=v[,k=v...]` list (see SplitTopLevel) into items. Keys and values are
// trimmed of surrounding spaces; a value in double quotes is unquoted as a JSON string
// (write `description="a, b"` to keep a comma or spaces). Each item must have a non-empty
// key and value.
func SplitKV(s string) ([]KV, error) {
	parts, err := SplitTopLevel(s)
	if err != nil {
		return nil, err
	}
	out := make([]KV, 0, len(parts))
	for _, p := range parts {
		kv, err := splitItem(p)
		if err != nil {
			return nil, err
		}
		out = append(out, kv)
	}
	return out, nil
}

func splitItem(p string) (KV, error) {
	t := strings.TrimSpace(p)
	if t == "" {
		return KV{}, errors.New("empty item (two commas in a row, or a comma at an end?)")
	}
	k, v, ok := strings.Cut(t, "=")
	if !ok {
		return KV{}, fmt.Errorf("%q is not key=value (put a value that contains a comma in double quotes; separate files= names with ';')", t)
	}
	k = strings.TrimSpace(k)
	if k == "" {
		return KV{}, fmt.Errorf("%q has an empty key", t)
	}
	v, err := unquote(strings.TrimSpace(v))
	if err != nil {
		return KV{}, fmt.Errorf("%s=: %w", k, err)
	}
	if v == "" {
		return KV{}, fmt.Errorf("%s= has an empty value", k)
	}
	return KV{Key: k, Value: v}, nil
}

// unquote removes the double quotes around a quoted value (a JSON string).
func unquote(v string) (string, error) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return v, nil
	}
	var s string
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return "", fmt.Errorf("bad quoted value %s", v)
	}
	return s, nil
}

// flagErr names the flag and its value in a parse error.
func flagErr(flag, value string, err error) error {
	return fmt.Errorf("%s %q: %w", flag, value, err)
}

// uniqueKeys rejects a key given twice and any key not in known (nil: any key).
func uniqueKeys(items []KV, known []string) error {
	seen := map[string]bool{}
	for _, it := range items {
		if known != nil && !slices.Contains(known, it.Key) {
			return fmt.Errorf("unknown key %q (known: %s)", it.Key, strings.Join(known, ", "))
		}
		if seen[it.Key] {
			return fmt.Errorf("key %q given twice", it.Key)
		}
		seen[it.Key] = true
	}
	return nil
}

// ParseCompat reads a --compat value, `name=value[,name=value...]`, into one compatibility
// object with the properties in the order given.
func ParseCompat(s string) (Compatibility, error) {
	items, err := SplitKV(s)
	if err == nil {
		err = uniqueKeys(items, nil)
	}
	if err != nil {
		return nil, flagErr("--compat", s, err)
	}
	c := make(Compatibility, len(items))
	for i, it := range items {
		c[i] = Property{Name: it.Key, Value: it.Value}
	}
	return c, nil
}

// StepSpec describes an installation step for Build: an inline step (Handler set) or a
// reference step (UpdateID set).
type StepSpec struct {
	// Handler runs an inline step, e.g. microsoft/swupdate:1.
	Handler string
	// Files are the names of the files the handler gets; nil means the base names of all the
	// Spec's files, in order.
	Files []string
	// Properties become handlerProperties.
	Properties Object
	// UpdateID makes a reference step to another update.
	UpdateID    *UpdateID
	Description string
}

var stepKeys = []string{"handler", "files", "properties", "description", "desc", "provider", "name", "version"}

// ParseStep reads a --step value: `handler=H[,files=a;b][,properties=JSON][,description=D]`
// for an inline step, `provider=P,name=N,version=V[,description=D]` for a reference step.
// files= names are separated by ';'; properties= must be a JSON object; desc= is accepted
// for description= as az does.
func ParseStep(s string) (StepSpec, error) {
	st, err := parseStep(s)
	if err != nil {
		return StepSpec{}, flagErr("--step", s, err)
	}
	return st, nil
}

func parseStep(s string) (StepSpec, error) {
	items, err := SplitKV(s)
	if err != nil {
		return StepSpec{}, err
	}
	if err := uniqueKeys(items, stepKeys); err != nil {
		return StepSpec{}, err
	}
	var st StepSpec
	var id UpdateID
	has := map[string]bool{}
	for _, it := range items {
		has[it.Key] = true
		switch it.Key {
		case "handler":
			st.Handler = it.Value
		case "files":
			for _, f := range strings.Split(it.Value, ";") {
				f = strings.TrimSpace(f)
				if f == "" {
					return StepSpec{}, fmt.Errorf("files=%s has an empty file name", it.Value)
				}
				st.Files = append(st.Files, f)
			}
		case "properties":
			o, err := parseJSONObject(it.Value)
			if err != nil {
				return StepSpec{}, fmt.Errorf("properties=: %w", err)
			}
			st.Properties = o
		case "description", "desc":
			if st.Description != "" {
				return StepSpec{}, errors.New("both description= and desc= given")
			}
			st.Description = it.Value
		case "provider":
			id.Provider = it.Value
		case "name":
			id.Name = it.Value
		case "version":
			id.Version = it.Value
		}
	}
	ref := has["provider"] || has["name"] || has["version"]
	switch {
	case has["handler"] && ref:
		return StepSpec{}, errors.New("handler= (inline step) cannot be combined with provider=, name=, version= (reference step)")
	case ref:
		var missing []string
		for _, k := range []string{"provider", "name", "version"} {
			if !has[k] {
				missing = append(missing, k+"=")
			}
		}
		if len(missing) > 0 {
			return StepSpec{}, fmt.Errorf("a reference step needs provider=, name= and version= (missing %s)", strings.Join(missing, ", "))
		}
		if has["files"] || has["properties"] {
			return StepSpec{}, errors.New("files= and properties= only apply to inline steps (handler=)")
		}
		st.UpdateID = &id
	case !has["handler"]:
		return StepSpec{}, errors.New("needs handler=H (inline step) or provider=P,name=N,version=V (reference step)")
	}
	return st, nil
}

func parseJSONObject(s string) (Object, error) {
	if !json.Valid([]byte(s)) {
		var v any
		err := json.Unmarshal([]byte(s), &v)
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	o, err := ParseObject([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("must be a JSON object: %w", err)
	}
	return o, nil
}

// FileSpec describes a payload file for Build.
type FileSpec struct {
	// Path is read for the size and hash; its base name becomes the filename.
	Path            string
	Properties      Object
	DownloadHandler string
	Related         []RelatedFileSpec
}

// RelatedFileSpec describes a related file (e.g. a delta) of a FileSpec.
type RelatedFileSpec struct {
	Path       string
	Properties Object
}

// ParseFile reads a --file value: `PATH[,properties=JSON][,downloadHandler=ID]`. PATH is
// taken literally (a leading path= as az writes it is dropped); quote it ("…") if it has a
// comma.
func ParseFile(s string) (FileSpec, error) {
	path, items, err := pathAndItems(s, []string{"properties", "downloadHandler"})
	if err != nil {
		return FileSpec{}, flagErr("--file", s, err)
	}
	f := FileSpec{Path: path}
	for _, it := range items {
		switch it.Key {
		case "properties":
			if f.Properties, err = parseJSONObject(it.Value); err != nil {
				return FileSpec{}, flagErr("--file", s, fmt.Errorf("properties=: %w", err))
			}
		case "downloadHandler":
			f.DownloadHandler = it.Value
		}
	}
	return f, nil
}

// ParseRelatedFile reads a --related-file value: `PATH[,properties=JSON]`.
func ParseRelatedFile(s string) (RelatedFileSpec, error) {
	path, items, err := pathAndItems(s, []string{"properties"})
	if err != nil {
		return RelatedFileSpec{}, flagErr("--related-file", s, err)
	}
	r := RelatedFileSpec{Path: path}
	for _, it := range items {
		if r.Properties, err = parseJSONObject(it.Value); err != nil {
			return RelatedFileSpec{}, flagErr("--related-file", s, fmt.Errorf("properties=: %w", err))
		}
	}
	return r, nil
}

func pathAndItems(s string, known []string) (string, []KV, error) {
	parts, err := SplitTopLevel(s)
	if err != nil {
		return "", nil, err
	}
	path := strings.TrimSpace(parts[0])
	path = strings.TrimPrefix(path, "path=")
	if path, err = unquote(path); err != nil {
		return "", nil, err
	}
	if path == "" {
		return "", nil, errors.New("empty path")
	}
	items := make([]KV, 0, len(parts)-1)
	for _, p := range parts[1:] {
		kv, err := splitItem(p)
		if err != nil {
			return "", nil, err
		}
		items = append(items, kv)
	}
	if err := uniqueKeys(items, known); err != nil {
		return "", nil, err
	}
	return path, items, nil
}
