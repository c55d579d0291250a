package manifestgen

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aduflash/aduflash/internal/errkind"
)

// Limits the service enforces on import manifests (v5). Where the public schema is looser
// (compatibility names, hash names, version parts, top-level members, step files that must
// name a file, unique file names, total size), these follow the service documentation.
const (
	MaxIDLength              = 64 // updateId.provider and .name
	MaxVersionParts          = 4
	MinVersionParts          = 2
	MaxVersionPart           = 2147483647
	MaxDescription           = 512
	MaxCompatibility         = 10
	MaxCompatProperties      = 5
	MaxCompatNameLength      = 32
	MaxCompatValueLength     = 64
	MaxSteps                 = 10
	MaxStepDescription       = 64
	MinHandlerLength         = 5
	MaxHandlerLength         = 32
	MaxStepFiles             = 10
	MaxFiles                 = 10
	MaxFilenameLength        = 255
	MaxFileSize              = 2147483648 // per file, bytes
	MaxTotalSize             = 2147483648 // files and related files together, bytes
	MaxHashes                = 2
	MaxHashNameLength        = 10
	MaxRelatedFiles          = 4
	MaxRelatedProperties     = 5
	MaxRelatedPropertyName   = 64
	MaxRelatedPropertyValue  = 256
	MinDownloadHandlerLength = 5
	MaxDownloadHandlerLength = 64
)

var (
	idPattern      = regexp.MustCompile(`^[a-zA-Z0-9.-]+$`)
	versionPattern = regexp.MustCompile(`^\d+(\.\d+)+$`)
	handlerPattern = regexp.MustCompile(`^\S+/\S+:\d{1,5}$`)
)

// ErrInvalid matches (errors.Is) every error that reports an invalid import manifest.
var ErrInvalid = errkind.New(errkind.Input, "invalid import manifest")

// Violation is one broken rule: where (a JSON path such as $.instructions.steps[1].files[0];
// member names that are not identifiers are written as ['name']) and what is wrong. Syntax
// errors have Path "$" and carry the 1-based Line and Column (in characters) of the error.
type Violation struct {
	Path    string `json:"path"`
	Message string `json:"message"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
}

func (v Violation) String() string { return v.Path + ": " + v.Message }

// ValidationError lists every violation of a manifest, in document order.
type ValidationError struct {
	Violations []Violation
}

func (e *ValidationError) Error() string {
	switch len(e.Violations) {
	case 0:
		return ErrInvalid.Error()
	case 1:
		return ErrInvalid.Error() + ": " + e.Violations[0].String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%d violations):", ErrInvalid, len(e.Violations))
	for _, v := range e.Violations {
		b.WriteString("\n  ")
		b.WriteString(v.String())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// ErrorKind says that a manifest's violations are a verdict on the input.
func (e *ValidationError) ErrorKind() errkind.Kind { return errkind.Input }

// Validate checks the raw bytes of an import manifest v5 against the service's limits and
// returns every violation (nil if there is none), in document order: the members of an
// object in the order they appear, then the required members it lacks, then rules about
// the object as a whole (e.g. the total size of the files). Wrong types, unknown and
// duplicated members are violations like any other. A leading UTF-8 byte order mark is
// accepted. Invalid JSON yields a single violation with its line and column.
func Validate(data []byte) []Violation {
	data = trimBOM(data)
	if v, ok := syntaxViolation(data); !ok {
		return []Violation{v}
	}
	root, err := parseTree(data)
	if err != nil { // not expected after the syntax check
		return []Violation{{Path: "$", Message: "invalid JSON: " + err.Error()}}
	}
	c := &checker{}
	c.manifest(root)
	return c.vs
}

func syntaxViolation(data []byte) (Violation, bool) {
	var raw json.RawMessage
	err := json.Unmarshal(data, &raw)
	if err == nil {
		return Violation{}, true
	}
	off := len(data)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = int(se.Offset)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	// The offset counts the bytes read, including the offending one. At the end of the input
	// the scanner reports a truncated literal as an invalid ' ' it feeds itself.
	atEnd := off >= len(data) && (strings.Contains(msg, "end of JSON input") ||
		strings.HasPrefix(msg, "invalid character ' '") && len(data) > 0 && !isSpace(data[len(data)-1]))
	if atEnd {
		off = len(data)
		msg = "unexpected end of JSON input"
	} else if off > 0 {
		off--
	}
	line, col := lineCol(data, off)
	return Violation{
		Path:    "$",
		Message: fmt.Sprintf("invalid JSON at line %d, column %d: %s", line, col, msg),
		Line:    line,
		Column:  col,
	}, false
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }

// lineCol returns the 1-based line and column (in characters) of byte offset off.
func lineCol(data []byte, off int) (int, int) {
	if off > len(data) {
		off = len(data)
	}
	before := data[:off]
	line := 1 + bytes.Count(before, []byte{'\n'})
	start := bytes.LastIndexByte(before, '\n') + 1
	return line, 1 + utf8.RuneCount(before[start:])
}

// node is a parsed JSON value that keeps member order, duplicates and its raw text.
type node struct {
	kind    kind
	str     string      // kString
	num     json.Number // kNumber
	b       bool        // kBool
	members []member    // kObject
	elems   []*node     // kArray
	raw     []byte
}

type member struct {
	name string
	val  *node
}

type kind int

const (
	kNull kind = iota
	kBool
	kNumber
	kString
	kArray
	kObject
)

func (k kind) String() string {
	return [...]string{"null", "boolean", "number", "string", "array", "object"}[k]
}

func parseTree(data []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	p := &treeParser{dec: dec, data: data}
	return p.value()
}

type treeParser struct {
	dec  *json.Decoder
	data []byte
}

func (p *treeParser) value() (*node, error) {
	start := p.dec.InputOffset()
	tok, err := p.dec.Token()
	if err != nil {
		return nil, err
	}
	n := &node{}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n.kind = kObject
			for p.dec.More() {
				kt, err := p.dec.Token()
				if err != nil {
					return nil, err
				}
				name, _ := kt.(string)
				v, err := p.value()
				if err != nil {
					return nil, err
				}
				n.members = append(n.members, member{name: name, val: v})
			}
		case '[':
			n.kind = kArray
			n.elems = []*node{}
			for p.dec.More() {
				v, err := p.value()
				if err != nil {
					return nil, err
				}
				n.elems = append(n.elems, v)
			}
		default:
			return nil, fmt.Errorf("unexpected %v", t)
		}
		if _, err := p.dec.Token(); err != nil { // closing delimiter
			return nil, err
		}
	case string:
		n.kind, n.str = kString, t
	case json.Number:
		n.kind, n.num = kNumber, t
	case bool:
		n.kind, n.b = kBool, t
	case nil:
		n.kind = kNull
	}
	end := p.dec.InputOffset()
	n.raw = bytes.TrimLeft(p.data[start:end], " \t\r\n:,")
	return n, nil
}

// Paths.

var identPattern = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*$`)

func field(path, name string) string {
	if identPattern.MatchString(name) {
		return path + "." + name
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return path + "['" + r.Replace(name) + "']"
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// checker collects violations.
type checker struct {
	vs    []Violation
	files map[string]bool // names in $.files[].filename
}

func (c *checker) add(path, format string, args ...any) {
	c.vs = append(c.vs, Violation{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) isKind(path string, n *node, k kind) bool {
	if n.kind != k {
		c.add(path, "must be %s %s, got %s", article(k), k, n.kind)
		return false
	}
	return true
}

func article(k kind) string {
	if k == kArray || k == kObject {
		return "an"
	}
	return "a"
}

// memberRule checks one member's value.
type memberRule func(path string, v *node)

// object walks n's members in document order: known ones through rules, unknown ones are
// violations unless allowUnknown; duplicates are violations (only the first is checked);
// then the missing required members, in the order given.
func (c *checker) object(path string, n *node, rules map[string]memberRule, required []string, allowUnknown bool) bool {
	if !c.isKind(path, n, kObject) {
		return false
	}
	c.eachMember(path, n, func(p string, m member) {
		if r, ok := rules[m.name]; ok {
			r(p, m.val)
		} else if !allowUnknown {
			c.add(p, "unknown member (not allowed here)")
		}
	})
	for _, r := range required {
		if n.get(r) == nil {
			c.add(field(path, r), "is required")
		}
	}
	return true
}

func (n *node) get(name string) *node {
	if n == nil || n.kind != kObject {
		return nil
	}
	for _, m := range n.members {
		if m.name == name {
			return m.val
		}
	}
	return nil
}

// str checks a string of min..max characters (max < 0: no maximum).
func (c *checker) str(path string, n *node, min, max int) (string, bool) {
	if !c.isKind(path, n, kString) {
		return "", false
	}
	l := runes(n.str)
	switch {
	case l < min && min == 1:
		c.add(path, "must not be empty")
		return n.str, false
	case l < min || (max >= 0 && l > max):
		c.add(path, "must be %d to %d characters long, got %d", min, max, l)
		return n.str, false
	}
	return n.str, true
}

// name checks the name of a member at path: 1 to max characters (what names the kind of
// member in the message).
func (c *checker) name(path, what, name string, max int) {
	if l := runes(name); l < 1 || l > max {
		c.add(path, "%s name must be 1 to %d characters long, got %d", what, max, l)
	}
}

func (c *checker) pattern(path, s string, re *regexp.Regexp) bool {
	if !re.MatchString(s) {
		c.add(path, "must match %s, got %q", re, s)
		return false
	}
	return true
}

func (c *checker) count(path string, have, min, max int, what string) {
	if have < min || have > max {
		if min == max {
			c.add(path, "must have %d %s, got %d", min, what, have)
		} else {
			c.add(path, "must have %d to %d %s, got %d", min, max, what, have)
		}
	}
}

func (c *checker) manifest(root *node) {
	c.files = map[string]bool{}
	if f := root.get("files"); f != nil && f.kind == kArray {
		for _, e := range f.elems {
			if fn := e.get("filename"); fn != nil && fn.kind == kString {
				c.files[fn.str] = true
			}
		}
	}
	c.object("$", root, map[string]memberRule{
		"$schema":  func(p string, v *node) { c.isKind(p, v, kString) },
		"updateId": c.updateID,
		"isDeployable": func(p string, v *node) {
			c.isKind(p, v, kBool)
		},
		"description":   func(p string, v *node) { c.str(p, v, 1, MaxDescription) },
		"compatibility": c.compatibility,
		"instructions":  c.instructions,
		"files":         c.fileList,
		"manifestVersion": func(p string, v *node) {
			if s, ok := c.str(p, v, 1, -1); ok && s != ManifestVersion {
				c.add(p, "must be %q, got %q", ManifestVersion, s)
			}
		},
		"createdDateTime": func(p string, v *node) {
			if s, ok := c.str(p, v, 1, -1); ok {
				if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
					c.add(p, "must be an ISO 8601 (RFC 3339) date and time such as 2020-10-02T22:18:04.9446744Z, got %q", s)
				}
			}
		},
	}, []string{"updateId", "compatibility", "instructions", "manifestVersion", "createdDateTime"}, false)
}

func (c *checker) updateID(path string, n *node) {
	c.object(path, n, map[string]memberRule{
		"provider": c.idPart,
		"name":     c.idPart,
		"version":  c.version,
	}, []string{"provider", "name", "version"}, false)
}

func (c *checker) idPart(path string, n *node) {
	if s, ok := c.str(path, n, 1, MaxIDLength); ok || n.kind == kString && s != "" {
		c.pattern(path, s, idPattern)
	}
}

func (c *checker) version(path string, n *node) {
	s, ok := c.str(path, n, 1, -1)
	if !ok {
		return
	}
	if !c.pattern(path, s, versionPattern) {
		return
	}
	parts := strings.Split(s, ".")
	if len(parts) < MinVersionParts || len(parts) > MaxVersionParts {
		c.add(path, "must have %d to %d numeric parts, got %d", MinVersionParts, MaxVersionParts, len(parts))
	}
	for i, p := range parts {
		if !fitsInt31(p) {
			c.add(path, "part %d (%s) must be at most %d", i+1, p, MaxVersionPart)
		}
	}
}

// fitsInt31 reports whether the decimal digits d (leading zeros allowed) are ≤ 2147483647.
func fitsInt31(d string) bool {
	d = strings.TrimLeft(d, "0")
	const max = "2147483647"
	return len(d) < len(max) || len(d) == len(max) && d <= max
}

func (c *checker) compatibility(path string, n *node) {
	if !c.isKind(path, n, kArray) {
		return
	}
	c.count(path, len(n.elems), 1, MaxCompatibility, "compatibility objects")
	for i, e := range n.elems {
		p := index(path, i)
		if !c.isKind(p, e, kObject) {
			continue
		}
		c.count(p, len(e.members), 1, MaxCompatProperties, "properties")
		c.eachMember(p, e, func(mp string, m member) {
			c.name(mp, "property", m.name, MaxCompatNameLength)
			c.str(mp, m.val, 1, MaxCompatValueLength)
		})
	}
}

func (c *checker) instructions(path string, n *node) {
	c.object(path, n, map[string]memberRule{
		"steps": func(p string, v *node) {
			if !c.isKind(p, v, kArray) {
				return
			}
			c.count(p, len(v.elems), 1, MaxSteps, "steps")
			for i, s := range v.elems {
				c.step(index(p, i), s)
			}
		},
	}, []string{"steps"}, false)
}

func (c *checker) step(path string, n *node) {
	if !c.isKind(path, n, kObject) {
		return
	}
	typ := n.get("type")
	reference := false
	badType := false
	switch {
	case typ == nil:
		reference = n.get("updateId") != nil && n.get("handler") == nil
	case typ.kind == kString && typ.str == StepReference:
		reference = true
	case typ.kind == kString && typ.str == StepInline:
	default:
		badType = true
		reference = n.get("updateId") != nil && n.get("handler") == nil
	}
	typeRule := func(p string, v *node) {
		if badType && c.isKind(p, v, kString) {
			c.add(p, "must be %q or %q, got %q", StepInline, StepReference, v.str)
		}
	}
	desc := func(p string, v *node) { c.str(p, v, 1, MaxStepDescription) }
	if reference {
		c.object(path, n, map[string]memberRule{
			"type":        typeRule,
			"description": desc,
			"updateId":    c.updateID,
		}, []string{"type", "updateId"}, false)
		return
	}
	c.object(path, n, map[string]memberRule{
		"type":        typeRule,
		"description": desc,
		"handler": func(p string, v *node) {
			c.handler(p, v, MinHandlerLength, MaxHandlerLength)
		},
		"files": func(p string, v *node) {
			if !c.isKind(p, v, kArray) {
				return
			}
			c.count(p, len(v.elems), 1, MaxStepFiles, "file names")
			for i, f := range v.elems {
				fp := index(p, i)
				if s, ok := c.str(fp, f, 1, MaxFilenameLength); ok && !c.files[s] {
					c.add(fp, "names no file in $.files: %q", s)
				}
			}
		},
		"handlerProperties": c.freeObject,
	}, []string{"handler", "files"}, false)
}

// freeObject checks an object passed through to the device: any members, but each once.
func (c *checker) freeObject(path string, n *node) {
	c.object(path, n, nil, nil, true)
}

func (c *checker) handler(path string, n *node, min, max int) {
	if !c.isKind(path, n, kString) {
		return
	}
	if l := runes(n.str); l < min || l > max {
		c.add(path, "must be %d to %d characters long, got %d", min, max, l)
	}
	c.pattern(path, n.str, handlerPattern)
}

func (c *checker) fileList(path string, n *node) {
	if n.kind == kNull { // "can be empty or null if all steps are reference steps"
		return
	}
	if !c.isKind(path, n, kArray) {
		return
	}
	c.count(path, len(n.elems), 0, MaxFiles, "files")
	var total int64
	names := map[string]string{}
	for i, f := range n.elems {
		total += c.file(index(path, i), f, names)
	}
	if total > MaxTotalSize {
		c.add(path, "files and related files total %d bytes, more than the %d (2 GiB) allowed", total, int64(MaxTotalSize))
	}
}

// file checks a file object and returns its size plus its related files' sizes (as far as
// they are valid).
func (c *checker) file(path string, n *node, names map[string]string) int64 {
	var total int64
	if !c.object(path, n, map[string]memberRule{
		"filename": func(p string, v *node) {
			if s, ok := c.str(p, v, 1, MaxFilenameLength); ok {
				if first, dup := names[s]; dup {
					c.add(p, "duplicate file name %q (also %s)", s, first)
				} else {
					names[s] = p
				}
			}
		},
		"sizeInBytes": func(p string, v *node) { total += c.size(p, v) },
		"hashes":      c.hashes,
		"properties":  c.freeObject,
		"relatedFiles": func(p string, v *node) {
			if !c.isKind(p, v, kArray) {
				return
			}
			c.count(p, len(v.elems), 0, MaxRelatedFiles, "related files")
			for i, r := range v.elems {
				total += c.relatedFile(index(p, i), r)
			}
		},
		"downloadHandler": func(p string, v *node) {
			c.object(p, v, map[string]memberRule{
				"id": func(p string, v *node) {
					c.handler(p, v, MinDownloadHandlerLength, MaxDownloadHandlerLength)
				},
			}, []string{"id"}, false)
		},
	}, []string{"filename", "sizeInBytes", "hashes"}, true) {
		return 0
	}
	if r := n.get("relatedFiles"); r != nil && r.kind == kArray && len(r.elems) > 0 && n.get("downloadHandler") == nil {
		c.add(field(path, "downloadHandler"), "is required when relatedFiles is not empty")
	}
	return total
}

func (c *checker) relatedFile(path string, n *node) int64 {
	var total int64
	c.object(path, n, map[string]memberRule{
		"filename":    func(p string, v *node) { c.str(p, v, 1, MaxFilenameLength) },
		"sizeInBytes": func(p string, v *node) { total += c.size(p, v) },
		"hashes":      c.hashes,
		"properties": func(p string, v *node) {
			if !c.isKind(p, v, kObject) {
				return
			}
			c.count(p, len(v.members), 0, MaxRelatedProperties, "properties")
			c.eachMember(p, v, func(mp string, m member) {
				c.name(mp, "property", m.name, MaxRelatedPropertyName)
				l := len(m.val.raw)
				if m.val.kind == kString {
					l = runes(m.val.str)
				} else if compact := compactLen(m.val.raw); compact >= 0 {
					l = compact
				}
				if l > MaxRelatedPropertyValue {
					c.add(mp, "value must be at most %d characters long, got %d", MaxRelatedPropertyValue, l)
				}
			})
		},
	}, []string{"filename", "sizeInBytes", "hashes"}, true)
	return total
}

func compactLen(raw []byte) int {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return -1
	}
	return utf8.RuneCount(b.Bytes())
}

// size checks sizeInBytes: an integer (no fraction or exponent) from 1 to 2 GiB. It returns
// the size if valid, else 0.
func (c *checker) size(path string, n *node) int64 {
	if !c.isKind(path, n, kNumber) {
		return 0
	}
	s := n.num.String()
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if strings.ContainsAny(s, ".eE") {
			c.add(path, "must be an integer, got %s", s)
		} else {
			c.add(path, "must be from 1 to %d, got %s", int64(MaxFileSize), s)
		}
		return 0
	}
	if v < 1 || v > MaxFileSize {
		c.add(path, "must be from 1 to %d, got %d", int64(MaxFileSize), v)
		return 0
	}
	return v
}

// hashLen is the digest size of the hash algorithms whose length is checked.
var hashLen = map[string]int{"sha256": 32}

// eachMember calls fn with each member of the object n and its path; a repeated name is
// reported as a duplicate, and only its first occurrence is passed on. It returns the names
// passed on, in order.
func (c *checker) eachMember(path string, n *node, fn func(p string, m member)) []string {
	var names []string
	seen := map[string]bool{}
	for _, m := range n.members {
		p := field(path, m.name)
		if seen[m.name] {
			c.add(p, "duplicate member")
			continue
		}
		seen[m.name] = true
		names = append(names, m.name)
		fn(p, m)
	}
	return names
}

func (c *checker) hashes(path string, n *node) {
	if !c.isKind(path, n, kObject) {
		return
	}
	names := c.eachMember(path, n, c.hash)
	if len(names) > MaxHashes {
		slices.Sort(names)
		c.add(path, "must have at most %d hashes, got %d (%s)", MaxHashes, len(names), strings.Join(names, ", "))
	}
	if !slices.Contains(names, "sha256") {
		c.add(field(path, "sha256"), "is required")
	}
}

// hash checks one member of hashes at p: the algorithm name, and the digest in standard
// base64 (of the algorithm's size where it is known).
func (c *checker) hash(p string, m member) {
	c.name(p, "hash algorithm", m.name, MaxHashNameLength)
	if !c.isKind(p, m.val, kString) {
		return
	}
	s := m.val.str
	if s == "" {
		c.add(p, "must not be empty")
		return
	}
	digest, err := decodeStdBase64(s)
	if err != nil {
		c.add(p, "must be standard base64 (with = padding): %v", err)
		return
	}
	if want, ok := hashLen[m.name]; ok && len(digest) != want {
		c.add(p, "must encode a %d-byte %s digest, got %d bytes", want, m.name, len(digest))
	}
}

// decodeStdBase64 decodes standard base64 with padding, rejecting the line breaks that
// encoding/base64 would skip.
func decodeStdBase64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("contains a line break")
	}
	return base64.StdEncoding.Strict().DecodeString(s)
}
