// Package manifestgen writes and checks Azure Device Update import manifests, version 5.0:
// the JSON file that describes an update (identity, compatibility, installation steps and
// payload files with sizes and SHA-256 hashes) when it is imported into the service.
//
// Build hashes the payload files and assembles a Manifest the way `az iot du update init v5`
// does; Marshal writes it deterministically; Validate checks a manifest's raw bytes with the
// service's limits, which are stricter than the public JSON schema, and reports every
// violation with its JSON path. ParseCompat, ParseStep, ParseFile and ParseRelatedFile read
// the `k=v[,k=v...]` values of the command-line flags that describe a manifest.
//
// # Key order
//
// Marshal emits members in the order of Microsoft's published import manifest examples (the
// order the service shows after an import):
//
//	$schema (only if set), updateId, isDeployable, description, compatibility, instructions,
//	files, createdDateTime, manifestVersion
//
// and inside them: updateId {provider, name, version}; inline step {type, description,
// handler, files, handlerProperties}; reference step {type, description, updateId}; file
// {filename, sizeInBytes, hashes, properties, relatedFiles, downloadHandler}; related file
// {filename, sizeInBytes, hashes, properties}. Compatibility objects and free-form property
// objects (handlerProperties, properties) keep the member order their author gave. Output is
// indented with two spaces, ends with a newline and does not HTML-escape <, > and &.
package manifestgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/aduflash/aduflash/internal/limitread"
)

// ManifestVersion is the only import manifest version this package writes and accepts.
const ManifestVersion = "5.0"

// Manifest is an import manifest v5. Field order is the order Marshal writes.
type Manifest struct {
	// Schema is the optional "$schema" reference.
	Schema   string   `json:"$schema,omitempty"`
	UpdateID UpdateID `json:"updateId"`
	// IsDeployable is nil for the default (true, not written); false marks an update that is
	// only installed through another update's reference step.
	IsDeployable    *bool           `json:"isDeployable,omitempty"`
	Description     string          `json:"description,omitempty"`
	Compatibility   []Compatibility `json:"compatibility"`
	Instructions    Instructions    `json:"instructions"`
	Files           []File          `json:"files,omitempty"`
	CreatedDateTime string          `json:"createdDateTime"`
	ManifestVersion string          `json:"manifestVersion"`
}

// UpdateID identifies an update: provider and name ([a-zA-Z0-9.-], 1–64 characters) and a
// version of two to four numeric parts.
type UpdateID struct {
	Provider string `json:"provider"`
	Name     string `json:"name"`
	Version  string `json:"version"`
}

// String returns provider.name.version, the form file names use.
func (u UpdateID) String() string { return u.Provider + "." + u.Name + "." + u.Version }

// Instructions holds the installation steps (1–10).
type Instructions struct {
	Steps []Step `json:"steps"`
}

// Step types.
const (
	StepInline    = "inline"
	StepReference = "reference"
)

// Step is an installation step: an inline step runs Handler on Files with HandlerProperties;
// a reference step (Type "reference") installs the update UpdateID.
type Step struct {
	Type              string    `json:"type,omitempty"`
	Description       string    `json:"description,omitempty"`
	Handler           string    `json:"handler,omitempty"`
	Files             []string  `json:"files,omitempty"`
	HandlerProperties Object    `json:"handlerProperties,omitempty"`
	UpdateID          *UpdateID `json:"updateId,omitempty"`
}

// IsReference reports whether s is a reference step.
func (s Step) IsReference() bool { return s.Type == StepReference }

// File is a payload file of the update.
type File struct {
	Filename    string `json:"filename"`
	SizeInBytes int64  `json:"sizeInBytes"`
	// Hashes maps an algorithm name to the standard base64 of the digest; "sha256" is required.
	Hashes          Hashes           `json:"hashes"`
	Properties      Object           `json:"properties,omitempty"`
	RelatedFiles    []RelatedFile    `json:"relatedFiles,omitempty"`
	DownloadHandler *DownloadHandler `json:"downloadHandler,omitempty"`
}

// RelatedFile is a file a download handler may use to produce its File (e.g. a delta).
type RelatedFile struct {
	Filename    string `json:"filename"`
	SizeInBytes int64  `json:"sizeInBytes"`
	Hashes      Hashes `json:"hashes"`
	Properties  Object `json:"properties,omitempty"`
}

// DownloadHandler names the agent plugin that turns related files into the file.
type DownloadHandler struct {
	ID string `json:"id"`
}

// Hashes maps a hash algorithm name to the standard base64 encoding of the digest. It is
// written with its names sorted.
type Hashes map[string]string

// FileName is the name under which the manifest is conventionally stored:
// provider.name.version.importmanifest.json (the Azure portal requires the suffix).
func (m *Manifest) FileName() string { return m.UpdateID.String() + ".importmanifest.json" }

// Marshal encodes m deterministically: the key order documented in the package comment,
// two-space indentation, no HTML escaping, and a trailing newline.
func Marshal(m *Manifest) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Parse validates data (see Validate) and decodes it. A manifest with violations yields a
// *ValidationError, which matches ErrInvalid. Members this package does not model (e.g.
// unknown members of file objects, which the schema allows) are dropped.
func Parse(data []byte) (*Manifest, error) {
	if vs := Validate(data); len(vs) > 0 {
		return nil, &ValidationError{Violations: vs}
	}
	var m Manifest
	if err := json.Unmarshal(trimBOM(data), &m); err != nil {
		return nil, &ValidationError{Violations: []Violation{{Path: "$", Message: err.Error()}}}
	}
	return &m, nil
}

// Member is one member of an Object.
type Member struct {
	Name  string
	Value json.RawMessage
}

// Object is a JSON object whose members keep their order (free-form properties are passed to
// the device as their author wrote them).
type Object []Member

// ParseObject reads a JSON object, keeping its members' order. Duplicate names are an error.
func ParseObject(data []byte) (Object, error) {
	var o Object
	if err := o.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	return o, nil
}

// Get returns the value of member name.
func (o Object) Get(name string) (json.RawMessage, bool) {
	for _, m := range o {
		if m.Name == name {
			return m.Value, true
		}
	}
	return nil, false
}

// With returns a copy of o with member name set to value (replaced in place, or appended).
func (o Object) With(name string, value json.RawMessage) Object {
	out := make(Object, 0, len(o)+1)
	found := false
	for _, m := range o {
		if m.Name == name {
			m.Value = value
			found = true
		}
		out = append(out, m)
	}
	if !found {
		out = append(out, Member{Name: name, Value: value})
	}
	return out
}

// MarshalJSON writes the members in order.
func (o Object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(quote(m.Name))
		b.WriteByte(':')
		v := bytes.TrimSpace(m.Value)
		if !json.Valid(v) {
			return nil, fmt.Errorf("property %q: invalid JSON value", m.Name)
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads a JSON object in member order.
func (o *Object) UnmarshalJSON(data []byte) error {
	members, err := objectMembers(data)
	if err != nil {
		return err
	}
	*o = members
	return nil
}

func objectMembers(data []byte) (Object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	out := Object{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name := tok.(string) // object keys are always strings
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, fmt.Errorf("duplicate member %q", name)
		}
		seen[name] = true
		out = append(out, Member{Name: name, Value: v})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("data after the JSON object")
	}
	return out, nil
}

// Property is a compatibility property.
type Property struct {
	Name, Value string
}

// Compatibility is one set of device properties (1–5) the update is compatible with, in the
// order the author gave them.
type Compatibility []Property

// Get returns the value of property name.
func (c Compatibility) Get(name string) (string, bool) {
	for _, p := range c {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// MarshalJSON writes the properties in order, as an Object of strings.
func (c Compatibility) MarshalJSON() ([]byte, error) {
	o := make(Object, len(c))
	for i, p := range c {
		o[i] = Member{Name: p.Name, Value: quote(p.Value)}
	}
	return o.MarshalJSON()
}

// UnmarshalJSON reads an object of string properties in order.
func (c *Compatibility) UnmarshalJSON(data []byte) error {
	o, err := objectMembers(data)
	if err != nil {
		return err
	}
	out := make(Compatibility, 0, len(o))
	for _, m := range o {
		var s string
		if err := json.Unmarshal(m.Value, &s); err != nil {
			return fmt.Errorf("compatibility property %q: %w", m.Name, err)
		}
		out = append(out, Property{Name: m.Name, Value: s})
	}
	*c = out
	return nil
}

// quote returns s as a JSON string without HTML escaping.
func quote(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'})
}

// runes counts characters the way JSON Schema's minLength/maxLength do (code points).
func runes(s string) int { return utf8.RuneCountInString(s) }

var bom = []byte{0xEF, 0xBB, 0xBF}

// trimBOM drops a UTF-8 byte order mark, which Windows tools (PowerShell's AduCmdlets) write.
func trimBOM(data []byte) []byte { return bytes.TrimPrefix(data, bom) }

// MaxManifestSize is the most ReadFile reads: import manifests are a few KiB.
const MaxManifestSize = 8 << 20

// ReadFile reads the import manifest file name, refusing anything larger than
// MaxManifestSize as not a manifest (an image given for it) before it reads it all.
func ReadFile(name string) ([]byte, error) {
	data, err := limitread.File(name, MaxManifestSize)
	if errors.Is(err, limitread.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w: not an import manifest", ErrInvalid, err)
	}
	return data, err
}
